"""Flower server that runs FedAvg rounds and records them: `python -m workloads.server`.

stdout carries only round events, one per line: the prefix "fl-event " and a
compact JSON object with an "event" key (server_started, round_started,
client_done, fit_done, evaluate_done, round_done, client_lost, server_done,
server_stopped, server_failed). client_done follows each client's fit or
evaluate reply: {"event": "client_done", "round": R, "phase": "fit" or
"evaluate", "done": replies so far, "of": clients sampled, "failed": bool}.
Flower's own log goes to stderr.

Lost clients. Flower's SimpleClientManager waits up to 24 hours for enough
clients before each fit and evaluate sampling, so the server always uses
FailureTolerantClientManager (workloads.client_manager). With
--max-client-failures K = 0 (the default) the strategy needs all N = --clients
clients connected; with K > 0 it goes on with fewer:

- Before round 1 it waits until all N clients are connected.
- After that each fit or evaluate step samples from the clients connected at
  that moment. FedAvg samples max(int(available * fraction), minimum) of them and
  requires min_available_clients = N - K connected. The minimums are
  min_fit_clients = max(1, int((N - K) * fraction_fit)) and
  min_evaluate_clients = max(1, int((N - K) * fraction_evaluate)), so they never
  exceed N - K. With K = 0 these are the same settings as before.
- A client that reconnects joins the pool at once and is sampled from the next
  fit or evaluate step on.
- Every wait for clients lasts at most --client-wait-timeout seconds. When it
  expires, the server logs an error with the number of clients needed and
  connected, emits server_failed and exits with status 1.
- A client_lost event reports each client whose gRPC stream ended before all
  rounds ran, except the streams that the server itself closes when a signal
  stops it, whatever K is.

Event fields added for lost clients: round_started has "available", the number
of connected clients after sampling (also with K = 0). client_lost is
{"event": "client_lost", "round": R, "cid": Flower's client id, "available": n},
where R is the round in progress, or the next round between rounds, and n counts
the clients still connected. A server_failed caused by the wait for clients adds
"clients_needed" and "clients_connected".

Round timeouts (--round-timeout), as flwr 1.42's legacy gRPC transport
implements them: the timeout applies to each instruction sent to a client, not
to the whole round. When a client does not reply in time, Flower aborts that
client's stream with DEADLINE_EXCEEDED and unregisters it, so the round counts
it as a failure and completes with the replies it has. The client process is
not interrupted; when its fit or evaluate call returns, it finds the stream
closed and start_client raises grpc.RpcError. With K = 0 the next sampling then
waits for a client that is no longer connected.

Exit status: 0 when all rounds ran; 1 when the server failed with an exception
or too few clients were connected in time; 2 on invalid arguments; 3 when
SIGINT, SIGTERM or SIGQUIT stopped it before all rounds ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# runtime sets environment variables that flwr reads when imported.
from workloads import runtime

# isort: split

import flwr.supercore.telemetry
from flwr.common import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar
from flwr.server import ServerConfig, start_server
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.supercore.exit import add_exit_handler

from workloads.client_manager import ClientWaitTimeoutError, FailureTolerantClientManager
from workloads.files import write_json_atomically

EVENT_PREFIX = "fl-event "
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STOPPED = 3
DEFAULT_CLIENT_WAIT_TIMEOUT_S = 120.0

EventSink = Callable[[dict[str, Any]], None]

# client_lost events come from gRPC threads, so lines are written under a lock to keep them whole.
_stdout_lock = threading.Lock()


def print_event(event: dict[str, Any]) -> None:
    """Print `event` to stdout as one "fl-event {json}" line and flush."""
    line = EVENT_PREFIX + json.dumps(event, separators=(",", ":")) + "\n"
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def weighted_accuracy(metrics: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Average the clients' "accuracy" weighted by their number of examples, or return {} when none reported it."""
    pairs = [(num_examples, float(m["accuracy"])) for num_examples, m in metrics if "accuracy" in m]
    total = sum(num_examples for num_examples, _ in pairs)
    if total == 0:
        return {}
    return {"accuracy": sum(num_examples * accuracy for num_examples, accuracy in pairs) / total}


