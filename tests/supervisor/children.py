"""Tiny real children for supervisor tests: `sys.executable -c` programs."""

import sys
import textwrap

from supervisor.plan import Plan, ProcessSpec


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def listening_server(port: int, run_s: float = 1.0, exit_code: int = 0) -> list[str]:
    """A server that listens on `port`, stays up `run_s` seconds, then exits."""
    return python(f"""
        import socket, sys, time
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", {port}))
        listener.listen()
        print("listening", flush=True)
        time.sleep({run_s})
        listener.close()
        sys.exit({exit_code})
    """)


def client_until_server_stops(port: int, ready_file: str | None = None) -> list[str]:
    """A client that exits 0 once the server's port stops accepting connections.

    With `ready_file` it first creates that file, so a server can wait for it.
    """
    return python(f"""
        import socket, time
        if {ready_file!r}:
            open({ready_file!r}, "w").close()
        while True:
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
            except OSError:
                break
            time.sleep(0.05)
        print("server gone, done", flush=True)
    """)


def sleeper(ignore_sigterm: bool = False, pid_file: str | None = None) -> list[str]:
    """A process that sleeps for a minute, optionally ignoring SIGTERM."""
    return python(f"""
        import os, signal, time
        if {ignore_sigterm!r}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if {pid_file!r}:
            with open({pid_file!r}, "w") as handle:
                handle.write(str(os.getpid()))
        print("sleeping", flush=True)
        time.sleep(60)
    """)


def forking_parent(grandchild_pid_file: str, grandchild_ignores_sigterm: bool = True) -> list[str]:
    """A process that forks a grandchild, records its pid, and sleeps."""
    return python(f"""
        import os, signal, time
        pid = os.fork()
        if pid == 0:
            if {grandchild_ignores_sigterm!r}:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open({grandchild_pid_file!r} + ".tmp", "w") as handle:
                handle.write(str(os.getpid()))
            os.rename({grandchild_pid_file!r} + ".tmp", {grandchild_pid_file!r})
            time.sleep(60)
            os._exit(0)
        print("forked", pid, flush=True)
        time.sleep(60)
    """)


def failing_after(seconds: float, exit_code: int = 3) -> list[str]:
    return python(f"""
        import sys, time
        time.sleep({seconds})
        print("failing now", flush=True)
        sys.exit({exit_code})
    """)


def plan(server: list[str], port: int, clients: list[tuple[str, list[str]]]) -> Plan:
    return Plan(
        server=ProcessSpec("server", server, "server", ready_port=port),
        clients=[ProcessSpec(name, argv, "client") for name, argv in clients],
        host="127.0.0.1",
    )
