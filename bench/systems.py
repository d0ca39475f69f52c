"""Run the same federated workload through every system, alternating and repeating, and report medians.

Systems: supervisor (fl-supervisor with its defaults), classic (bench.classic),
simengine (bench.simengine), floor (bench.floor, one process) and floor-multi
(bench.floor, one process per client).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from bench.common import QUIET_ENVIRONMENT
from bench.measure import Measurement, run_measured

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("supervisor", "classic", "simengine", "floor", "floor-multi")
GIB = 2**30


def workload_options(args: argparse.Namespace) -> list[str]:
    return [
        "--clients", str(args.clients),
        "--rounds", str(args.rounds),
        "--fraction-fit", repr(args.fraction_fit),
        "--fraction-evaluate", repr(args.fraction_evaluate),
        "--steps-per-epoch", str(args.steps_per_epoch),
        "--batch-size", str(args.batch_size),
        "--seed", str(args.seed),
    ]  # fmt: skip


def data_options(args: argparse.Namespace) -> list[str]:
    if args.data_dir is not None:
        return ["--dataset", "cifar10", "--data-dir", str(args.data_dir)]
    return ["--dataset", args.dataset]


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(QUIET_ENVIRONMENT)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) if not path else f"{PROJECT_ROOT}{os.pathsep}{path}"
    return env


def command_for(system: str, args: argparse.Namespace, run_dir: Path, partitions_dir: Path) -> list[str]:
    python = [sys.executable, "-m"]
    if system == "supervisor":
        return [*python, "supervisor", *workload_options(args), *data_options(args),
                "--log-format", "json", "--no-live", "--run-dir", str(run_dir / "supervisor-run")]  # fmt: skip
    if system == "classic":
        return [*python, "bench.classic", *workload_options(args), *data_options(args),
                "--rounds-file", str(run_dir / "rounds.json")]  # fmt: skip
    if system == "simengine":
        return [*python, "bench.simengine", *workload_options(args), "--partitions-dir", str(partitions_dir),
                "--rounds-file", str(run_dir / "rounds.json")]  # fmt: skip
    processes = "1" if system == "floor" else str(args.clients)
    return [*python, "bench.floor", *workload_options(args), "--partitions-dir", str(partitions_dir),
            "--processes", processes, "--out", str(run_dir / "floor.json")]  # fmt: skip


def read_rounds(system: str, run_dir: Path) -> list[dict[str, Any]]:
    """Return [{"started_at", "ended_at"}] per completed round, in Unix seconds."""
    path = run_dir / "supervisor-run" / "history.json" if system == "supervisor" else run_dir / "rounds.json"
    if not path.is_file():
        return []
    rounds = json.loads(path.read_text()).get("rounds", [])
    return [r for r in rounds if r.get("started_at") is not None and r.get("ended_at") is not None]


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def run_one(system: str, args: argparse.Namespace, run_dir: Path, partitions_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True)
    argv = command_for(system, args, run_dir, partitions_dir)
    load_before = load_average()
    measured: Measurement = run_measured(
        argv,
        timeout_s=args.run_timeout,
        cwd=PROJECT_ROOT,
        env=child_environment(),
        stdout_path=run_dir / "stdout.log",
        stderr_path=run_dir / "stderr.log",
    )
    result: dict[str, Any] = {
        "system": system,
        "argv": argv,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        **{key: value for key, value in asdict(measured).items() if key != "per_process_peak_rss"},
        "max_process_peak_rss_bytes": max(measured.per_process_peak_rss.values(), default=0),
    }
    if system.startswith("floor"):
        floor_file = run_dir / "floor.json"
        times = json.loads(floor_file.read_text())["round_times_s"] if floor_file.is_file() else []
        result["round_times_s"] = times
        result["round1_end_s"] = None
        result["rounds2_mean_s"] = statistics.mean(times) if times else None
        result["wall_s"] = None  # warm-up and start-up are not part of the floor
        return result
    rounds = read_rounds(system, run_dir)
    times = [r["ended_at"] - r["started_at"] for r in rounds]
    result["round_times_s"] = times
    result["rounds_completed"] = len(rounds)
    result["round1_end_s"] = rounds[0]["ended_at"] - measured.started_at if rounds else None
    result["rounds2_mean_s"] = statistics.mean(times[1:]) if len(times) > 1 else None
    if system == "supervisor":
        result["supervisor_cpu_s"] = measured.root_cpu_s
    return result


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(results: list[dict[str, Any]], systems: list[str], clients: int) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for system in systems:
        runs = [r for r in results if r["system"] == system]
        row = {
            key: median_of(runs, key)
            for key in ("wall_s", "round1_end_s", "rounds2_mean_s", "peak_rss_bytes", "cpu_s",
                        "max_process_peak_rss_bytes", "supervisor_cpu_s")
        }  # fmt: skip
        row["runs"] = len(runs)
        row["failed_runs"] = sum(1 for r in runs if r["returncode"] != 0 or r["timed_out"])
        if row["peak_rss_bytes"] and not system.startswith("floor"):
            per_client = row["peak_rss_bytes"] / clients
            row["peak_rss_per_client_bytes"] = per_client
            row["clients_in_24_gib_estimate"] = int(24 * GIB // per_client)
        table[system] = row
    reference = table.get("supervisor", {})
    floor = table.get("floor", {}).get("rounds2_mean_s")
    for row in table.values():
        for key in ("wall_s", "round1_end_s", "rounds2_mean_s", "peak_rss_bytes", "cpu_s"):
            base = reference.get(key)
            row[f"{key}_vs_supervisor"] = row[key] / base if row.get(key) and base else None
        row["rounds2_vs_floor"] = row["rounds2_mean_s"] / floor if row.get("rounds2_mean_s") and floor else None
    if reference.get("supervisor_cpu_s") and reference.get("cpu_s"):
        reference["supervisor_cpu_share"] = reference["supervisor_cpu_s"] / reference["cpu_s"]
    return table


def _cell(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value / scale:.{digits}f}"


def render_table(table: dict[str, dict[str, Any]]) -> str:
    header = ("| system | wall s | to end of round 1 s | rounds 2+ mean s | x supervisor | x floor "
              "| peak memory GiB | CPU s | runs (failed) |")  # fmt: skip
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for system, row in table.items():
        lines.append(
            f"| {system} | {_cell(row['wall_s'])} | {_cell(row['round1_end_s'])} | {_cell(row['rounds2_mean_s'])} "
            f"| {_cell(row['rounds2_mean_s_vs_supervisor'], digits=2)} | {_cell(row['rounds2_vs_floor'], digits=2)} "
            f"| {_cell(row['peak_rss_bytes'], GIB, 2)} | {_cell(row['cpu_s'], digits=0)} "
            f"| {row['runs']} ({row['failed_runs']}) |"
        )
    return "\n".join(lines)


def prepare_partitions(args: argparse.Namespace, out_dir: Path) -> Path:
    """Write the partitions that simengine and floor read, with the same split as the other systems."""
    partitions_dir = out_dir / "partitions"
    command = [sys.executable, "-m", "workloads.data", *data_options(args), "--clients", str(args.clients),
               "--seed", str(args.seed), "--out", str(partitions_dir)]  # fmt: skip
    subprocess.run(command, check=True, cwd=PROJECT_ROOT, env=child_environment(), stdout=subprocess.DEVNULL)
    return partitions_dir


def machine_description() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def run_systems(args: argparse.Namespace) -> int:
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        print(f"error: unknown system {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    out_dir = args.out_dir or PROJECT_ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=False)
    needs_partitions = any(s in ("simengine", "floor", "floor-multi") for s in systems)
    partitions_dir = prepare_partitions(args, out_dir) if needs_partitions else out_dir / "partitions"

    results: list[dict[str, Any]] = []
    document: dict[str, Any] = {
        "command": sys.argv,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine_description(),
        "settings": vars(args) | {"data_dir": str(args.data_dir), "out_dir": str(out_dir)},
        "runs": results,
    }
    for repeat in range(args.repeats):
        # Rotate the order so that no system always runs first or last.
        shift = repeat % len(systems)
        for system in systems[shift:] + systems[:shift]:
            print(f"[bench] repeat {repeat + 1}/{args.repeats}: {system} (load {load_average()})", flush=True)
            result = run_one(system, args, out_dir / f"{repeat + 1}-{system}", partitions_dir)
            result["repeat"] = repeat + 1
            results.append(result)
            print(
                f"[bench]   exit {result['returncode']}, wall {_cell(result['wall_s'])} s, "
                f"rounds {[round(t, 1) for t in result['round_times_s']]}, "
                f"peak {_cell(result['peak_rss_bytes'], GIB, 2)} GiB, CPU {_cell(result['cpu_s'])} s",
                flush=True,
            )
            document["summary"] = summarise(results, systems, args.clients)
            (out_dir / "results.json").write_text(json.dumps(document, indent=1, default=str))
    table = summarise(results, systems, args.clients)
    document["summary"] = table
    document["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    (out_dir / "results.json").write_text(json.dumps(document, indent=1, default=str))
    print(render_table(table))
    print(f"results: {out_dir / 'results.json'}")
    return 0
