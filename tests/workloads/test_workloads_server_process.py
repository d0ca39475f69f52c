"""Run `python -m workloads.server` on 127.0.0.1 with tiny non-TensorFlow Flower clients."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT_TIMEOUT_S = 60.0

# A NumPyClient with one 3-element weight array. fit adds 1 to it. When
# STUB_BLOCK_FIT is set, fit first prints "fit started" and blocks for that many
# seconds, so a test can stop the server mid-round or let a round time out.
# The stub prints "ready" once imported and retries a refused connection every
# 0.05 s until the server sends its first instruction, so a test can start the
# stubs before the server.
STUB_CLIENT = """
import os, sys, threading
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
import grpc
import numpy as np
import flwr.supercore.telemetry
from flwr.client import NumPyClient, start_client

# flwr 1.42 builds telemetry events even when telemetry is disabled, running `uname -p` and
# `file -b` on a daemon thread, and a child still running when this process exits is orphaned.
flwr.supercore.telemetry.create_event = lambda event_type, event_details: "disabled"

class Stub(NumPyClient):
    instructed = False

    def get_parameters(self, config):
        Stub.instructed = True
        return [np.zeros(3, np.float32)]

    def fit(self, parameters, config):
        Stub.instructed = True
        if os.environ.get("STUB_BLOCK_FIT"):
            print("fit started", flush=True)
            threading.Event().wait(float(os.environ["STUB_BLOCK_FIT"]))
        return [parameters[0] + 1], 8, {}

    def evaluate(self, parameters, config):
        Stub.instructed = True
        return float(parameters[0][0]), 4, {"accuracy": 0.25}

print("ready", flush=True)
while True:
    try:
        start_client(server_address=sys.argv[1], client=Stub().to_client(), insecure=True)
        break
    except grpc.RpcError as error:
        if Stub.instructed or error.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        threading.Event().wait(0.05)
