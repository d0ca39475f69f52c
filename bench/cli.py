"""Command line: `python -m bench systems ...` compares whole runs, `python -m bench micro ...` times the supervisor."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.common import add_workload_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    systems = commands.add_parser("systems", help="run the same workload through every system and compare")
    add_workload_arguments(systems)
    systems.add_argument("--data-dir", type=Path, help="local CIFAR-10 (python-batch layout)")
    systems.add_argument(
        "--dataset", default="synthetic", choices=("cifar10", "synthetic"),
        help="data when --data-dir is not given (default: synthetic)",
    )  # fmt: skip
    systems.add_argument("--repeats", type=int, default=1, help="runs per system (default: 1)")
    systems.add_argument(
        "--systems", default="supervisor,classic,simengine,floor,floor-multi",
        help="comma-separated systems to run (default: all: supervisor,classic,simengine,floor,floor-multi)",
    )  # fmt: skip
    systems.add_argument("--run-timeout", type=float, default=1800.0, help="time limit per run, in s (default: 1800)")
    systems.add_argument("--out-dir", type=Path, help="folder for results.json and logs (default: bench/results/TIME)")

    micro = commands.add_parser("micro", help="time the supervisor's log forwarding, teardown, monitoring, readiness")
    micro.add_argument(
        "--only", default="logs,teardown,monitor,readiness",
        help="comma-separated benchmarks (default: logs,teardown,monitor,readiness)",
    )  # fmt: skip
    micro.add_argument("--short-lines", type=int, default=1_000_000, help="short lines printed (default: 1000000)")
    micro.add_argument("--long-lines", type=int, default=1_000, help="100 KB lines printed (default: 1000)")
    micro.add_argument("--idle-seconds", type=float, default=20.0, help="monitoring window, in s (default: 20)")
    micro.add_argument("--out-dir", type=Path, help="folder for results.json and logs (default: bench/results/TIME)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "systems":
        from bench.systems import run_systems

        return run_systems(args)
    from bench.micro import run_micro

    return run_micro(args)
