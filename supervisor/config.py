"""Parse and check the whole command line before anything starts.

Every problem found here ends the run with exit code 2 and a message that
names the option, the value and what to do instead.
"""

import argparse
import ipaddress
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from supervisor import __version__
from supervisor.exitcodes import help_table
from supervisor.faults import Fault, FaultSpecError, parse_fault
from supervisor.readiness import port_in_use

# Largest seed NumPy and TensorFlow accept (2**32 - 1); client N gets --seed + N.
MAX_SEED = 2**32 - 1


class ConfigError(Exception):
    """An invalid option value or combination; the message names the fix."""


@dataclass(frozen=True)
class Config:
    """Everything a run needs, checked. Durations are in seconds."""

    clients: int
    rounds: int
    fraction_fit: float
    fraction_evaluate: float
    steps_per_epoch: int
    batch_size: int
    dataset: str
    data_dir: Path | None
    download_timeout_s: float
    seed: int
    host: str
    port: int | None
    ready_timeout_s: float
    round_timeout_s: float | None
    grace_s: float
    timeout_s: float | None
    monitor_interval_s: float
    log_format: str
    run_dir: Path | None
    live: bool
    max_client_failures: int = 0
    client_wait_timeout_s: float = 600.0
    restart_clients: bool = False
    max_restarts: int = 3
    inject: tuple[Fault, ...] = ()
    inject_random_kill: float = 0.0
    inject_seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}

    def clients_per_round(self, fraction: float) -> int:
        """Return the fewest clients a round samples for `fraction`.

        With lost clients allowed, the server samples from the clients still
        connected, of which there can be as few as clients - max_client_failures.
        """
        return int((self.clients - self.max_client_failures) * fraction)

    @property
    def min_clients(self) -> int:
        """Return how many clients must stay connected for rounds to go on."""
        return max(self.clients_per_round(self.fraction_fit), self.clients_per_round(self.fraction_evaluate))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description=(
            "Run a Flower federated-learning simulation (one server, N Keras "
            "clients training MobileNetV2 on CIFAR-10) as supervised "
            "subprocesses on this machine: prefixed logs, live CPU and memory, "
            "and a full teardown as soon as any process fails."
        ),
        epilog="exit codes:\n" + help_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"fl-supervisor {__version__}")
    workload = parser.add_argument_group("federation")
    workload.add_argument("--clients", type=int, default=10, help="number of client processes (default: 10)")
    workload.add_argument(
        "--rounds", type=int, default=3, help="federated rounds; the classic recipe uses 100 (default: 3)"
    )
    workload.add_argument(
        "--fraction-fit",
        type=float,
        default=0.5,
        help="fraction of clients that train each round, in (0, 1] (default: 0.5)",
    )
    workload.add_argument(
        "--fraction-evaluate",
        type=float,
        default=1.0,
        help="fraction of clients that evaluate each round, in (0, 1] (default: 1.0)",
    )
    workload.add_argument(
        "--steps-per-epoch", type=int, default=3, help="training steps per client per round (default: 3)"
    )
    workload.add_argument("--batch-size", type=int, default=32, help="examples per training step (default: 32)")
    workload.add_argument("--seed", type=int, default=0, help="seed for the data shuffle and the clients (default: 0)")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=["auto", "cifar10", "synthetic"],
        default="auto",
        help=(
            "cifar10 reads --data-dir, Keras's cache or downloads it and never falls back; "
            "synthetic generates CIFAR-shaped data; auto takes CIFAR-10 when it can and "
            "otherwise synthetic data with a warning (default: auto)"
        ),
    )
    data.add_argument(
        "--data-dir",
        type=Path,
        help="local CIFAR-10 in the python-batch layout: a folder that is or contains "
        "cifar-10-batches-py/, or that contains cifar-10-python.tar.gz",
    )
    data.add_argument(
        "--download-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="time allowed for downloading CIFAR-10 when it is not cached, in seconds (default: 60)",
    )

    network = parser.add_argument_group("network")
    network.add_argument(
        "--host", default="127.0.0.1", help="address the server listens on (default: 127.0.0.1, loopback only)"
    )
    network.add_argument("--port", type=int, help="server port (default: a free port)")
    network.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="time the server has to open its port, in seconds (default: 120)",
    )

    control = parser.add_argument_group("supervision")
    control.add_argument(
        "--round-timeout",
        type=float,
        metavar="SECONDS",
        help="time limit for each round's fit and evaluate, passed to Flower, in seconds (default: none)",
    )
    control.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="time between SIGTERM and SIGKILL at teardown, in seconds (default: 5)",
    )
    control.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="time limit for the whole run, in seconds; exit code 124 when it expires (default: none)",
    )
    control.add_argument(
        "--monitor-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="time between CPU and memory samples, in seconds (default: 2)",
    )

    faults = parser.add_argument_group("lost clients and fault injection")
    faults.add_argument(
        "--max-client-failures",
        type=int,
        default=0,
        metavar="K",
        help="clients that may be lost while the run goes on with those left; 0 stops the run "
        "at the first failure (default: 0)",
    )
    faults.add_argument(
        "--client-wait-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="time the server waits for enough clients to be connected, in seconds; generous because "
        "TensorFlow clients take a while to start on a busy machine (default: 600)",
    )
    faults.add_argument(
        "--restart-clients",
        action="store_true",
        help="start a lost client again with the same partition, up to --max-restarts times",
    )
    faults.add_argument(
        "--max-restarts", type=int, default=3, metavar="N", help="restarts allowed per client (default: 3)"
    )
    faults.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="KIND:client-N@round=R",
        help="inject a fault when round R starts: kill (SIGKILL) or stall (SIGSTOP); repeatable, "
        "for example --inject kill:client-3@round=2",
    )
    faults.add_argument(
        "--inject-random-kill",
        type=float,
        default=0.0,
        metavar="P",
        help="kill each running client with probability P at the start of every round (default: 0)",
    )
    faults.add_argument(
        "--inject-seed",
        type=int,
        metavar="SEED",
        help="seed for --inject-random-kill (default: --seed)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--log-format",
        choices=["console", "json"],
        default="console",
        help="console: aligned, coloured lines; json: one JSON object per line on stdout (default: console)",
    )
    output.add_argument(
        "--no-live",
        action="store_true",
        help="no live process table in a terminal; log a resources event per interval instead",
    )
    output.add_argument(
        "--run-dir",
        type=Path,
        help="folder for logs, samples, history and summary.json (default: a new folder under runs/)",
    )
    return parser


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse `argv` and check every value; raise ConfigError on the first problem.

    argparse itself exits with code 2 on unknown options and malformed values.
    """
    args = build_parser().parse_args(argv)
    try:
        faults = tuple(parse_fault(text, args.clients, args.rounds) for text in args.inject)
    except FaultSpecError as error:
        raise ConfigError(str(error)) from None
    config = Config(
        clients=args.clients,
        rounds=args.rounds,
        fraction_fit=args.fraction_fit,
        fraction_evaluate=args.fraction_evaluate,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        dataset=args.dataset,
        data_dir=args.data_dir,
        download_timeout_s=args.download_timeout,
        seed=args.seed,
        host=args.host,
        port=args.port,
        ready_timeout_s=args.ready_timeout,
        round_timeout_s=args.round_timeout,
        grace_s=args.grace,
        timeout_s=args.timeout,
        monitor_interval_s=args.monitor_interval,
        log_format=args.log_format,
        run_dir=args.run_dir,
        live=not args.no_live,
        max_client_failures=args.max_client_failures,
        client_wait_timeout_s=args.client_wait_timeout,
        restart_clients=args.restart_clients,
        max_restarts=args.max_restarts,
        inject=faults,
        inject_random_kill=args.inject_random_kill,
        inject_seed=args.inject_seed,
    )
    check_config(config)
    return config


def check_config(config: Config) -> None:
    """Raise ConfigError for the first invalid value or combination."""
    _at_least("--clients", config.clients, 1)
    _at_least("--rounds", config.rounds, 1)
    _at_least("--steps-per-epoch", config.steps_per_epoch, 1)
    _at_least("--batch-size", config.batch_size, 1)
    _at_least("--seed", config.seed, 0)
    if config.seed + config.clients - 1 > MAX_SEED:
        raise ConfigError(
            f"--seed {config.seed} is too large: client seeds run up to --seed + --clients - 1, "
            f"which must stay at most {MAX_SEED}"
        )
    _at_least("--max-client-failures", config.max_client_failures, 0)
    _at_least("--max-restarts", config.max_restarts, 0)
    if config.max_client_failures >= config.clients:
        raise ConfigError(
            f"--max-client-failures {config.max_client_failures} allows every one of the {config.clients} "
            f"clients to be lost; give at most {config.clients - 1}"
        )
    if not 0 <= config.inject_random_kill <= 1:
        raise ConfigError(f"--inject-random-kill {config.inject_random_kill} is outside [0, 1]; give a probability")
    for option, fraction in (
        ("--fraction-fit", config.fraction_fit),
        ("--fraction-evaluate", config.fraction_evaluate),
    ):
        if not 0 < fraction <= 1:
            raise ConfigError(f"{option} {fraction} is outside (0, 1]; give a fraction such as 0.5")
        sampled = config.clients_per_round(fraction)
        if sampled < 1:
            remaining = config.clients - config.max_client_failures
            of_clients = _count(config.clients, "client")
            if remaining != config.clients:
                of_clients = f"the {_count(remaining, 'client')} left after {config.max_client_failures} failures"
            # Rounded up, so that the advice itself samples at least one client.
            least = math.ceil(1000 / remaining) / 1000
            advice = f"raise {option} to at least {least:g}, run more --clients"
            if config.max_client_failures:
                advice += " or allow fewer --max-client-failures"
            raise ConfigError(f"{option} {fraction} of {of_clients} samples {sampled} clients per round; {advice}")
    for option, seconds in (
        ("--grace", config.grace_s),
        ("--download-timeout", config.download_timeout_s),
    ):
        if not seconds >= 0:
            raise ConfigError(f"{option} {seconds} is negative; give a number of seconds, 0 or more")
    for option, maybe_seconds in (
        ("--ready-timeout", config.ready_timeout_s),
        ("--monitor-interval", config.monitor_interval_s),
        ("--timeout", config.timeout_s),
        ("--round-timeout", config.round_timeout_s),
        ("--client-wait-timeout", config.client_wait_timeout_s),
    ):
        if maybe_seconds is not None and not maybe_seconds > 0:
            raise ConfigError(f"{option} {maybe_seconds} must be a positive number of seconds")

    if config.dataset == "synthetic" and config.data_dir is not None:
        raise ConfigError(f"--data-dir {config.data_dir} conflicts with --dataset synthetic; drop one of them")
    if config.data_dir is not None and not config.data_dir.is_dir():
        raise ConfigError(
            f"--data-dir {config.data_dir} is not a folder; point it at CIFAR-10 in the python-batch "
            "layout, or use --dataset synthetic"
        )

    _check_host(config.host)
    if config.port is not None:
        if not 1 <= config.port <= 65535:
            raise ConfigError(f"--port {config.port} is outside 1-65535; omit --port to use a free one")
        if port_in_use(config.host, config.port):
            raise ConfigError(
                f"port {config.port} on {config.host} is already in use; choose another --port "
                "or omit it to use a free one"
            )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _at_least(option: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{option} {value} is below {minimum}; give {minimum} or more")


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"--host {host} is not an IP address; give one such as 127.0.0.1") from None


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def default_run_dir(base: Path = Path("runs")) -> Path:
    """Return a new time-stamped folder under `base` that does not exist yet."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base / stamp
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = base / f"{stamp}-{suffix}"
    return candidate


def environment_summary() -> dict[str, str]:
    """Return the settings from the environment that change a run."""
    keys = ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "KERAS_HOME")
    return {key: os.environ[key] for key in keys if key in os.environ}