"""


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


class EventReader:
    """Collect a process's stdout lines on a thread, so reads can time out; next_event parses "fl-event" lines.

    Per-reply client_done events are kept apart in `client_done`, so tests read
    the round events in order.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.client_done: list[dict[str, Any]] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, timeout_s: float = EVENT_TIMEOUT_S) -> str:
        try:
            line = self.lines.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            raise AssertionError(f"no stdout line within {timeout_s:.1f} s") from None
        if line is None:
            raise AssertionError("stdout closed before the expected line")
        return line

    def next_event(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.next_line(deadline - time.monotonic())
            assert line.startswith("fl-event "), f"unexpected stdout line: {line!r}"
            event: dict[str, Any] = json.loads(line.removeprefix("fl-event "))
            if event["event"] != "client_done":
                return event
            self.client_done.append(event)

    def events_until(self, name: str, timeout_s: float = EVENT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Return the events up to and including the next one named `name`, all within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["event"] != name:
            seen.append(self.next_event(timeout_s=deadline - time.monotonic()))
        return seen


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """List that tests append their processes to; each one still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), FLWR_TELEMETRY_ENABLED="0")
    env.update(extra)
    return env


def start_server(
    processes: list[subprocess.Popen[str]], address: str, history: Path, *args: str
) -> tuple[subprocess.Popen[str], EventReader]:
    """Start the server with stdout read by an EventReader and stderr written to server.stderr.log next to `history`."""
    with (history.parent / "server.stderr.log").open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "workloads.server", "--address", address, "--history", str(history), *args],
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    processes.append(server)
    assert server.stdout is not None
    return server, EventReader(server.stdout)


def stub_stderr_path(tmp_path: Path, client: subprocess.Popen[str]) -> Path:
    return tmp_path / f"stub-{client.pid}.stderr.log"


def start_stub_clients(
    processes: list[subprocess.Popen[str]],
    tmp_path: Path,
    address: str,
    count: int,
    *,
    capture_stdout: bool = False,
    **env: str,
) -> list[subprocess.Popen[str]]:
    """Start `count` stub clients, each writing its stderr to stub-<pid>.stderr.log in `tmp_path`."""
    script = tmp_path / "stub_client.py"
    script.write_text(STUB_CLIENT)
    clients = []
    for _ in range(count):
        stderr_path = tmp_path / "stub-new.stderr.log"
        with stderr_path.open("w") as stderr:
            client = subprocess.Popen(
                [sys.executable, str(script), address],
                env=child_env(**env),
                stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
        # The client keeps writing to the renamed file, because it has the file open.
        stderr_path.rename(stub_stderr_path(tmp_path, client))
        processes.append(client)
        clients.append(client)
    return clients


def test_server_runs_all_rounds(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    server, events = start_server(
        processes, address, history_path, "--clients", "2", "--rounds", "2", "--fraction-fit", "0.5"
    )
    assert events.next_event()["event"] == "server_started"
    clients = start_stub_clients(processes, tmp_path, address, 2)

    seen = [events.next_event() for _ in range(9)]

    assert [e["event"] for e in seen] == [
        "round_started",
        "fit_done",
        "evaluate_done",
        "round_done",
        "round_started",
        "fit_done",
        "evaluate_done",
        "round_done",
        "server_done",
    ]
    assert seen[0] == {"event": "round_started", "round": 1, "clients": 1, "available": 2}
    assert seen[1] == {"event": "fit_done", "round": 1, "results": 1, "failures": 0}
    # One client trained once per round, so the global weights are 1 then 2.
    assert seen[3]["loss"] == pytest.approx(1.0)
    assert seen[7]["loss"] == pytest.approx(2.0)
    assert seen[7]["accuracy"] == pytest.approx(0.25)
    assert seen[8] == {"event": "server_done", "complete": True, "rounds_completed": 2, "num_rounds": 2}
    assert server.wait(timeout=30) == 0
    assert [client.wait(timeout=30) for client in clients] == [0, 0]

    history = json.loads(history_path.read_text())
    assert history["complete"] is True
    assert history["num_rounds"] == 2
    assert [r["round"] for r in history["rounds"]] == [1, 2]
    assert history["rounds"][1]["evaluate_results"] == 2

    # One client_done per reply: 1 fit and 2 evaluate replies per round.
    phases = [(event["round"], event["phase"], event["done"], event["of"]) for event in events.client_done]
    assert sorted(phases) == [
        (1, "evaluate", 1, 2), (1, "evaluate", 2, 2), (1, "fit", 1, 1),
        (2, "evaluate", 1, 2), (2, "evaluate", 2, 2), (2, "fit", 1, 1),
    ]  # fmt: skip
    assert not any(event["failed"] for event in events.client_done)


@pytest.mark.parametrize("max_client_failures", ["0", "1"])
def test_server_sigterm_mid_round(
    tmp_path: Path, processes: list[subprocess.Popen[str]], max_client_failures: str
) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    server, events = start_server(
        processes,
        address,
        history_path,
        *("--clients", "2", "--rounds", "3", "--fraction-fit", "1.0"),
        *("--max-client-failures", max_client_failures),
    )
    assert events.next_event()["event"] == "server_started"
    clients = start_stub_clients(processes, tmp_path, address, 2, capture_stdout=True, STUB_BLOCK_FIT="60")
    assert events.next_event()["event"] == "round_started"
    # Once a client is in fit, the server waits on fit requests, which Flower ends
    # 1 s after the signal by closing every client's stream.
    assert clients[0].stdout is not None
    client_output = EventReader(clients[0].stdout)
    assert client_output.next_line() == "ready\n"
    assert client_output.next_line() == "fit started\n"

    sent_at = time.monotonic()
    server.send_signal(signal.SIGTERM)

    # The streams that the server closed while stopping are not reported as client_lost.
    assert events.next_event() == {
        "event": "server_stopped",
        "complete": False,
        "rounds_completed": 0,
        "num_rounds": 3,
    }
    assert server.wait(timeout=30) == 3
    # Flower stops its gRPC server with a 1 s grace period and force-exits after 5 s.
    assert time.monotonic() - sent_at < 10
    assert json.loads(history_path.read_text()) == {"rounds": [], "num_rounds": 3, "complete": False}


def test_server_rejects_bad_fraction(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workloads.server", "--address", "127.0.0.1:1", "--clients", "2", "--fraction-fit", "2"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "--fraction-fit must be between 0 and 1, got 2.0" in result.stderr


def test_server_rejects_too_many_failures(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workloads.server",
            "--address",
            "127.0.0.1:1",
            "--clients",
            "2",
            "--max-client-failures",
            "2",
        ],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "--max-client-failures must be between 0 and --clients - 1 (1), got 2" in result.stderr


def start_ready_stub_clients(
    processes: list[subprocess.Popen[str]], tmp_path: Path, address: str, count: int, **env: str
) -> list[subprocess.Popen[str]]:
    """Start `count` stub clients and wait until each has imported Flower and is trying to connect.

    Starting the stubs before the server keeps the server's wait for all clients
    before round 1 short even on a loaded machine, where importing Flower can take
    tens of seconds.
    """
    clients = start_stub_clients(processes, tmp_path, address, count, capture_stdout=True, **env)
    for client in clients:
        assert client.stdout is not None
        assert EventReader(client.stdout).next_line() == "ready\n"
    return clients


def events_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [event for event in events if event["event"] == name]


def test_server_survives_killed_client(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    clients = start_ready_stub_clients(processes, tmp_path, address, 3)
    server, events = start_server(
        processes,
        address,
        history_path,
        *("--clients", "3", "--rounds", "3", "--fraction-fit", "0.5"),
        *("--max-client-failures", "1", "--client-wait-timeout", "30"),
    )
    assert events.next_event() == {
        "event": "server_started",
        "num_rounds": 3,
        "min_clients": 3,
        "max_client_failures": 1,
    }
    round_1 = events.events_until("round_done")
    assert round_1[0] == {"event": "round_started", "round": 1, "clients": 1, "available": 3}

    killed = clients[0]
    os.kill(killed.pid, signal.SIGKILL)
    later = events.events_until("server_done")

    # The server learns of the lost client before round 2 can end, because round 2
    # evaluates on every connected client.
    assert events_named(later, "client_lost") == [
        {"event": "client_lost", "round": 2, "cid": events_named(later, "client_lost")[0]["cid"], "available": 2}
    ]
    round_started = events_named(later, "round_started")
    assert [event["round"] for event in round_started] == [2, 3]
    assert round_started[1]["available"] == 2
    assert later[-1] == {"event": "server_done", "complete": True, "rounds_completed": 3, "num_rounds": 3}
    assert server.wait(timeout=30) == 0
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert [client.wait(timeout=30) for client in clients[1:]] == [0, 0]

    history = json.loads(history_path.read_text())
    assert history["complete"] is True
    rounds = history["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert rounds[0]["evaluate_results"] == 3
    # Round 2 may have sampled the killed client before its stream ended; that counts as a failure.
    assert rounds[1]["evaluate_results"] == 2
    assert rounds[1]["evaluate_failures"] in (0, 1)
    assert rounds[2]["evaluate_results"] == 2
    assert rounds[2]["evaluate_failures"] == 0
    assert rounds[2]["fit_results"] == 1
    assert rounds[2]["fit_failures"] == 0


def test_server_uses_reconnected_client(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    first_clients = start_ready_stub_clients(processes, tmp_path, address, 2)
    # The replacement client below starts after the losses, so the wait for it includes importing Flower.
    server, events = start_server(
        processes,
        address,
        history_path,
        *("--clients", "2", "--rounds", "3", "--fraction-fit", "1.0"),
        *("--max-client-failures", "1", "--client-wait-timeout", "60"),
    )
    assert events.next_event()["event"] == "server_started"
    events.events_until("round_done")

    for client in first_clients:
        os.kill(client.pid, signal.SIGKILL)
    lost = events_named(events.events_until("client_lost"), "client_lost")
    lost += events_named(events.events_until("client_lost"), "client_lost")
    assert [event["available"] for event in lost] == [1, 0]

    # Each round needs 2 - 1 = 1 connected client, so the server waits for this one.
    [replacement] = start_stub_clients(processes, tmp_path, address, 1)
    later = events.events_until("server_done")

    assert later[-1] == {"event": "server_done", "complete": True, "rounds_completed": 3, "num_rounds": 3}
    assert server.wait(timeout=30) == 0
    assert replacement.wait(timeout=30) == 0
    history = json.loads(history_path.read_text())
    assert history["complete"] is True
    round_3 = history["rounds"][2]
    assert round_3["fit_results"] == 1
    assert round_3["fit_failures"] == 0
    assert round_3["evaluate_results"] == 1
    assert round_3["evaluate_failures"] == 0


def test_server_fails_too_few_clients(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    # The 3 s wait also covers round 1, so the stubs are imported before the server starts.
    clients = start_ready_stub_clients(processes, tmp_path, address, 2)
    server, events = start_server(
        processes,
        address,
        history_path,
        *("--clients", "2", "--rounds", "3"),
        *("--max-client-failures", "1", "--client-wait-timeout", "3"),
    )
    assert events.next_event()["event"] == "server_started"
    events.events_until("round_done")

    killed_at = time.monotonic()
    for client in clients:
        os.kill(client.pid, signal.SIGKILL)
    failed = events.events_until("server_failed")[-1]
    assert server.wait(timeout=30) == 1
    elapsed_s = time.monotonic() - killed_at

    expected_error = (
        "timed out after 3 s waiting for clients: 1 needed, 0 connected; "
        "more clients were lost than --max-client-failures allows"
    )
    # Round 2 still completes, with failures only, when it sampled both clients before their streams ended.
    assert failed["rounds_completed"] in (1, 2)
    assert failed == {
        "event": "server_failed",
        "error": expected_error,
        "clients_needed": 1,
        "clients_connected": 0,
        "rounds_completed": failed["rounds_completed"],
        "num_rounds": 3,
    }
    assert expected_error in (tmp_path / "server.stderr.log").read_text()
    # The wait starts once the server detects that both clients are gone, and its gRPC
    # threads do not delay the exit. The upper bound leaves room for a loaded machine.
    assert 3 <= elapsed_s < 20


def test_server_fails_clients_never_connect(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    server, events = start_server(
        processes,
        address,
        history_path,
        *("--clients", "3", "--rounds", "1"),
        *("--max-client-failures", "1", "--client-wait-timeout", "3"),
    )
    assert events.next_event()["event"] == "server_started"

    failed = events.next_event()

    assert failed == {
        "event": "server_failed",
        "error": (
            "timed out after 3 s waiting for clients: 3 needed, 0 connected; "
            "all --clients must connect before round 1 starts"
        ),
        "clients_needed": 3,
        "clients_connected": 0,
        "rounds_completed": 0,
        "num_rounds": 1,
    }
    assert server.wait(timeout=30) == 1


def test_round_timeout_counts_failure(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    [prompt] = start_ready_stub_clients(processes, tmp_path, address, 1)
    [stuck] = start_ready_stub_clients(processes, tmp_path, address, 1, STUB_BLOCK_FIT="8")
    server, events = start_server(
        processes,
        address,
        history_path,
        *("--clients", "2", "--rounds", "2", "--fraction-fit", "1.0", "--round-timeout", "1.5"),
        *("--max-client-failures", "1", "--client-wait-timeout", "30"),
    )
    assert events.next_event()["event"] == "server_started"

    seen = events.events_until("server_done")

    assert seen[0] == {"event": "round_started", "round": 1, "clients": 2, "available": 2}
    assert events_named(seen, "fit_done")[0] == {"event": "fit_done", "round": 1, "results": 1, "failures": 1}
    [lost] = events_named(seen, "client_lost")
    assert lost["round"] == 1
    assert lost["available"] == 1
    assert seen[-1]["complete"] is True
    assert server.wait(timeout=30) == 0
    assert prompt.wait(timeout=30) == 0

    rounds = json.loads(history_path.read_text())["rounds"]
    # The round ended at the timeout, not when the stuck client's 8 s fit returned.
    assert 1.5 <= rounds[0]["duration_s"] < 7
    assert rounds[0]["evaluate_results"] == 1
    assert rounds[1]["fit_results"] == 1
    assert rounds[1]["fit_failures"] == 0

    # Flower does not interrupt the client: it finishes fit, then finds its stream aborted.
    assert stuck.wait(timeout=30) == 1
    assert "Timeout of 1.5sec was exceeded" in stub_stderr_path(tmp_path, stuck).read_text()


def test_round_timeout_without_failure_budget(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    server, events = start_server(
        processes,
        address,
        history_path,
        *("--clients", "2", "--rounds", "1", "--fraction-fit", "1.0", "--fraction-evaluate", "0"),
        "--round-timeout",
        "1.5",
    )
    assert events.next_event()["event"] == "server_started"
    start_stub_clients(processes, tmp_path, address, 1)
    start_stub_clients(processes, tmp_path, address, 1, STUB_BLOCK_FIT="60")

    seen = events.events_until("server_done")

    # The aborted client is reported lost also with --max-client-failures 0; only
    # because this round skips evaluation does the server not wait for it.
    names = [event["event"] for event in seen]
    assert names == ["round_started", "client_lost", "fit_done", "round_done", "server_done"]
    assert seen[2] == {"event": "fit_done", "round": 1, "results": 1, "failures": 1}
    assert sorted(event["failed"] for event in events.client_done) == [False, True]
    assert server.wait(timeout=30) == 0
