"""The live process table shown below the logs in a terminal."""

import time

from supervisor.child import Child
from supervisor.output import format_bytes, format_duration
from supervisor.resources import ResourceSampler

_HEADER_STYLE = "\x1b[7m"
_RESET = "\x1b[0m"


def render_table(children: list[Child], sampler: ResourceSampler, run_started_at: float, colour: bool) -> list[str]:
    """Return the table's lines: one per process, then the machine's totals.

    The GPU columns appear only where the sampler has a GPU.
    """
    now = time.time()
    gpu = sampler.gpu is not None
    width = max([len("process"), *(len(child.name) for child in children)])
    header = f"{'process':<{width}}  {'status':<18}  {'pid':>7}  {'CPU %':>6}  {'memory':>10}  {'uptime':>7}"
    if gpu:
        header += f"  {'GPU %':>6}  {'GPU memory':>10}"
    lines = [f"{_HEADER_STYLE}{header}{_RESET}" if colour else header]
    for child in children:
        usage = sampler.usage.get(child.pid) if child.pid is not None else None
        status = "running" if child.running else child.describe_exit()
        if child.running and usage is not None and usage.processes > 1:
            status += f" ({usage.processes} procs)"
        cpu = f"{usage.cpu_percent:.0f}" if usage and child.running else "-"
        memory = format_bytes(usage.rss_bytes) if usage and child.running and usage.rss_bytes else "-"
        end = child.ended_at or now
        uptime = format_duration(end - child.started_at) if child.started_at else "-"
        line = f"{child.name:<{width}}  {status:<18}  {child.pid or '-':>7}  {cpu:>6}  {memory:>10}  {uptime:>7}"
        if gpu:
            line += _gpu_cells(usage.gpu_percent, usage.gpu_memory_bytes) if usage and child.running else _gpu_cells()
        lines.append(line)
    machine = sampler.machine
    line = (
        f"{'machine':<{width}}  {'':<18}  {'':>7}  {machine.cpu_percent:>6.0f}  "
        f"{format_bytes(machine.memory_used_bytes):>10}  {format_duration(now - run_started_at):>7}"
    )
    if gpu:
        line += _gpu_cells(machine.gpu_percent, machine.gpu_memory_used_bytes)
        memory, gpu_memory = format_bytes(machine.memory_total_bytes), format_bytes(machine.gpu_memory_total_bytes)
        line += f"  of {memory} RAM, {gpu_memory} GPU"
    else:
        line += f"  of {format_bytes(machine.memory_total_bytes)}"
    lines.append(line)
    return lines


def _gpu_cells(percent: float | None = None, memory_bytes: int = 0) -> str:
    """Return the GPU % and GPU memory cells, with "-" for a missing value."""
    percent_cell = f"{percent:.0f}" if percent is not None else "-"
    memory_cell = format_bytes(memory_bytes) if memory_bytes else "-"
    return f"  {percent_cell:>6}  {memory_cell:>10}"
