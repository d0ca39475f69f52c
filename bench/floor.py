"""The compute floor: one round's fit and evaluate calls with no federation, in warmed-up processes.

--processes 1 runs every sampled client's calls one after another in one
process with one model. --processes N starts N processes (one per client),
warms each up, then releases them together for each round: the fit calls of
the sampled clients run at once, then every evaluate call. Warm-up runs one
fit and one evaluate per model first, so graph building is excluded.
The clients sampled for fit are the first fraction_fit of them; which ones
does not change the cost, because all partitions have the same size.

Usage: python -m bench.floor --partitions-dir DIR --out FILE [--processes N] [workload options]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import add_workload_arguments, partition_path


def _make_client(partitions_dir: Path, index: int, args: argparse.Namespace) -> Any:
    import keras

    from bench.common import quiet_logger
    from workloads.client import PartitionClient
    from workloads.data import load_partition
    from workloads.model import build_model

    keras.utils.set_random_seed(args.seed + index)
    return PartitionClient(
        build_model(),
        load_partition(partition_path(partitions_dir, index)),
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        logger=quiet_logger("floor"),
    )


def _counts(args: argparse.Namespace) -> tuple[int, int]:
    return max(1, int(args.clients * args.fraction_fit)), max(0, int(args.clients * args.fraction_evaluate))


def run_single(args: argparse.Namespace) -> list[float]:
    from workloads.data import load_partition

    client = _make_client(args.partitions_dir, 0, args)
    weights = client.get_parameters({})
    client.fit(weights, {})
    client.evaluate(weights, {})
    parts = [load_partition(partition_path(args.partitions_dir, i)) for i in range(args.clients)]
    fit_count, evaluate_count = _counts(args)
    round_times = []
    for _ in range(args.rounds):
        began = time.monotonic()
        for index in range(fit_count):
            client.part = parts[index]
            client.fit(weights, {})
        for index in range(evaluate_count):
            client.part = parts[index]
            client.evaluate(weights, {})
        round_times.append(time.monotonic() - began)
    return round_times


def _worker(index: int, args: argparse.Namespace, barrier: Any) -> None:
    client = _make_client(args.partitions_dir, index, args)
    weights = client.get_parameters({})
    client.fit(weights, {})
    client.evaluate(weights, {})
    fit_count, evaluate_count = _counts(args)
    for _ in range(args.rounds):
        barrier.wait()
        if index < fit_count:
            client.fit(weights, {})
        barrier.wait()
        if index < evaluate_count:
            client.evaluate(weights, {})
    barrier.wait()


def run_multi(args: argparse.Namespace) -> list[float]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(args.processes + 1)
    workers = [context.Process(target=_worker, args=(i, args, barrier)) for i in range(args.processes)]
    for worker in workers:
        worker.start()
    round_times = []
    barrier.wait()  # every worker is warmed up
    for _ in range(args.rounds):
        began = time.monotonic()
        barrier.wait()  # fit calls done
        barrier.wait()  # evaluate calls done, or the end
        round_times.append(time.monotonic() - began)
    for worker in workers:
        worker.join()
    return round_times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    parser.add_argument("--partitions-dir", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=1, help="1, or one process per client (default: 1)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the round times")
    args = parser.parse_args(argv)
    if args.processes not in (1, args.clients):
        parser.error(f"--processes must be 1 or --clients ({args.clients}), got {args.processes}")

    round_times = run_single(args) if args.processes == 1 else run_multi(args)
    args.out.write_text(json.dumps({"round_times_s": round_times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
