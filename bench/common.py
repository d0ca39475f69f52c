"""Settings shared by every benchmarked system and the client each of them runs."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path
from typing import Any

# Flower's and Ray's usage reporting stay off: the benchmark must not reach any outside host.
QUIET_ENVIRONMENT = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TF_CPP_MIN_LOG_LEVEL": "1",
    "PYTHONUNBUFFERED": "1",
}


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the federation settings that every system takes, with fl-supervisor's defaults."""
    parser.add_argument("--clients", type=int, default=10, help="number of clients (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="federated rounds (default: 3)")
    parser.add_argument("--fraction-fit", type=float, default=0.5, help="fraction trained per round (default: 0.5)")
    parser.add_argument(
        "--fraction-evaluate", type=float, default=1.0, help="fraction evaluated per round (default: 1.0)"
    )
    parser.add_argument("--steps-per-epoch", type=int, default=3, help="training steps per fit (default: 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per training step (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the data split and the clients (default: 0)")


def free_port() -> int:
    """Return a loopback port that nothing is bound to right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quiet_logger(name: str) -> logging.Logger:
    """Return a logger that prints WARNING and above, for the clients' per-call INFO lines."""
    logger = logging.getLogger(f"bench.{name}")
    logger.setLevel(logging.WARNING)
    return logger


def partition_path(partitions_dir: Path, index: int) -> Path:
    return partitions_dir / f"partition-{index}.npz"


def build_client(part: Any, seed: int, args: argparse.Namespace, system: str) -> Any:
    """Seed Keras and return the same PartitionClient that `python -m workloads.client` runs.

    TensorFlow is imported here, inside the client's own process, and never
    at module level: forking a process that has loaded it is not safe.
    """
    import keras

    from workloads.client import PartitionClient
    from workloads.model import build_model

    keras.utils.set_random_seed(seed)
    return PartitionClient(
        build_model(),
        part,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        logger=quiet_logger(system),
    )
