"""Fault matrix rows that need the real Flower server: faults mid-round.

The server is the real `workloads.server` over gRPC on 127.0.0.1; the clients
are Flower clients without TensorFlow (tests/supervisor/flower_stub.py), so a
round takes well under a second and each row stays short.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisor.readiness import free_port

PROJECT = Path(__file__).resolve().parents[2]
DEADLINE_S = 90.0
GRACE_S = 2.0


class SupervisedRun:
    """`python -m supervisor`'s code path with stub clients, its JSON output read line by line."""

    def __init__(self, tmp_path: Path, behaviours: list[str], *options: str, rounds: int = 2) -> None:
        port = free_port("127.0.0.1")
        clients = [
            [f"client-{index}", [sys.executable, "-m", "tests.supervisor.flower_stub", "{address}", behaviour]]
            for index, behaviour in enumerate(behaviours)
        ]
        spec_file = tmp_path / "spec.json"
        spec_file.write_text(json.dumps({"clients": clients}))
        self.run_dir = tmp_path / "run"
        command = [
            sys.executable, "-m", "tests.supervisor.driver", str(spec_file), "--",
            "--clients", str(len(behaviours)), "--rounds", str(rounds), "--fraction-fit", "1",
            "--dataset", "synthetic", "--port", str(port), "--run-dir", str(self.run_dir),
            "--log-format", "json", "--grace", str(GRACE_S), "--timeout", str(DEADLINE_S - 10), *options,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, stdin=subprocess.DEVNULL)  # fmt: skip
        self.records: list[dict[str, Any]] = []
        self.pids: dict[str, int] = {}

    def wait_for(self, predicate: Any) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            record = json.loads(line)
            self.records.append(record)
            if record.get("event") == "started":
                self.pids[record["child"]] = record["pid"]
            if predicate(record):
                return record
        raise AssertionError(f"expected event never came; last records: {self.records[-5:]}")

    def wait_for_round(self, number: int) -> None:
        marker = f'"event":"round_started","round":{number}'
        self.wait_for(lambda record: record.get("process") == "server" and marker in record.get("line", ""))

    def finish(self) -> tuple[int, dict[str, Any]]:
        out, _ = self.process.communicate(timeout=DEADLINE_S)
        self.records += [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.process.returncode, json.loads((self.run_dir / "summary.json").read_text())


def test_client_exit_in_fit_fails_run(tmp_path: Path) -> None:
    run = SupervisedRun(tmp_path, ["ok", "exit-in-fit"])
    code, summary = run.finish()
    assert code == 1
    assert summary["outcome"]["failed_process"] == "client-1"
    assert summary["outcome"]["reason"] == "client-1 exit code 3"


def test_client_sigkill_mid_round_fails_within_grace(tmp_path: Path) -> None:
    run = SupervisedRun(tmp_path, ["ok", "hang-in-fit"])
    run.wait_for_round(1)
    run.wait_for(lambda record: record.get("line") == "fit called" and record.get("process") == "client-1")
    killed_at = time.monotonic()
    os.kill(run.pids["client-1"], signal.SIGKILL)
    code, summary = run.finish()
    took = time.monotonic() - killed_at
    print(f"client SIGKILL mid-round: supervisor exited {took:.2f} s after the kill")
    assert code == 1
    assert took < GRACE_S + 2
    assert summary["outcome"]["failed_process"] == "client-1"
    assert summary["outcome"]["reason"] == "client-1 killed by SIGKILL"


def test_server_crash_mid_round_fails(tmp_path: Path) -> None:
    run = SupervisedRun(tmp_path, ["ok", "hang-in-fit"])
    run.wait_for(lambda record: record.get("line") == "fit called" and record.get("process") == "client-1")
    killed_at = time.monotonic()
    os.kill(run.pids["server"], signal.SIGKILL)
    code, summary = run.finish()
    took = time.monotonic() - killed_at
    print(f"server SIGKILL mid-round: supervisor exited {took:.2f} s after the kill")
    assert code == 1
    assert took < GRACE_S + 2
    assert summary["outcome"]["failed_process"] == "server"
    assert summary["outcome"]["reason"] == "server killed by SIGKILL"


def test_hung_client_becomes_counted_failure(tmp_path: Path) -> None:
    run = SupervisedRun(tmp_path, ["ok", "ok", "hang-in-fit"], "--round-timeout", "2", "--max-client-failures", "1",
                        rounds=1)  # fmt: skip
    code, summary = run.finish()
    history = json.loads((run.run_dir / "history.json").read_text())
    assert history["rounds"][0]["fit_failures"] == 1
    assert history["complete"] is True
    assert code == 0
    assert [entry["name"] for entry in summary["lost_clients"]] == ["client-2"]
    assert "after the server finished" in summary["lost_clients"][0]["status"]


def test_hung_client_without_budget_fails(tmp_path: Path) -> None:
    run = SupervisedRun(tmp_path, ["ok", "hang-in-evaluate"], "--round-timeout", "2", rounds=2)
    code, summary = run.finish()
    assert code == 1
    assert "the server lost a client in round 1" in summary["outcome"]["reason"]
    # The server's report does not identify the hung client, so none is blamed.
    assert summary["outcome"]["failed_process"] is None


def test_lost_client_within_budget_finishes(tmp_path: Path) -> None:
    run = SupervisedRun(tmp_path, ["ok", "ok", "ok"], "--max-client-failures", "1",
                        "--inject", "kill:client-2@round=2", rounds=3)  # fmt: skip
    code, summary = run.finish()
    assert code == 0, summary["outcome"]
    assert summary["rounds_completed"] == 3
    assert summary["lost_clients"][0]["name"] == "client-2"
    assert summary["lost_clients"][0]["rounds_missed"] == [2, 3]
    assert summary["injected_faults"] == [
        {"fault": "kill", "client": "client-2", "round": 2, "at": summary["injected_faults"][0]["at"]}
    ]
