"""Sample CPU and memory of every child, its descendants included.

psutil's `cpu_percent()` returns 0.0 the first time it is called on a
`Process` object, so the objects are kept from one sample to the next. One
pass over the process table per sample finds every child's descendants.
Where `gpu` is set (see supervisor/gpu.py), each sample also adds the GPU
memory and utilisation of the same pids, and resources.csv gets two more
columns.
"""

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psutil

from supervisor.gpu import GpuSample, GpuSampler

CSV_COLUMNS = ["time", "process", "pid", "cpu_percent", "rss_bytes", "processes"]
# Appended to CSV_COLUMNS only where a GPU is sampled.
GPU_CSV_COLUMNS = ["gpu_memory_bytes", "gpu_percent"]


@dataclass
class Usage:
    """The latest sample of one child and its descendants, and the peaks so far.

    `cpu_seconds` is measured up to the last sample while the process ran, so
    it can be short by up to one sampling interval of work.
    """

    name: str
    pid: int
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    processes: int = 0
    peak_rss_bytes: int = 0
    cpu_seconds: float = 0.0
    alive: bool = True
    gpu_memory_bytes: int = 0
    gpu_percent: float = 0.0
    peak_gpu_memory_bytes: int = 0
    peak_gpu_percent: float = 0.0


@dataclass
class Machine:
    """Whole-machine totals from the latest sample."""

    cpu_percent: float = 0.0
    memory_used_bytes: int = 0
    memory_total_bytes: int = 0
    gpu_memory_used_bytes: int = 0
    gpu_memory_total_bytes: int = 0
    gpu_percent: float | None = None


