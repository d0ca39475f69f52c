"""summary.json and the short human summary printed at the end of a run."""

import time
from typing import Any

from supervisor.child import Child
from supervisor.fleet import LostClient, Outcome
from supervisor.output import format_bytes, format_duration
from supervisor.resources import ResourceSampler


def build_summary(
    *,
    config: dict[str, Any],
    outcome: Outcome,
    started_at: float,
    children: list[Child],
    sampler: ResourceSampler,
    data: dict[str, Any] | None,
    history: dict[str, Any] | None,
    port: int | None,
    lost: list[LostClient] | None = None,
    injected: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return the content of summary.json. Times are Unix seconds, sizes bytes."""
    ended_at = time.time()
    processes = []
    for child in children:
        usage = sampler.usage.get(child.pid) if child.pid is not None else None
        code = child.returncode
        processes.append({
            "name": child.name,
            "role": child.spec.role,
            "pid": child.pid,
            "argv": child.spec.argv,
            "exit_code": code if code is not None and code >= 0 else None,
            "signal": -code if code is not None and code < 0 else None,
            "status": child.describe_exit(),
            "stopped_by_supervisor": child.stopped_by_supervisor,
            "started_at": child.started_at,
            "ended_at": child.ended_at,
            "peak_rss_bytes": usage.peak_rss_bytes if usage else None,
            "cpu_seconds": round(usage.cpu_seconds, 2) if usage else None,
        })  # fmt: skip
    rounds = (history or {}).get("rounds", [])
    total_rounds = int(config.get("rounds", len(rounds)))
    return {
        "outcome": {
            "status": outcome.status,
            "exit_code": int(outcome.code),
            "reason": outcome.reason,
            "failed_process": outcome.failed_process,
        },
        "started_at": started_at,
        "ended_at": ended_at,
        "wall_seconds": round(ended_at - started_at, 2),
        "config": config,
        "port": port,
        "data": data,
        "rounds": rounds,
        "rounds_completed": len(rounds),
        "processes": processes,
        "lost_clients": [_lost_entry(entry, total_rounds) for entry in lost or []],
        "injected_faults": injected or [],
    }


def _lost_entry(entry: LostClient, total_rounds: int) -> dict[str, Any]:
    """Describe a lost client with the rounds it missed.

    A client lost for good misses the round it was lost in and every later
    one. A restarted client misses only the round it was lost in.
    """
    first = max(1, entry.round)
    missed = [first] if entry.restarted else list(range(first, total_rounds + 1))
    return {
        "name": entry.name,
        "pid": entry.pid,
        "lost_in_round": entry.round,
        "status": entry.status,
        "injected": entry.injected,
        "restarted": entry.restarted,
        "rounds_missed": missed,
    }


_HEADLINES = {
    "succeeded": "Run succeeded",
    "failed": "Run failed",
    "invalid input": "Run did not start (invalid input)",
    "timed out": "Run timed out",
    "interrupted": "Run interrupted",
}


def render_summary(summary: dict[str, Any], run_dir: str) -> list[str]:
    """Return the lines printed after the run: outcome, rounds, per-process peaks."""
    outcome = summary["outcome"]
    headline = _HEADLINES.get(outcome["status"], f"Run {outcome['status']}")
    lines = [
        "",
        f"{headline} after {format_duration(summary['wall_seconds'])} "
        f"(exit code {outcome['exit_code']}): {outcome['reason']}",
    ]
    data = summary.get("data") or {}
    if data:
        lines.append(
            f"Data: {data.get('dataset')} ({data.get('origin')}), "
            f"{data.get('train_per_client')} train / {data.get('test_per_client')} test examples per client"
        )
    if summary["rounds"]:
        lines += ["", f"{'round':>5}  {'loss':>8}  {'accuracy':>8}  {'time':>8}"]
        for entry in summary["rounds"]:
            loss = _number(entry.get("loss"), "{:.4f}")
            accuracy = _number(entry.get("accuracy"), "{:.4f}")
            duration = format_duration(entry["duration_s"]) if entry.get("duration_s") is not None else "-"
            lines.append(f"{entry['round']:>5}  {loss:>8}  {accuracy:>8}  {duration:>8}")
    if summary["processes"]:
        width = max(len(p["name"]) for p in summary["processes"])
        lines += ["", f"{'process':<{width}}  {'pid':>7}  {'peak memory':>11}  {'CPU s':>7}  status"]
        for process in summary["processes"]:
            peak = format_bytes(process["peak_rss_bytes"]) if process["peak_rss_bytes"] else "-"
            cpu = f"{process['cpu_seconds']:.1f}" if process["cpu_seconds"] is not None else "-"
            status = process["status"] + (" (stopped by the supervisor)" if process["stopped_by_supervisor"] else "")
            lines.append(f"{process['name']:<{width}}  {process['pid'] or '-':>7}  {peak:>11}  {cpu:>7}  {status}")
    if summary.get("lost_clients"):
        lines += ["", "Lost clients:"]
        for entry in summary["lost_clients"]:
            cause = "" if entry["injected"] else " (a real failure)"
            then = "restarted" if entry["restarted"] else "missed rounds " + ", ".join(map(str, entry["rounds_missed"]))
            lines.append(f"  {entry['name']} in round {entry['lost_in_round']}: {entry['status']}{cause}; {then}")
    lines += ["", f"Run folder: {run_dir}"]
    return lines


def _number(value: Any, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, (int, float)) else "-"
