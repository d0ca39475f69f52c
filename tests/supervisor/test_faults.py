"""Lost clients, restarts and injected faults, with real tiny children."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.exitcodes import ExitCode
from supervisor.faults import Fault, FaultPlan, FaultSpecError, parse_fault
from supervisor.fleet import Fleet, FleetOptions, Outcome, StopRequest
from supervisor.readiness import free_port
from tests.supervisor import children
from tests.supervisor.test_fleet import Recorder, run_fleet

PROJECT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


def budget_fleet(plan, tmp_path: Path, **options) -> tuple[Outcome, Fleet]:  # type: ignore[no-untyped-def]
    import asyncio

    fleet = Fleet(plan=plan, log_dir=tmp_path, options=FleetOptions(grace_s=1.0, **options), on_line=Recorder())

    async def main() -> Outcome:
        return await asyncio.wait_for(fleet.run(StopRequest()), DEADLINE_S)

    return asyncio.run(main()), fleet


def three_clients(port: int, failing: list[str]) -> list[tuple[str, list[str]]]:
    return [
        (
            f"client-{i}",
            children.failing_after(0.3) if f"client-{i}" in failing else children.client_until_server_stops(port),
        )
        for i in range(3)
    ]


def test_lost_client_within_budget_goes_on(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(children.listening_server(port, run_s=2), port, three_clients(port, ["client-1"]))
    outcome, fleet = budget_fleet(plan, tmp_path, max_client_failures=1, min_clients=1)
    assert outcome.code == ExitCode.OK
    assert "client-1" in outcome.reason
    assert [entry.name for entry in fleet.lost] == ["client-1"]
    assert fleet.lost[0].status == "exit code 3"
    assert fleet.lost[0].restarted is False


def test_failure_beyond_budget_stops_run(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(children.listening_server(port, run_s=30), port, three_clients(port, ["client-0", "client-2"]))
    outcome, fleet = budget_fleet(plan, tmp_path, max_client_failures=1, min_clients=1)
    assert outcome.code == ExitCode.WORKLOAD_FAILED
    assert "more than --max-client-failures 1" in outcome.reason
    assert len(fleet.lost) == 2


def test_too_few_clients_left_stops_run(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(children.listening_server(port, run_s=30), port, three_clients(port, ["client-0"]))
    outcome, _ = budget_fleet(plan, tmp_path, max_client_failures=2, min_clients=3)
    assert outcome.code == ExitCode.WORKLOAD_FAILED
    assert "2 clients left, fewer than the 3 needed" in outcome.reason


def test_lost_client_restarted_once(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    marker = tmp_path / "failed-once"
    flaky = children.python(f"""
        import os, socket, sys, time
        if not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            sys.exit(5)
        while True:
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
            except OSError:
                break
            time.sleep(0.05)
    """)
    plan = children.plan(children.listening_server(port, run_s=2), port, [("client-0", flaky)])
    outcome, fleet = budget_fleet(plan, tmp_path, restart_clients=True, max_restarts=1)
    assert outcome.code == ExitCode.OK
    assert [child.name for child in fleet.children] == ["server", "client-0", "client-0"]
    assert fleet.lost[0].restarted is True


def test_stalled_client_is_torn_down(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(children.listening_server(port, run_s=60), port, [("client-0", children.sleeper())])
    outcome, fleet, _ = run_fleet(plan, tmp_path, stop_after_s=1.0)
    assert outcome.code == ExitCode.TIMED_OUT
    # The stop came while the client ran; a stalled group must still end.
    assert fleet.children[1].returncode is not None


def test_parse_fault_forms() -> None:
    assert parse_fault("kill:client-3@round=2", clients=4, rounds=3) == Fault("kill", "client-3", 2)
    assert parse_fault("stall:client-0@round=1", clients=1, rounds=1) == Fault("stall", "client-0", 1)
    assert parse_fault("kill:client-01@round=2", clients=4, rounds=3) == Fault("kill", "client-1", 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kill:client-3", "is not of the form"),
        ("explode:client-0@round=1", "unknown fault 'explode'"),
        ("kill:client-9@round=1", "only client-0 to client-3"),
        ("kill:client-0@round=7", "round 7 is outside 1-3"),
    ],
)
def test_parse_fault_rejects_bad_forms(text: str, message: str) -> None:
    with pytest.raises(FaultSpecError) as error:
        parse_fault(text, clients=4, rounds=3)
    assert message in str(error.value)


def test_random_kill_is_seeded() -> None:
    names = [f"client-{i}" for i in range(20)]
    first = [FaultPlan([], 0.3, seed=7).due(round_number, names) for round_number in (1, 2)]
    second = [FaultPlan([], 0.3, seed=7).due(round_number, names) for round_number in (1, 2)]
    assert first == second
    assert 0 < len(first[0]) < 20


def _round_server(port: int, ready_files: list[str]) -> list[str]:
    """A server that waits for every client's ready file, then prints 3 rounds of events, one every 0.5 s."""
    return children.python(f"""
        import json, os, socket, time
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", {port}))
        listener.listen()
        while not all(os.path.exists(path) for path in {ready_files!r}):
            time.sleep(0.05)
        for number in (1, 2, 3):
            print("fl-event " + json.dumps({{"event": "round_started", "round": number, "clients": 2}}), flush=True)
            time.sleep(0.5)
            print("fl-event " + json.dumps({{"event": "round_done", "round": number, "duration_s": 0.5}}), flush=True)
        listener.close()
    """)


