"""Run one command and measure its wall time, peak total memory and CPU seconds with psutil."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.5


@dataclass
class Measurement:
    """What run_measured observed: times in seconds, memory in bytes."""

    returncode: int | None
    started_at: float
    wall_s: float
    peak_rss_bytes: int
    peak_processes: int
    cpu_s: float
    timed_out: bool
    root_cpu_s: float
    per_process_peak_rss: dict[int, int] = field(default_factory=dict)


class TreeSampler:
    """Samples the summed RSS and the CPU times of a process and all its descendants on a thread.

    CPU seconds are the last value seen per pid, summed, so a process that
    lives shorter than one interval is missed; run_measured also reads the
    kernel's totals for reaped descendants and reports the larger figure.
    """

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_rss = 0
        self.peak_processes = 0
        self.cpu_by_pid: dict[int, float] = {}
        self.peak_rss_by_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_by_pid.values())

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        counted = 0
        for process in processes:
            try:
                with process.oneshot():
                    rss = process.memory_info().rss
                    times = process.cpu_times()
            except psutil.Error:
                continue
            total += rss
            counted += 1
            self.cpu_by_pid[process.pid] = times.user + times.system
            self.peak_rss_by_pid[process.pid] = max(rss, self.peak_rss_by_pid.get(process.pid, 0))
        self.peak_rss = max(self.peak_rss, total)
        self.peak_processes = max(self.peak_processes, counted)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)


def run_measured(
    argv: list[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout_path: Path | None = None,
    stderr_path: Path | None = None,
) -> Measurement:
    """Run `argv` in a session of its own, sample it until it exits, and return the Measurement.

    On timeout the whole process group gets SIGTERM, then SIGKILL 5 s later.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    stdout = stdout_path.open("wb") if stdout_path else subprocess.DEVNULL
    stderr = stderr_path.open("wb") if stderr_path else subprocess.DEVNULL
    started_at = time.time()
    began = time.monotonic()
    try:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True
        )
        sampler = TreeSampler(process.pid)
        sampler.start()
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _end_group(process)
        wall_s = time.monotonic() - began
        sampler.stop()
    finally:
        for handle in (stdout, stderr):
            if hasattr(handle, "close"):
                handle.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measurement(
        returncode=process.returncode,
        started_at=started_at,
        wall_s=wall_s,
        peak_rss_bytes=sampler.peak_rss,
        peak_processes=sampler.peak_processes,
        cpu_s=max(reaped_cpu, sampler.cpu_s),
        timed_out=timed_out,
        root_cpu_s=sampler.cpu_by_pid.get(process.pid, 0.0),
        per_process_peak_rss=dict(sampler.peak_rss_by_pid),
    )


def _end_group(process: subprocess.Popen[bytes]) -> None:
    for signum, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
