"""The whole run in a subprocess: signals, --timeout and a killed supervisor."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisor.readiness import free_port
from supervisor.teardown import reap_orphans
from tests.supervisor import children

PROJECT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30.0


def start_driver(
    tmp_path: Path,
    clients: list[tuple[str, list[str]]],
    *options: str,
    server_run_s: float = 60,
    port: int | None = None,
) -> tuple[subprocess.Popen[str], Path]:
    port = port or free_port("127.0.0.1")
    spec = {"server": children.listening_server(port, run_s=server_run_s), "clients": clients}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "tests.supervisor.driver",
        str(spec_file),
        "--",
        "--clients",
        str(max(1, len(clients))),
        "--fraction-fit",
        "1",
        "--dataset",
        "synthetic",
        "--port",
        str(port),
        "--run-dir",
        str(run_dir),
        "--log-format",
        "json",
        "--monitor-interval",
        "0.5",
        *options,
    ]
    process = subprocess.Popen(
        command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    return process, run_dir


def wait_for_event(process: subprocess.Popen[str], event: str, child: str | None = None) -> list[dict]:
    """Read JSON lines until `event` (about `child`) appears; return what was read."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        record = json.loads(line)
        seen.append(record)
        if record.get("event") == event and (child is None or record.get("child") == child):
            return seen
    raise AssertionError(f"no {event!r} event; saw {seen[-5:]}")


def finish(process: subprocess.Popen[str]) -> tuple[int, list[dict]]:
    out, _ = process.communicate(timeout=DEADLINE_S)
    return process.returncode, [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_stops_run_with_code(tmp_path: Path, signum: int, code: int) -> None:
    process, run_dir = start_driver(tmp_path, [("client-0", children.sleeper())])
    wait_for_event(process, "started", "client-0")
    process.send_signal(signum)
    returncode, records = finish(process)
    assert returncode == code
    assert any(record["event"] == "received signal; stopping the run" for record in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outcome"]["exit_code"] == code
    assert summary["outcome"]["status"] == "interrupted"


def test_second_sigint_kills_at_once(tmp_path: Path) -> None:
    process, run_dir = start_driver(tmp_path, [("client-0", children.sleeper(ignore_sigterm=True))], "--grace", "20")
    wait_for_event(process, "started", "client-0")
    process.send_signal(signal.SIGINT)
    wait_for_event(process, "sent SIGTERM", "client-0")
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    returncode, _ = finish(process)
    assert time.monotonic() - began < 10.0
    assert returncode == 130
    assert (run_dir / "summary.json").exists()


def test_timeout_expires_with_124(tmp_path: Path) -> None:
    process, run_dir = start_driver(tmp_path, [("client-0", children.sleeper())], "--timeout", "2")
    returncode, records = finish(process)
    assert returncode == 124
    assert any(record["event"].startswith("--timeout expired") for record in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outcome"]["status"] == "timed out"


def test_every_stdout_line_is_json(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    process, run_dir = start_driver(
        tmp_path, [("client-0", children.client_until_server_stops(port))], server_run_s=1, port=port
    )
    returncode, records = finish(process)
    assert returncode == 0
    assert (run_dir / "summary.json").exists()
    assert any(record.get("line") == "server gone, done" for record in records)
    assert all("event" in record and "timestamp" in record for record in records)


def test_killed_supervisor_leaves_no_children(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "grandchild.pid"
    process, _ = start_driver(
        tmp_path,
        [
            ("client-0", children.sleeper(ignore_sigterm=True)),
            ("client-1", children.forking_parent(str(grandchild_file))),
        ],
    )
    seen = wait_for_event(process, "started", "client-1")
    pids = [record["pid"] for record in seen if record.get("event") == "started"]
    deadline = time.monotonic() + DEADLINE_S
    while not grandchild_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pids.append(int(grandchild_file.read_text()))

    process.kill()
    process.wait(timeout=DEADLINE_S)
    deadline = time.monotonic() + 5.0
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if _running(pid)]
    # The test process is a child subreaper, so the dead supervisor's children
    # and its orphan guard were re-parented here; reap them as init would.
    deadline = time.monotonic() + 5.0
    while psutil.Process().children() and time.monotonic() < deadline:
        reap_orphans(known_pids=())
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_closed_stdout_still_stops_on_sigterm(tmp_path: Path) -> None:
    process, run_dir = start_driver(tmp_path, [("client-0", children.sleeper())], "--monitor-interval", "0.2")
    wait_for_event(process, "started", "client-0")
    assert process.stdout is not None
    process.stdout.close()
    # The supervisor's next writes (resources events every 0.2 s) hit the closed pipe.
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=DEADLINE_S) == 143
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outcome"]["status"] == "interrupted"
    events = [json.loads(line) for line in (run_dir / "logs" / "supervisor.log").read_text().splitlines()]
    assert any(event["event"] == "received signal; stopping the run" for event in events)