def _run_with_injection(tmp_path: Path, *options: str) -> tuple[int, dict, float]:
    port = free_port("127.0.0.1")
    ready_files = [str(tmp_path / f"client-{index}.ready") for index in range(3)]
    clients = [[f"client-{index}", children.client_until_server_stops(port, ready_files[index])] for index in range(3)]
    spec = {"server": _round_server(port, ready_files), "clients": clients}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "tests.supervisor.driver", str(spec_file), "--", "--clients", "3",
               "--rounds", "3", "--dataset", "synthetic", "--port", str(port), "--run-dir", str(run_dir),
               "--log-format", "json", "--grace", "1", *options]  # fmt: skip
    began = time.monotonic()
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=DEADLINE_S,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    took = time.monotonic() - began
    return result.returncode, json.loads((run_dir / "summary.json").read_text()), took


def test_injected_kill_within_budget(tmp_path: Path) -> None:
    code, summary, _ = _run_with_injection(tmp_path, "--max-client-failures", "1", "--inject", "kill:client-2@round=2")
    assert code == 0
    assert summary["injected_faults"][0]["client"] == "client-2"
    assert summary["injected_faults"][0]["round"] == 2
    lost = summary["lost_clients"]
    assert [entry["name"] for entry in lost] == ["client-2"]
    assert lost[0]["injected"] == "kill"
    assert lost[0]["rounds_missed"] == [2, 3]
    assert lost[0]["status"] == "killed by SIGKILL, by an injected kill"


def test_injected_kill_without_budget_fails(tmp_path: Path) -> None:
    code, summary, _ = _run_with_injection(tmp_path, "--inject", "kill:client-2@round=2")
    assert code == 1
    assert summary["outcome"]["failed_process"] == "client-2"
    assert "injected kill" in summary["outcome"]["reason"]


def test_injected_stall_ends_at_teardown(tmp_path: Path) -> None:
    code, summary, took = _run_with_injection(tmp_path, "--inject", "stall:client-1@round=1", "--timeout", "8")
    # The tiny server does not wait for the stalled client, which is still
    # stopped when the server finishes, so --timeout ends the run.
    assert code == 124
    assert took < 8 + 1 + 5
    stalled = next(p for p in summary["processes"] if p["name"] == "client-1")
    assert stalled["stopped_by_supervisor"] is True
    assert signal.Signals(stalled["signal"]) in (signal.SIGTERM, signal.SIGKILL)


def test_stalled_client_lost_in_injected_round(tmp_path: Path) -> None:
    import asyncio

    port = free_port("127.0.0.1")
    ready = str(tmp_path / "client-1.ready")
    plan = children.plan(children.listening_server(port, run_s=3), port, [
        ("client-0", children.client_until_server_stops(port)),
        ("client-1", children.client_until_server_stops(port, ready)),
    ])  # fmt: skip
    fleet = Fleet(plan=plan, log_dir=tmp_path, on_line=Recorder(),
                  options=FleetOptions(grace_s=1.0, drain_s=0.5, max_client_failures=1, min_clients=1))  # fmt: skip

    async def main() -> Outcome:
        running = asyncio.create_task(fleet.run(StopRequest()))
        deadline = time.monotonic() + DEADLINE_S
        while not os.path.exists(ready):  # noqa: ASYNC240 - a stat per 50 ms in a test
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        fleet.current_round = 1
        assert fleet.inject("stall", "client-1")
        fleet.current_round = 3
        return await asyncio.wait_for(running, DEADLINE_S)

    outcome = asyncio.run(main())
    assert outcome.code == ExitCode.OK
    assert [entry.name for entry in fleet.lost] == ["client-1"]
    assert fleet.lost[0].round == 1
    assert fleet.lost[0].injected == "stall"
    assert fleet.lost[0].status.endswith("after an injected stall")
