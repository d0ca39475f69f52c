"""Sample NVIDIA GPU memory and utilisation per process through NVML.

NVML comes from the optional `nvidia-ml-py` package (module `pynvml`,
installed by the `gpu` extra). `open_gpus()` returns None, after one INFO
line, where the package is missing, the NVML library cannot be loaded or
started, or it lists no device, so a machine without an NVIDIA GPU simply
runs without GPU columns.

NOTE: NVML reports the pids of the host's pid namespace. In a container
that has its own pid namespace those pids do not match the children's, so
the per-process GPU values stay 0 while the device totals stay correct.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger()

# NVML's return code for "no data", as in nvml.h; pynvml exposes it as NVML_ERROR_NOT_FOUND.
_NVML_ERROR_NOT_FOUND = 6


@dataclass
class GpuDevice:
    """One NVIDIA device that NVML lists."""

    index: int
    name: str
    memory_total_bytes: int


@dataclass
class GpuSample:
    """One pass over every device.

    `memory_by_pid` maps each pid to the device memory it uses, summed over
    the devices. `percent_by_pid` maps each pid to its share of SM time since
    the previous sample, summed over the devices, so like CPU % it can exceed
    100 on a machine with several GPUs. `percent` is the mean utilisation of
    the devices, or None where NVML cannot report it.
    """

    memory_by_pid: dict[int, int] = field(default_factory=dict)
    percent_by_pid: dict[int, float] = field(default_factory=dict)
    memory_used_bytes: int = 0
    memory_total_bytes: int = 0
    percent: float | None = None


def import_nvml() -> Any:
    """Import pynvml; tests replace this to simulate a missing package."""
    return importlib.import_module("pynvml")


def open_gpus(nvml: Any | None = None) -> "GpuSampler | None":
    """Start NVML and return a sampler for every device, or None where there is no NVIDIA GPU.

    `nvml` is the pynvml module, or an object with the same functions (tests
    pass a fake one). The "no GPU" case is logged once at INFO with its reason.
    """
    if nvml is None:
        try:
            nvml = import_nvml()
        except ImportError as error:
            _log_no_gpu(f"the nvidia-ml-py package is not installed ({error}); pip install 'fl-supervisor[gpu]'")
            return None
    try:
        nvml.nvmlInit()
    except (nvml.NVMLError, OSError) as error:
        # NVMLError_LibraryNotFound where libnvidia-ml.so is missing (no driver),
        # NVMLError_DriverNotLoaded and the like where the driver is not running.
        _log_no_gpu(f"NVML did not start: {error}")
        return None
    try:
        count = int(nvml.nvmlDeviceGetCount())
        handles = [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(count)]
        devices = [_describe(nvml, index, handle) for index, handle in enumerate(handles)]
    except nvml.NVMLError as error:
        _shutdown(nvml)
        _log_no_gpu(f"NVML did not list the devices: {error}")
        return None
    if not devices:
        _shutdown(nvml)
        _log_no_gpu("NVML lists no device")
        return None
    log.info("GPU sampling on", devices=[f"{device.index}: {device.name}" for device in devices])
    return GpuSampler(nvml, handles, devices)


class GpuSampler:
    """Per-process and whole-device GPU usage from NVML, one `sample()` per interval."""

    def __init__(self, nvml: Any, handles: list[Any], devices: list[GpuDevice]) -> None:
        self.nvml = nvml
        self.handles = handles
        self.devices = devices
        # NVML returns only utilisation samples newer than this timestamp
        # (microseconds, NVML's own clock), so each sample covers the last interval.
        self._last_seen = [0] * len(handles)
        self._failed_calls: set[str] = set()
        self._closed = False

    def sample(self) -> GpuSample:
        """Read every device once; a failing NVML call is logged once and leaves its values out."""
        result = GpuSample()
        percents: list[float] = []
        for index, handle in enumerate(self.handles):
            for pid, used in self._memory_by_pid(handle).items():
                result.memory_by_pid[pid] = result.memory_by_pid.get(pid, 0) + used
            for pid, percent in self._percent_by_pid(index, handle).items():
                result.percent_by_pid[pid] = result.percent_by_pid.get(pid, 0.0) + percent
            memory = self._call("nvmlDeviceGetMemoryInfo", handle)
            if memory is not None:
                result.memory_used_bytes += int(memory.used)
                result.memory_total_bytes += int(memory.total)
            rates = self._call("nvmlDeviceGetUtilizationRates", handle)
            if rates is not None:
                percents.append(float(rates.gpu))
        if percents:
            result.percent = sum(percents) / len(percents)
        return result

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _shutdown(self.nvml)

    def _memory_by_pid(self, handle: Any) -> dict[int, int]:
        """Return the device memory of each pid on one device.

        A process that is both a compute and a graphics client of the device
        appears in both lists with the same memory, so it is counted once.
        """
        used: dict[int, int] = {}
        for function in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for process in self._call(function, handle) or []:
                # usedGpuMemory is None where the driver cannot tell (Windows WDDM, some vGPUs).
                memory = int(process.usedGpuMemory or 0)
                used[int(process.pid)] = max(used.get(int(process.pid), 0), memory)
        return used

    def _percent_by_pid(self, index: int, handle: Any) -> dict[int, float]:
        """Return each pid's SM utilisation on one device since the previous sample."""
        samples = self._call("nvmlDeviceGetProcessUtilization", handle, self._last_seen[index])
        if not samples:
            return {}
        latest: dict[int, Any] = {}
        for entry in samples:
            previous = latest.get(int(entry.pid))
            if previous is None or entry.timeStamp > previous.timeStamp:
                latest[int(entry.pid)] = entry
        self._last_seen[index] = max(int(entry.timeStamp) for entry in samples)
        return {pid: float(entry.smUtil) for pid, entry in latest.items()}

    def _call(self, function: str, *args: Any) -> Any:
        """Call one NVML function; return None on an NVML error, logging each function's first failure."""
        try:
            return getattr(self.nvml, function)(*args)
        except self.nvml.NVMLError as error:
            # NVML_ERROR_NOT_FOUND from the utilisation call means that no
            # process used the device since the last sample, which is no failure.
            if getattr(error, "value", None) == getattr(self.nvml, "NVML_ERROR_NOT_FOUND", _NVML_ERROR_NOT_FOUND):
                return None
            if function not in self._failed_calls:
                self._failed_calls.add(function)
                log.warning("NVML call failed; its GPU values are left out", call=function, error=str(error))
            return None


def _describe(nvml: Any, index: int, handle: Any) -> GpuDevice:
    name = nvml.nvmlDeviceGetName(handle)
    if isinstance(name, bytes):  # pynvml before 11.5 returns bytes
        name = name.decode("utf-8", "replace")
    return GpuDevice(index=index, name=str(name), memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total))


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError as error:
        log.warning("NVML shutdown failed", error=str(error))


def _log_no_gpu(reason: str) -> None:
    log.info("no NVIDIA GPU found; GPU sampling off", reason=reason)
