"""Fleet policy with real tiny children: readiness, failure, teardown."""

import asyncio
import time
from pathlib import Path

import psutil
from structlog.testing import capture_logs

from supervisor.child import Child
from supervisor.exitcodes import ExitCode
from supervisor.fleet import Fleet, FleetOptions, Outcome, StopRequest
from supervisor.plan import Plan
from supervisor.readiness import free_port
from tests.supervisor import children

DEADLINE_S = 30.0


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str, bool]] = []

    def __call__(self, child: Child, stream: str, text: str, continued: bool) -> None:
        self.lines.append((child.name, stream, text, continued))


def run_fleet(
    plan: Plan, tmp_path: Path, grace_s: float = 1.0, ready_timeout_s: float = 10.0, stop_after_s: float | None = None
) -> tuple[Outcome, Fleet, Recorder]:
    recorder = Recorder()
    fleet = Fleet(
        plan=plan,
        log_dir=tmp_path,
        options=FleetOptions(grace_s=grace_s, ready_timeout_s=ready_timeout_s),
        on_line=recorder,
    )

    async def main() -> Outcome:
        stop = StopRequest()
        if stop_after_s is not None:
            asyncio.get_running_loop().call_later(stop_after_s, stop.request, Outcome(ExitCode.TIMED_OUT, "test stop"))
        return await asyncio.wait_for(fleet.run(stop), DEADLINE_S)

    return asyncio.run(main()), fleet, recorder


def wait_for_file(path: Path, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return int(path.read_text())


def test_clean_run_succeeds(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(
        children.listening_server(port, run_s=0.5), port, [("client-0", children.client_until_server_stops(port))]
    )
    outcome, fleet, recorder = run_fleet(plan, tmp_path)
    assert outcome.code == ExitCode.OK
    assert [child.returncode for child in fleet.children] == [0, 0]
    assert ("client-0", "stdout", "server gone, done", False) in recorder.lines


def test_clients_start_only_after_port_opens(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    slow_server = children.python(f"""
        import socket, time
        time.sleep(0.5)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", {port}))
        listener.listen()
        time.sleep(3)
    """)
    probe = children.python(f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
        print("port was open", flush=True)
        while True:
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
            except OSError:
                break
    """)
    outcome, _, recorder = run_fleet(children.plan(slow_server, port, [("client-0", probe)]), tmp_path)
    assert outcome.code == ExitCode.OK
    assert ("client-0", "stdout", "port was open", False) in recorder.lines


def test_server_dying_before_ready_fails_fast(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(children.failing_after(0.2, exit_code=7), port, [("client-0", children.sleeper())])
    began = time.monotonic()
    outcome, fleet, _ = run_fleet(plan, tmp_path, ready_timeout_s=20.0)
    assert time.monotonic() - began < 10.0
    assert outcome.code == ExitCode.WORKLOAD_FAILED
    assert outcome.failed_process == "server"
    assert "before its port" in outcome.reason
    assert [child.name for child in fleet.children] == ["server"]


def test_server_never_listening_times_out(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(children.sleeper(), port, [])
    outcome, _, _ = run_fleet(plan, tmp_path, ready_timeout_s=0.5)
    assert outcome.code == ExitCode.WORKLOAD_FAILED
    assert "did not open port" in outcome.reason


def test_failing_client_tears_down_everything(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    stubborn_pid_file = tmp_path / "stubborn.pid"
    grandchild_pid_file = tmp_path / "grandchild.pid"
    plan = children.plan(
        children.listening_server(port, run_s=60),
        port,
        [
            ("client-0", children.sleeper(ignore_sigterm=True, pid_file=str(stubborn_pid_file))),
            ("client-1", children.forking_parent(str(grandchild_pid_file))),
            ("client-2", children.failing_after(1.0, exit_code=3)),
        ],
    )
    with capture_logs() as events:
        outcome, fleet, _ = run_fleet(plan, tmp_path, grace_s=1.0)

    assert outcome.code == ExitCode.WORKLOAD_FAILED
    assert outcome.failed_process == "client-2"
    assert "exit code 3" in outcome.reason
    grandchild = wait_for_file(grandchild_pid_file)
    stubborn = wait_for_file(stubborn_pid_file)
    for pid in (grandchild, stubborn, *(child.pid for child in fleet.children)):
        assert pid is not None
        assert not _running(pid), f"pid {pid} survived the teardown"
    killed = {event["child"] for event in events if event["event"].startswith("still running after SIGTERM")}
    assert "client-0" in killed
    assert "client-1" in killed
    assert "client-2" not in killed


def test_client_exiting_early_is_a_failure(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(
        children.listening_server(port, run_s=60), port, [("client-0", children.failing_after(0.1, exit_code=0))]
    )
    outcome, _, _ = run_fleet(plan, tmp_path)
    assert outcome.code == ExitCode.WORKLOAD_FAILED
    assert outcome.failed_process == "client-0"
    assert "before the server finished" in outcome.reason


def test_stop_request_ends_run_with_its_code(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    plan = children.plan(children.listening_server(port, run_s=60), port, [("client-0", children.sleeper())])
    outcome, fleet, _ = run_fleet(plan, tmp_path, stop_after_s=1.0)
    assert outcome.code == ExitCode.TIMED_OUT
    assert all(child.stopped_by_supervisor for child in fleet.children)


def test_output_kept_byte_for_byte(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    payload = b"x" * 1_000_000 + b"\n" + b"10%\r20%\r30%\n" + b"bad \xff byte\n" + b"no newline at end"
    payload_file = tmp_path / "payload.bin"
    payload_file.write_bytes(payload)
    server = children.python(f"""
        import socket, time
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", {port}))
        listener.listen()
        import sys
        sys.stdout.buffer.write(open({str(payload_file)!r}, "rb").read())
        sys.stdout.flush()
        time.sleep(1)
    """)
    outcome, _, recorder = run_fleet(
        children.plan(server, port, [("client-0", children.client_until_server_stops(port))]), tmp_path
    )
    assert outcome.code == ExitCode.OK
    assert (tmp_path / "server.stdout.log").read_bytes() == payload
    server_lines = [(text, continued) for name, stream, text, continued in recorder.lines if name == "server"]
    joined: list[str] = []
    current = ""
    for text, continued in server_lines:
        current += text
        if not continued:
            joined.append(current)
            current = ""
    assert joined == ["x" * 1_000_000, "30%", "bad \ufffd byte", "no newline at end"]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
