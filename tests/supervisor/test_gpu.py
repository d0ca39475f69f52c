"""GPU sampling through NVML, tested with a fake NVML module.

The development and CI machines have no NVIDIA GPU, so `FakeNvml` replaces
the pynvml module. It has pynvml's function names and returns objects with
the same attribute names. Its NVMLError carries NVML's return code in
`value`, as pynvml's does. The "no GPU" tests simulate a missing package
and a missing NVML library, and one test runs the real pynvml where it is
installed.
"""

import contextlib
import csv
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from supervisor import gpu
from supervisor.child import Child
from supervisor.gpu import GpuSampler, open_gpus
from supervisor.live_table import render_table
from supervisor.plan import ProcessSpec
from supervisor.resources import CSV_COLUMNS, GPU_CSV_COLUMNS, ResourceSampler

GIB = 2**30
MIB = 2**20
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12


class FakeNvmlError(Exception):
    """Like pynvml.NVMLError: the NVML return code is in `value`."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class FakeLibraryNotFound(FakeNvmlError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_LIBRARY_NOT_FOUND)


class FakeNvml:
    """A fake pynvml module: devices with running processes and utilisation samples.

    `devices` is a list of dicts with the keys name, total, used, gpu
    (device utilisation %), compute and graphics ([(pid, bytes or None)]),
    and samples ([(pid, timestamp_us, sm_percent)]). `errors` maps a
    function name to the NVML return code it raises.
    """

    NVMLError = FakeNvmlError
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND

    def __init__(self, devices: list[dict[str, Any]], init_error: Exception | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.errors: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []
        self.initialised = False
        self.shutdowns = 0

    def _check(self, function: str, argument: Any = None) -> None:
        self.calls.append((function, argument))
        if function in self.errors:
            raise FakeNvmlError(self.errors[function])

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return str(self.devices[handle]["name"])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        self._check("nvmlDeviceGetMemoryInfo", handle)
        device = self.devices[handle]
        return SimpleNamespace(total=device["total"], used=device["used"], free=device["total"] - device["used"])

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        self._check("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=self.devices[handle]["gpu"], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        self._check("nvmlDeviceGetComputeRunningProcesses", handle)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.devices[handle]["compute"]]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        self._check("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.devices[handle]["graphics"]]

    def nvmlDeviceGetProcessUtilization(self, handle: int, last_seen: int) -> list[SimpleNamespace]:
        self._check("nvmlDeviceGetProcessUtilization", (handle, last_seen))
        samples = [
            SimpleNamespace(pid=pid, timeStamp=stamp, smUtil=sm, memUtil=0, encUtil=0, decUtil=0)
            for pid, stamp, sm in self.devices[handle]["samples"]
            if stamp > last_seen
        ]
        if not samples:
            # Real NVML returns NVML_ERROR_NOT_FOUND when no process used the device since `last_seen`.
            raise FakeNvmlError(NVML_ERROR_NOT_FOUND)
        return samples


def device(name: str = "Fake GPU", total: int = 16 * GIB, used: int = 0, gpu_percent: float = 0.0,
           compute: list[tuple[int, int | None]] | None = None, graphics: list[tuple[int, int | None]] | None = None,
           samples: list[tuple[int, int, float]] | None = None) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "total": total, "used": used, "gpu": gpu_percent, "compute": compute or [],
            "graphics": graphics or [], "samples": samples or []}  # fmt: skip


def open_fake(fake: FakeNvml) -> GpuSampler:
    sampler = open_gpus(fake)
    assert sampler is not None
    return sampler


def test_open_gpus_lists_devices() -> None:
    fake = FakeNvml([device("A100", total=40 * GIB), device("H100", total=80 * GIB)])
    with capture_logs() as logs:
        sampler = open_fake(fake)
    assert [(d.index, d.name, d.memory_total_bytes) for d in sampler.devices] == [(0, "A100", 40 * GIB),
                                                                                  (1, "H100", 80 * GIB)]  # fmt: skip
    assert any(entry["event"] == "GPU sampling on" for entry in logs)
    sampler.close()
    sampler.close()
    assert fake.shutdowns == 1


def test_sample_sums_pids_over_devices() -> None:
    fake = FakeNvml([
        device(used=3 * GIB, gpu_percent=40, compute=[(100, 1 * GIB), (200, 2 * GIB)],
               samples=[(100, 10, 30.0), (200, 11, 5.0)]),
        device(used=1 * GIB, gpu_percent=60, compute=[(100, 512 * MIB)], samples=[(100, 12, 50.0)]),
    ])  # fmt: skip
    sample = open_fake(fake).sample()
    assert sample.memory_by_pid == {100: GIB + 512 * MIB, 200: 2 * GIB}
    assert sample.percent_by_pid == {100: 80.0, 200: 5.0}
    assert sample.memory_used_bytes == 4 * GIB
    assert sample.memory_total_bytes == 32 * GIB
    assert sample.percent == 50.0


def test_sample_counts_compute_and_graphics_once() -> None:
    fake = FakeNvml([device(compute=[(100, 300 * MIB), (300, None)], graphics=[(100, 300 * MIB), (400, 64 * MIB)])])
    sample = open_fake(fake).sample()
    # pid 300's usedGpuMemory is None (not available), which counts as 0.
    assert sample.memory_by_pid == {100: 300 * MIB, 300: 0, 400: 64 * MIB}


def test_utilisation_only_since_last_sample() -> None:
    samples = [(100, 10, 30.0), (100, 20, 70.0)]
    fake = FakeNvml([device(samples=samples)])
    sampler = open_fake(fake)

    first = sampler.sample()
    # Two samples for one pid: the newer one counts.
    assert first.percent_by_pid == {100: 70.0}

    with capture_logs() as logs:
        second = sampler.sample()
    # Nothing newer than timestamp 20: NVML_ERROR_NOT_FOUND means idle, not a failure.
    assert second.percent_by_pid == {}
    assert not [entry for entry in logs if entry["log_level"] == "warning"]
    stamps = [argument[1] for function, argument in fake.calls if function == "nvmlDeviceGetProcessUtilization"]
    assert stamps == [0, 20]

    samples.append((100, 30, 10.0))
    assert sampler.sample().percent_by_pid == {100: 10.0}


def test_failing_call_warns_once_and_is_left_out() -> None:
    fake = FakeNvml([device(used=GIB, gpu_percent=25, compute=[(100, GIB)], samples=[(100, 1, 9.0)])])
    fake.errors["nvmlDeviceGetProcessUtilization"] = NVML_ERROR_NOT_SUPPORTED
    sampler = open_fake(fake)
    with capture_logs() as logs:
        samples = [sampler.sample() for _ in range(3)]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["call"] == "nvmlDeviceGetProcessUtilization"
    assert all(sample.percent_by_pid == {} for sample in samples)
    assert all(sample.memory_by_pid == {100: GIB} for sample in samples)
    assert all(sample.percent == 25 for sample in samples)


def test_no_gpu_when_pynvml_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Any:
        raise ModuleNotFoundError("No module named 'pynvml'")

    monkeypatch.setattr(gpu, "import_nvml", missing)
    with capture_logs() as logs:
        assert open_gpus() is None
    infos = [entry for entry in logs if entry["event"] == "no NVIDIA GPU found; GPU sampling off"]
    assert len(infos) == 1
    assert infos[0]["log_level"] == "info"
    assert "nvidia-ml-py" in infos[0]["reason"]


def test_no_gpu_when_library_missing() -> None:
    fake = FakeNvml([device()], init_error=FakeLibraryNotFound())
    with capture_logs() as logs:
        assert open_gpus(fake) is None
    assert [entry["event"] for entry in logs] == ["no NVIDIA GPU found; GPU sampling off"]
    assert str(NVML_ERROR_LIBRARY_NOT_FOUND) in logs[0]["reason"]


def test_no_gpu_when_no_device() -> None:
    fake = FakeNvml([])
    with capture_logs() as logs:
        assert open_gpus(fake) is None
    assert logs[0]["reason"] == "NVML lists no device"
    assert fake.shutdowns == 1


def test_real_pynvml_without_gpu() -> None:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install -e '.[test]')")
    with capture_logs() as logs:
        sampler = open_gpus(pynvml)
    if sampler is not None:
        # A machine with an NVIDIA GPU: the real devices are listed.
        assert sampler.devices
        sampler.close()
        return
    assert [entry["event"] for entry in logs] == ["no NVIDIA GPU found; GPU sampling off"]


@pytest.fixture
def parent_and_child() -> Iterator[tuple[int, int]]:
    """A real process with one child of its own, so the sampler has a subtree to sum over."""
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        yield parent.pid, child_pid
    finally:
        os.kill(child_pid, signal.SIGKILL)
        parent.kill()
        parent.wait(timeout=10)
        parent.stdout.close()
        # The test process is a child subreaper (see conftest.py), so the
        # orphaned child is now its own to reap.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child_pid, 0)


def test_resource_sampler_sums_subtree_gpu(tmp_path: Path, parent_and_child: tuple[int, int]) -> None:
    parent_pid, child_pid = parent_and_child
    unrelated_pid = os.getpid()
    fake = FakeNvml([device(used=5 * GIB, gpu_percent=70,
                            compute=[(parent_pid, GIB), (child_pid, 2 * GIB), (unrelated_pid, 2 * GIB)],
                            samples=[(parent_pid, 1, 20.0), (child_pid, 2, 35.0)])])  # fmt: skip
    path = tmp_path / "resources.csv"
    sampler = ResourceSampler(samples_path=path, gpu=open_fake(fake))
    sampler.track("client-0", parent_pid)
    sampler.sample()
    usage = sampler.usage[parent_pid]
    assert usage.processes == 2
    assert usage.gpu_memory_bytes == 3 * GIB
    assert usage.gpu_percent == 55.0
    assert sampler.machine.gpu_memory_used_bytes == 5 * GIB
    assert sampler.machine.gpu_percent == 70

    fake.devices[0]["compute"] = [(parent_pid, GIB)]
    sampler.sample()
    assert usage.gpu_memory_bytes == GIB
    assert usage.peak_gpu_memory_bytes == 3 * GIB
    sampler.close()
    assert fake.shutdowns == 1

    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_COLUMNS + GPU_CSV_COLUMNS
    client_rows = [row for row in rows if row["process"] == "client-0"]
    assert [int(row["gpu_memory_bytes"]) for row in client_rows] == [3 * GIB, GIB]
    assert client_rows[0]["gpu_percent"] == "55.0"
    machine_rows = [row for row in rows if row["process"] == "machine"]
    assert machine_rows[0]["gpu_memory_bytes"] == str(5 * GIB)

    summary = sampler.gpu_summary()
    assert summary is not None
    assert summary["devices"] == [{"index": 0, "name": "Fake GPU", "memory_total_bytes": 16 * GIB}]
    assert summary["processes"]["client-0"]["peak_gpu_memory_bytes"] == 3 * GIB
    assert summary["processes"]["client-0"]["peak_gpu_percent"] == 55.0


def test_resource_sampler_without_gpu(tmp_path: Path, parent_and_child: tuple[int, int]) -> None:
    path = tmp_path / "resources.csv"
    sampler = ResourceSampler(samples_path=path)
    sampler.track("client-0", parent_and_child[0])
    sampler.sample()
    sampler.close()
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert sampler.gpu_summary() is None


def _running_child(tmp_path: Path, pid: int) -> Child:
    child = Child(ProcessSpec("client-0", ["python"], "client"), tmp_path, lambda *_args: None)
    child.pid = pid
    child.started_at = 0.0
    return child


def test_live_table_gpu_columns_only_with_gpu(tmp_path: Path, parent_and_child: tuple[int, int]) -> None:
    parent_pid, _ = parent_and_child
    child = _running_child(tmp_path, parent_pid)

    plain = ResourceSampler()
    plain.track("client-0", parent_pid)
    plain.sample()
    lines = render_table([child], plain, 0.0, colour=False)
    assert "GPU" not in lines[0]
    assert "GPU" not in lines[-1]

    fake = FakeNvml([device(total=16 * GIB, used=3 * GIB, gpu_percent=42, compute=[(parent_pid, 3 * GIB)],
                            samples=[(parent_pid, 1, 42.0)])])  # fmt: skip
    with_gpu = ResourceSampler(gpu=open_fake(fake))
    with_gpu.track("client-0", parent_pid)
    with_gpu.sample()
    lines = render_table([child], with_gpu, 0.0, colour=False)
    with_gpu.close()
    assert lines[0].split()[-4:] == ["GPU", "%", "GPU", "memory"]
    assert lines[1].split()[-3:] == ["42", "3.0", "GiB"]
    assert lines[-1].endswith("RAM, 16.0 GiB GPU")