def no_fit_metrics(metrics: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Return {}: the clients report no training metrics to aggregate."""
    return {}


class RecordingFedAvg(FedAvg):
    """FedAvg that emits an event at each round step and rewrites the history file after each round.

    A round starts when configure_fit has sampled its clients, so started_at
    excludes the wait for clients to connect. It ends in aggregate_evaluate, or
    in configure_evaluate when no client is sampled for evaluation.
    """

    def __init__(
        self,
        *,
        num_rounds: int,
        num_clients: int,
        fraction_fit: float,
        fraction_evaluate: float,
        history_path: Path | None,
        max_client_failures: int = 0,
        emit: EventSink = print_event,
    ) -> None:
        if not 0 <= max_client_failures < num_clients:
            raise ValueError(
                f"max_client_failures must be between 0 and num_clients - 1 ({num_clients - 1}), "
                f"got {max_client_failures}"
            )

        # The module docstring explains these minimums.
        min_available = num_clients - max_client_failures
        super().__init__(
            fraction_fit=fraction_fit,
            fraction_evaluate=fraction_evaluate,
            min_available_clients=min_available,
            min_fit_clients=max(1, int(min_available * fraction_fit)),
            min_evaluate_clients=max(1, int(min_available * fraction_evaluate)),
            evaluate_metrics_aggregation_fn=weighted_accuracy,
            # The clients return no fit metrics. An explicit function stops FedAvg
            # from logging "No fit_metrics_aggregation_fn provided" in round 1.
            fit_metrics_aggregation_fn=no_fit_metrics,
            # No initial_parameters: Flower then requests them from one client. That
            # keeps TensorFlow out of the server process, which starts in about a
            # second and needs no GPU memory, and the weights come from the very
            # model code the clients run.
            initial_parameters=None,
        )
        self.num_rounds = num_rounds
        self.num_clients = num_clients
        self.max_client_failures = max_client_failures
        self.history_path = history_path
        self.emit = emit
        self.rounds: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._current_started = 0.0

    @property
    def complete(self) -> bool:
        """True once all num_rounds rounds have ended."""
        return len(self.rounds) >= self.num_rounds

    @property
    def active_round(self) -> int:
        """Number of the round in progress, or of the next round between rounds."""
        current = self._current
        return current["round"] if current is not None else len(self.rounds) + 1

    def history(self) -> dict[str, Any]:
        """Return the history document: rounds so far, num_rounds and complete."""
        return {"rounds": list(self.rounds), "num_rounds": self.num_rounds, "complete": self.complete}

    def write_history(self) -> None:
        """Rewrite the history file, if one was requested, atomically."""
        if self.history_path is not None:
            write_json_atomically(self.history_path, self.history())

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Announce that the gRPC server is listening, then let Flower fetch weights from a client.

        NOTE: Flower (1.42) does not retry that request, so losing the chosen client
        before it replies fails the server even when --max-client-failures > 0.
        """
        self.write_history()
        self.emit(
            {
                "event": "server_started",
                "num_rounds": self.num_rounds,
                "min_clients": self.num_clients,
                "max_client_failures": self.max_client_failures,
            }
        )
        return super().initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Sample the fit clients (waiting for enough connected clients) and start the round record."""
        if not parameters.tensors:
            # Flower logs a warning and carries on with empty weights when the client
            # that should provide the initial parameters fails, and every fit would then fail.
            raise RuntimeError(
                f"round {server_round} has no model weights to send because the client that "
                "should provide the initial parameters failed or disconnected; check that client's log"
            )
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self._current = {
            "round": server_round,
            "started_at": time.time(),
            "ended_at": None,
            "duration_s": None,
            "loss": None,
            "accuracy": None,
            "fit_results": 0,
            "fit_failures": 0,
            "evaluate_results": 0,
            "evaluate_failures": 0,
        }
        self._current_started = time.monotonic()
        self.emit(
            {
                "event": "round_started",
                "round": server_round,
                "clients": len(instructions),
                "available": client_manager.num_available(),
            }
        )
        return _reporting(instructions, server_round, "fit", self.emit)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Record fit results and failures, then average the weights as FedAvg does."""
        record = self._round(server_round)
        record["fit_results"] = len(results)
        record["fit_failures"] = len(failures)
        self.emit({"event": "fit_done", "round": server_round, "results": len(results), "failures": len(failures)})
        return super().aggregate_fit(server_round, results, failures)

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Sample the evaluate clients, and end the round here when none is sampled."""
        instructions = super().configure_evaluate(server_round, parameters, client_manager)
        if not instructions:
            self._end_round(server_round)
        return _reporting(instructions, server_round, "evaluate", self.emit)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Average loss and accuracy weighted by examples, then end the round."""
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        record = self._round(server_round)
        record["evaluate_results"] = len(results)
        record["evaluate_failures"] = len(failures)
        record["loss"] = _finite_or_none(loss)
        accuracy = metrics.get("accuracy")
        record["accuracy"] = _finite_or_none(float(accuracy)) if isinstance(accuracy, (int, float)) else None
        self.emit(
            {
                "event": "evaluate_done",
                "round": server_round,
                "results": len(results),
                "failures": len(failures),
            }
        )
        self._end_round(server_round)
        return loss, metrics

    def _round(self, server_round: int) -> dict[str, Any]:
        if self._current is None or self._current["round"] != server_round:
            raise RuntimeError(f"round {server_round} has no record: configure_fit was not called for it")
        return self._current

    def _end_round(self, server_round: int) -> None:
        record = self._round(server_round)
        record["ended_at"] = time.time()
        record["duration_s"] = time.monotonic() - self._current_started
        self.rounds.append(record)
        self._current = None
        self.write_history()
        self.emit({"event": "round_done", **record})


def _finite_or_none(value: float | None) -> float | None:
    """Return `value`, or None for None, NaN and infinities, which JSON cannot carry."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.server",
        description="Run a Flower server with FedAvg for a fixed number of rounds.",
    )
    parser.add_argument("--address", required=True, help="address to listen on, HOST:PORT")
    parser.add_argument(
        "--clients",
        type=int,
        required=True,
        help="number of clients that must be connected before round 1 starts",
    )
    parser.add_argument("--rounds", type=int, default=3, help="number of rounds (default: 3)")
    parser.add_argument(
        "--fraction-fit", type=float, default=0.5, help="fraction of clients trained each round (default: 0.5)"
    )
    parser.add_argument(
        "--fraction-evaluate",
        type=float,
        default=1.0,
        help="fraction of clients evaluated each round; 0 skips evaluation (default: 1.0)",
    )
    parser.add_argument(
        "--round-timeout",
        type=float,
        help="seconds the server waits for each client reply before counting it as a failure (default: no limit)",
    )
    parser.add_argument(
        "--max-client-failures",
        type=int,
        default=0,
        help="number of clients that may be lost after round 1 starts; each round then needs --clients minus "
        "this many connected clients. 0 waits up to 24 h for all --clients before each fit and evaluate step "
        "(default: 0)",
    )
    parser.add_argument(
        "--client-wait-timeout",
        type=float,
        default=DEFAULT_CLIENT_WAIT_TIMEOUT_S,
        help="max seconds to wait for enough connected clients, before round 1 and whenever too few remain; "
        "the server then exits with status 1. Used only when --max-client-failures > 0 "
        f"(default: {DEFAULT_CLIENT_WAIT_TIMEOUT_S:.0f})",
    )
    parser.add_argument("--history", type=Path, help="JSON file rewritten after each round")

    args = parser.parse_args(argv)
    if args.clients < 1:
        parser.error(f"--clients must be >= 1, got {args.clients}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    for option, value in (("--fraction-fit", args.fraction_fit), ("--fraction-evaluate", args.fraction_evaluate)):
        if not 0.0 <= value <= 1.0:
            parser.error(f"{option} must be between 0 and 1, got {value}")
    if not 0 <= args.max_client_failures < args.clients:
        parser.error(
            f"--max-client-failures must be between 0 and --clients - 1 ({args.clients - 1}), "
            f"got {args.max_client_failures}"
        )
    if not args.client_wait_timeout > 0:
        parser.error(f"--client-wait-timeout must be > 0, got {args.client_wait_timeout}")
    if args.round_timeout is not None and args.round_timeout <= 0:
        parser.error(f"--round-timeout must be > 0, got {args.round_timeout}")
    if args.history is not None and not args.history.parent.is_dir():
        parser.error(f"--history folder {args.history.parent} does not exist; create it first")
    return args


def _failure_tolerant_client_manager(
    args: argparse.Namespace, strategy: RecordingFedAvg
) -> FailureTolerantClientManager:
    """Create the client manager, which reports lost clients as client_lost events.

    Its waits for clients last at most --client-wait-timeout seconds.
    """

    def report_lost_client(cid: str, available: int) -> None:
        # After the last round, Flower's disconnect_all_clients ends every stream on purpose.
        if not strategy.complete:
            print_event({"event": "client_lost", "round": strategy.active_round, "cid": cid, "available": available})

    manager = FailureTolerantClientManager(
        num_clients=args.clients, wait_timeout_s=args.client_wait_timeout, on_client_lost=report_lost_client
    )
    # On SIGINT, SIGTERM or SIGQUIT, flwr 1.42 runs handlers registered with run_before_force_exit=True
    # before it stops the gRPC server, so the disconnects caused by that stop are not reported.
    add_exit_handler(manager.stop_reporting, run_before_force_exit=True)
    return manager


class _PhaseCounter:
    """Replies so far in one fit or evaluate phase; Flower calls clients from a thread pool."""

    def __init__(self, server_round: int, phase: str, total: int, emit: EventSink) -> None:
        self.server_round = server_round
        self.phase = phase
        self.total = total
        self.done = 0
        self._emit = emit
        self._lock = threading.Lock()

    def report(self, failed: bool) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        self._emit({"event": "client_done", "round": self.server_round, "phase": self.phase, "done": done,
                    "of": self.total, "failed": failed})  # fmt: skip


class _ReportingProxy(ClientProxy):
    """A ClientProxy that reports each fit or evaluate reply, or its failure, as a client_done event.

    Flower's legacy server has no per-reply hook, so the strategy hands these
    wrappers to it instead of the proxies that the client manager sampled.
    """

    def __init__(self, inner: ClientProxy, counter: _PhaseCounter) -> None:
        super().__init__(inner.cid)
        self._inner = inner
        self._counter = counter

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        return self._reported(lambda: self._inner.fit(ins, timeout, group_id))

    def evaluate(self, ins: EvaluateIns, timeout: float | None, group_id: int | None) -> EvaluateRes:
        return self._reported(lambda: self._inner.evaluate(ins, timeout, group_id))

    def get_properties(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self._inner.get_properties(ins, timeout, group_id)

    def get_parameters(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self._inner.get_parameters(ins, timeout, group_id)

    def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self._inner.reconnect(ins, timeout, group_id)

    def _reported(self, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except BaseException:
            self._counter.report(failed=True)
            raise
        status = getattr(result, "status", None)
        self._counter.report(failed=getattr(getattr(status, "code", None), "value", 0) != 0)
        return result


def _reporting(
    instructions: list[tuple[ClientProxy, Any]], server_round: int, phase: str, emit: EventSink
) -> list[tuple[ClientProxy, Any]]:
    counter = _PhaseCounter(server_round, phase, len(instructions), emit)
    return [(_ReportingProxy(proxy, counter), ins) for proxy, ins in instructions]


def _skip_telemetry_event(event_type: flwr.supercore.telemetry.EventType, event_details: dict[str, Any] | None) -> str:
    return "disabled"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server from the command line and return the exit status."""
    args = _parse_args(argv)
    # flwr 1.42 builds every telemetry event on a daemon thread even when telemetry is
    # disabled, and building one runs `uname -p` and `file -b` as child processes. The
    # os._exit in run_and_exit can orphan such a child, and runtime always disables
    # telemetry, so the server skips building the events.
    flwr.supercore.telemetry.create_event = _skip_telemetry_event
    logger = runtime.setup_logging("server")
    strategy = RecordingFedAvg(
        num_rounds=args.rounds,
        num_clients=args.clients,
        fraction_fit=args.fraction_fit,
        fraction_evaluate=args.fraction_evaluate,
        history_path=args.history,
        max_client_failures=args.max_client_failures,
    )
    # Also with K = 0: Flower's own manager would wait up to a day for a client
    # that a round timeout disconnected, where this one fails after --client-wait-timeout.
    client_manager = _failure_tolerant_client_manager(args, strategy)

    def summary() -> dict[str, Any]:
        return {"rounds_completed": len(strategy.rounds), "num_rounds": args.rounds}

    try:
        start_server(
            server_address=args.address,
            config=ServerConfig(num_rounds=args.rounds, round_timeout=args.round_timeout),
            strategy=strategy,
            # None makes start_server use Flower's SimpleClientManager.
            client_manager=client_manager,
        )
    except SystemExit as exit_request:
        # start_server installs handlers that turn SIGINT, SIGTERM and SIGQUIT into
        # SystemExit(0). It also calls sys.exit(message) for an unparsable address.
        if isinstance(exit_request.code, str):
            logger.error("server failed: %s", exit_request.code)
            print_event({"event": "server_failed", "error": exit_request.code, **summary()})
            return EXIT_FAILED
        if strategy.complete:
            print_event({"event": "server_done", "complete": True, **summary()})
            return EXIT_OK
        logger.warning("server stopped by a signal after %d of %d rounds", len(strategy.rounds), args.rounds)
        print_event({"event": "server_stopped", "complete": False, **summary()})
        return EXIT_STOPPED
    except ClientWaitTimeoutError as error:
        logger.error("server failed after %d of %d rounds: %s", len(strategy.rounds), args.rounds, error)
        print_event(
            {
                "event": "server_failed",
                "error": str(error),
                "clients_needed": error.needed,
                "clients_connected": error.connected,
                **summary(),
            }
        )
        return EXIT_FAILED
    except Exception as error:
        logger.exception("server failed after %d of %d rounds", len(strategy.rounds), args.rounds)
        print_event({"event": "server_failed", "error": f"{type(error).__name__}: {error}", **summary()})
        return EXIT_FAILED

    print_event({"event": "server_done", "complete": strategy.complete, **summary()})
    return EXIT_OK if strategy.complete else EXIT_FAILED


def run_and_exit() -> None:
    """Run main() and end the process with its status without waiting for leftover threads.

    When start_server raises, its gRPC server keeps running with worker threads
    blocked on client streams, and a normal interpreter exit would wait for them
    indefinitely (seen with flwr 1.42 and grpcio 1.85). os._exit skips that wait,
    so output is flushed first.
    """
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run_and_exit()
