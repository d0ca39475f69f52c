"""Turn a configuration into the processes to start and their order.

This is the only module that builds the workloads' command lines. The fleet
starts the server, waits for `ready_port`, then starts the clients.
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["server", "client"]

# Folder that contains the `workloads` package, put on the children's
# PYTHONPATH so `python -m workloads.server` works from any directory.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessSpec:
    """One process to start: its name in logs, command line and role.

    `ready_port` is set for the server only: the clients start once a TCP
    connection to it succeeds. `env` contains variables added to the
    supervisor's own environment.
    """

    name: str
    argv: list[str]
    role: Role
    env: dict[str, str] = field(default_factory=dict)
    ready_port: int | None = None


@dataclass(frozen=True)
class Plan:
    """The server, then the clients, in start order."""

    server: ProcessSpec
    clients: list[ProcessSpec]
    host: str


@dataclass(frozen=True)
class WorkloadSettings:
    """The settings from the configuration that the plan uses."""

    host: str
    port: int
    clients: int
    rounds: int
    fraction_fit: float
    fraction_evaluate: float
    round_timeout_s: float | None
    steps_per_epoch: int
    batch_size: int
    seed: int
    max_client_failures: int = 0
    client_wait_timeout_s: float = 600.0


def build_plan(settings: WorkloadSettings, partitions: list[Path], history_path: Path) -> Plan:
    """Return the server and one client per partition file."""
    address = _address(settings.host, settings.port)
    env = _child_environment()

    server_argv = [
        sys.executable, "-u", "-m", "workloads.server",
        "--address", address,
        "--clients", str(settings.clients),
        "--rounds", str(settings.rounds),
        "--fraction-fit", repr(settings.fraction_fit),
        "--fraction-evaluate", repr(settings.fraction_evaluate),
        "--history", str(history_path),
        "--max-client-failures", str(settings.max_client_failures),
        "--client-wait-timeout", repr(settings.client_wait_timeout_s),
    ]  # fmt: skip
    if settings.round_timeout_s is not None:
        server_argv += ["--round-timeout", repr(settings.round_timeout_s)]
    server = ProcessSpec("server", server_argv, "server", env=env, ready_port=settings.port)

    clients = []
    for index, partition in enumerate(partitions):
        name = f"client-{index}"
        argv = [
            sys.executable, "-u", "-m", "workloads.client",
            "--server", address,
            "--partition", str(partition),
            "--steps-per-epoch", str(settings.steps_per_epoch),
            "--batch-size", str(settings.batch_size),
            "--seed", str(settings.seed + index),
            "--name", name,
        ]  # fmt: skip
        clients.append(ProcessSpec(name, argv, "client", env=env))
    return Plan(server=server, clients=clients, host=settings.host)


def _address(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _child_environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    python_path = str(_PROJECT_ROOT) if not path else f"{_PROJECT_ROOT}{os.pathsep}{path}"
    env = {"PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
    # TensorFlow's INFO lines (oneDNN notices, CPU feature lists) repeat in
    # every client; warnings and errors still show. A user's own setting wins.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"))
    return env
