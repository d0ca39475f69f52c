"""`python -m supervisor` for real: a Flower server and TensorFlow clients on loopback."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisor.cli import main
from workloads import cifar10

PROJECT = Path(__file__).resolve().parents[1]
RUN_DEADLINE_S = 600


def test_two_clients_two_rounds_on_synthetic_data(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "supervisor", "--clients", "2", "--rounds", "2", "--dataset", "synthetic",
        "--log-format", "json", "--run-dir", str(run_dir), "--monitor-interval", "1",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE_S,
        env={**_environment(), "PYTHONPATH": str(PROJECT)},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    records = [json.loads(line) for line in result.stdout.splitlines()]
    names = {record["process"] for record in records}
    assert {"supervisor", "server", "client-0", "client-1"} <= names
    assert all(record.get("pid") for record in records if record["event"] == "output")
    assert any(record["event"] == "resources" for record in records)

    history = json.loads((run_dir / "history.json").read_text())
    assert history["complete"] is True
    assert [entry["round"] for entry in history["rounds"]] == [1, 2]
    for entry in history["rounds"]:
        assert 0.0 <= entry["accuracy"] <= 1.0
        assert entry["loss"] > 0

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outcome"] == {
        "status": "succeeded",
        "exit_code": 0,
        "reason": "every process finished cleanly",
        "failed_process": None,
    }
    assert summary["data"]["dataset"] == "synthetic"
    assert summary["rounds_completed"] == 2
    processes = {process["name"]: process for process in summary["processes"]}
    assert set(processes) == {"server", "client-0", "client-1"}
    for process in processes.values():
        assert process["exit_code"] == 0
        assert process["peak_rss_bytes"] > 10 * 2**20
        assert process["cpu_seconds"] > 0
        assert not psutil.pid_exists(process["pid"]) or psutil.Process(process["pid"]).status() == "zombie"
    for name in processes:
        assert (run_dir / "logs" / f"{name}.stderr.log").stat().st_size > 0
    assert (run_dir / "resources.csv").read_text().startswith("time,process,pid")
    assert not (run_dir / "partitions").exists()


def test_cifar10_unavailable_exits_2_without_spawning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No network here, and none wanted: the download is pointed at a closed loopback port.
    monkeypatch.setattr(cifar10, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    run_dir = tmp_path / "run"
    began = time.monotonic()
    code = main(["--dataset", "cifar10", "--clients", "2", "--run-dir", str(run_dir), "--log-format", "json"])
    assert code == 2
    assert time.monotonic() - began < 20
    assert "--data-dir" in capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outcome"]["status"] == "invalid input"
    assert summary["processes"] == []
    # Only the supervisor's own event log: no process wrote anything.
    assert [path.name for path in (run_dir / "logs").iterdir()] == ["supervisor.log"]


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("NO_COLOR", "FORCE_COLOR")}
