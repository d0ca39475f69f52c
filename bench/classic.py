"""The classic recipe: one multiprocessing.Process for the server and one per client, after a fixed sleep.

Written in the style of Flower's older examples: the parent loads and splits
the data, forks the server, sleeps 2 s so the server can start listening, then
forks every client with its partition and joins them all. It uses today's
legacy API (flwr.server.start_server and flwr.client.start_client). TensorFlow
is imported inside each client process only, because forking a process that
has already started TensorFlow is unsafe.

Usage: python -m bench.classic --rounds-file FILE [--data-dir DIR | --dataset synthetic] [workload options]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

from workloads import runtime  # noqa: F401  (turns Flower's telemetry off before flwr is imported)

# isort: split

import flwr as fl

from bench.common import add_workload_arguments, build_client, free_port
from bench.rounds import TimedFedAvg
from workloads.data import Partition, load_dataset, partition

CLIENT_START_DELAY_S = 2.0


def run_server(address: str, args: argparse.Namespace) -> None:
    strategy = TimedFedAvg(
        num_clients=args.clients,
        fraction_fit=args.fraction_fit,
        fraction_evaluate=args.fraction_evaluate,
        rounds_path=args.rounds_file,
    )
    fl.server.start_server(
        server_address=address, config=fl.server.ServerConfig(num_rounds=args.rounds), strategy=strategy
    )


def run_client(address: str, part: Partition, seed: int, args: argparse.Namespace) -> None:
    client = build_client(part, seed, args, "classic")
    fl.client.start_client(server_address=address, client=client.to_client(), insecure=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classic", description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    parser.add_argument("--dataset", default="auto", choices=("auto", "cifar10", "synthetic"))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--rounds-file", type=Path, required=True, help="JSON file for the round times")
    args = parser.parse_args(argv)

    dataset = load_dataset(args.dataset, args.data_dir, seed=args.seed, download_timeout_s=60.0, warn=print)
    parts = partition(dataset, args.clients, args.seed)
    address = f"127.0.0.1:{free_port()}"

    server = multiprocessing.Process(target=run_server, args=(address, args))
    server.start()
    time.sleep(CLIENT_START_DELAY_S)

    clients = []
    for index, part in enumerate(parts):
        client = multiprocessing.Process(target=run_client, args=(address, part, args.seed + index, args))
        client.start()
        clients.append(client)
    for client in clients:
        client.join()
    server.join()

    failed = [process.exitcode for process in [server, *clients] if process.exitcode != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
