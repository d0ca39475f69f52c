"""Flower's Simulation Engine (Ray backend) running the same client and FedAvg settings.

The ClientApp builds the model and loads its partition inside client_fn, as
Flower's simulation examples do, so every fit and evaluate call gets a fresh
client object. Each virtual client asks Ray for 1 CPU, the setting a user
picks to run one client per core.

Usage: python -m bench.simengine --partitions-dir DIR --rounds-file FILE [workload options]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workloads import runtime  # noqa: F401  (turns Flower's telemetry off before flwr is imported)

# isort: split

from flwr.client import Client, ClientApp
from flwr.common import Context
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.simulation import run_simulation

from bench.common import add_workload_arguments, build_client, partition_path
from bench.rounds import TimedFedAvg


def make_client(context: Context, *, partitions_dir: Path, args: argparse.Namespace) -> Client:
    from workloads.data import load_partition

    index = int(context.node_config["partition-id"])
    part = load_partition(partition_path(partitions_dir, index))
    client = build_client(part, args.seed + index, args, "simengine")
    return client.to_client()


def make_server(context: Context, *, args: argparse.Namespace) -> ServerAppComponents:
    strategy = TimedFedAvg(
        num_clients=args.clients,
        fraction_fit=args.fraction_fit,
        fraction_evaluate=args.fraction_evaluate,
        rounds_path=args.rounds_file,
    )
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=args.rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simengine", description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    parser.add_argument("--partitions-dir", type=Path, required=True)
    parser.add_argument("--rounds-file", type=Path, required=True, help="JSON file for the round times")
    parser.add_argument("--cpus-per-client", type=float, default=1.0, help="Ray CPUs per virtual client (default: 1)")
    args = parser.parse_args(argv)

    # Flower accepts only a client_fn(context) and a server_fn(context), so the settings travel in closures.
    def client_fn(context: Context) -> Client:
        return make_client(context, partitions_dir=args.partitions_dir, args=args)

    def server_fn(context: Context) -> ServerAppComponents:
        return make_server(context, args=args)

    client_app = ClientApp(client_fn=client_fn)
    server_app = ServerApp(server_fn=server_fn)
    backend_config = {
        "client_resources": {"num_cpus": args.cpus_per_client, "num_gpus": 0.0},
        # Ray binds to this address; keep it on loopback and without the dashboard.
        "init_args": {"_node_ip_address": "127.0.0.1", "include_dashboard": False},
    }
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=args.clients,
        backend_config=backend_config,  # type: ignore[arg-type]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
