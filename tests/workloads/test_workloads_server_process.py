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

# A NumPyClient with one 3-element weight array. fit adds 1 to it, or, when
# STUB_BLOCK_FIT is set, blocks for up to 60 s so a test can stop the server mid-round.
STUB_CLIENT = """
import os, sys, threading
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
import numpy as np
from flwr.client import NumPyClient, start_client

class Stub(NumPyClient):
    def get_parameters(self, config):
        return [np.zeros(3, np.float32)]

    def fit(self, parameters, config):
        if os.environ.get("STUB_BLOCK_FIT"):
            threading.Event().wait(60)
        return [parameters[0] + 1], 8, {}

    def evaluate(self, parameters, config):
        return float(parameters[0][0]), 4, {"accuracy": 0.25}

start_client(server_address=sys.argv[1], client=Stub().to_client(), insecure=True)
"""


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


class EventReader:
    """Collect "fl-event" lines from a process's stdout on a thread, so reads can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def next_event(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no fl-event line within {timeout_s} s")
            line = self.lines.get(timeout=remaining)
            if line is None:
                raise AssertionError("server stdout closed before the expected event")
            assert line.startswith("fl-event "), f"unexpected stdout line: {line!r}"
            event: dict[str, Any] = json.loads(line.removeprefix("fl-event "))
            return event


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
    server = subprocess.Popen(
        [sys.executable, "-m", "workloads.server", "--address", address, "--history", str(history), *args],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    processes.append(server)
    assert server.stdout is not None
    return server, EventReader(server.stdout)


def start_stub_clients(
    processes: list[subprocess.Popen[str]], tmp_path: Path, address: str, count: int, **env: str
) -> list[subprocess.Popen[str]]:
    script = tmp_path / "stub_client.py"
    script.write_text(STUB_CLIENT)
    clients = []
    for _ in range(count):
        client = subprocess.Popen(
            [sys.executable, str(script), address],
            env=child_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
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
    assert seen[0] == {"event": "round_started", "round": 1, "clients": 1}
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


def test_server_sigterm_mid_round(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    address = free_address()
    history_path = tmp_path / "history.json"
    server, events = start_server(processes, address, history_path, "--clients", "2", "--rounds", "3")
    assert events.next_event()["event"] == "server_started"
    start_stub_clients(processes, tmp_path, address, 2, STUB_BLOCK_FIT="1")
    assert events.next_event()["event"] == "round_started"

    sent_at = time.monotonic()
    server.send_signal(signal.SIGTERM)

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