@dataclass
class ResourceSampler:
    """Collect samples for the tracked children and append them to a CSV file."""

    samples_path: Path | None = None
    gpu: GpuSampler | None = None
    # Keyed by pid: a restarted client is a new process with figures of its own.
    usage: dict[int, Usage] = field(default_factory=dict)
    machine: Machine = field(default_factory=Machine)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    _file: TextIO | None = None
    _writer: Any = None

    def track(self, name: str, pid: int) -> None:
        self.usage[pid] = Usage(name=name, pid=pid)

    def sample(self) -> None:
        """Take one sample of every tracked child that is still alive."""
        now = time.time()
        children_of = _children_map()
        seen: set[int] = set()
        rows = []
        gpu_sample = self.gpu.sample() if self.gpu is not None else None
        for usage in self.usage.values():
            if not usage.alive:
                continue
            pids = _subtree(usage.pid, children_of)
            if usage.pid not in pids:
                self.mark_exited(usage.pid)
                continue
            cpu_percent, rss, cpu_seconds, count = 0.0, 0, 0.0, 0
            for pid in pids:
                proc = self._process(pid)
                if proc is None:
                    continue
                try:
                    with proc.oneshot():
                        cpu_percent += proc.cpu_percent(None)
                        rss += proc.memory_info().rss
                        times = proc.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                cpu_seconds += times.user + times.system
                if pid == usage.pid:
                    # Time of descendants that have exited and been waited for.
                    cpu_seconds += times.children_user + times.children_system
                count += 1
                seen.add(pid)
            usage.cpu_percent = cpu_percent
            usage.rss_bytes = rss
            usage.processes = count
            usage.peak_rss_bytes = max(usage.peak_rss_bytes, rss)
            usage.cpu_seconds = max(usage.cpu_seconds, cpu_seconds)
            row: list[object] = [f"{now:.3f}", usage.name, usage.pid, f"{cpu_percent:.1f}", rss, count]
            if gpu_sample is not None:
                row += _add_gpu_usage(usage, pids, gpu_sample)
            rows.append(row)

        memory = psutil.virtual_memory()
        self.machine = Machine(
            cpu_percent=psutil.cpu_percent(None),
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
        )
        machine_row: list[object] = [
            f"{now:.3f}", "machine", "", f"{self.machine.cpu_percent:.1f}",
            self.machine.memory_used_bytes, "",
        ]  # fmt: skip
        if gpu_sample is not None:
            self.machine.gpu_memory_used_bytes = gpu_sample.memory_used_bytes
            self.machine.gpu_memory_total_bytes = gpu_sample.memory_total_bytes
            self.machine.gpu_percent = gpu_sample.percent
            percent = "" if gpu_sample.percent is None else f"{gpu_sample.percent:.1f}"
            machine_row += [gpu_sample.memory_used_bytes, percent]
        rows.append(machine_row)
        for pid in list(self._procs):
            if pid not in seen:
                del self._procs[pid]
        self._write(rows)

    def mark_exited(self, pid: int) -> None:
        usage = self.usage.get(pid)
        if usage is not None:
            usage.alive = False
            usage.cpu_percent = 0.0
            usage.rss_bytes = 0
            usage.processes = 0
            usage.gpu_memory_bytes = 0
            usage.gpu_percent = 0.0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.gpu is not None:
            self.gpu.close()

    def gpu_summary(self) -> dict[str, Any] | None:
        """Return the devices and each process's GPU peaks for summary.json, or None without a GPU."""
        if self.gpu is None:
            return None
        return {
            "devices": [
                {"index": device.index, "name": device.name, "memory_total_bytes": device.memory_total_bytes}
                for device in self.gpu.devices
            ],
            "processes": self._gpu_peaks_by_name(),
        }

    def _gpu_peaks_by_name(self) -> dict[str, dict[str, Any]]:
        """Return each process name's GPU peaks, the maximum over its restarts."""
        peaks: dict[str, dict[str, Any]] = {}
        for usage in self.usage.values():
            entry = peaks.setdefault(usage.name, {"peak_gpu_memory_bytes": 0, "peak_gpu_percent": 0.0})
            entry["peak_gpu_memory_bytes"] = max(entry["peak_gpu_memory_bytes"], usage.peak_gpu_memory_bytes)
            entry["peak_gpu_percent"] = max(entry["peak_gpu_percent"], round(usage.peak_gpu_percent, 1))
        return peaks

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
            self._procs[pid] = proc
        return proc

    def _write(self, rows: list[list[object]]) -> None:
        if self.samples_path is None:
            return
        if self._file is None:
            new = not self.samples_path.exists()
            self._file = open(self.samples_path, "a", newline="", encoding="utf-8")  # noqa: SIM115
            self._writer = csv.writer(self._file)
            if new:
                self._writer.writerow(CSV_COLUMNS + (GPU_CSV_COLUMNS if self.gpu is not None else []))
        assert self._writer is not None and self._file is not None
        self._writer.writerows(rows)
        self._file.flush()


def _add_gpu_usage(usage: Usage, pids: list[int], gpu_sample: GpuSample) -> list[object]:
    """Sum the GPU values of `pids` into `usage`; return the row's GPU cells."""
    usage.gpu_memory_bytes = sum(gpu_sample.memory_by_pid.get(pid, 0) for pid in pids)
    usage.gpu_percent = sum(gpu_sample.percent_by_pid.get(pid, 0.0) for pid in pids)
    usage.peak_gpu_memory_bytes = max(usage.peak_gpu_memory_bytes, usage.gpu_memory_bytes)
    usage.peak_gpu_percent = max(usage.peak_gpu_percent, usage.gpu_percent)
    return [usage.gpu_memory_bytes, f"{usage.gpu_percent:.1f}"]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info["ppid"]
        if ppid is not None:
            children.setdefault(ppid, []).append(proc.pid)
    return children


def _subtree(root: int, children_of: dict[int, list[int]]) -> list[int]:
    """Return `root` and its descendants, or [] if `root` no longer exists."""
    if not psutil.pid_exists(root):
        return []
    found = [root]
    index = 0
    while index < len(found):
        found.extend(children_of.get(found[index], []))
        index += 1
    return found
