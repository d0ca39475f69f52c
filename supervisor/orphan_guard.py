"""A tiny process that ends the supervisor's children if the supervisor dies.

A supervisor killed with SIGKILL cannot run its teardown, so it starts this
guard first and writes `+PGID` to the guard's stdin for each process group it
creates and `-PGID` once that group is gone. When stdin reaches end of file
(the supervisor exited, cleanly or not, and the kernel closed its end of the
pipe), the guard sends SIGTERM to every group still listed, waits up to
`GRACE_S`, then sends SIGKILL. The guard runs in a session of its own and
ignores SIGINT and SIGHUP, so a Ctrl-C in the terminal does not end it early.

Run as `python -m supervisor.orphan_guard`; it imports nothing from the rest
of the package.
"""

import asyncio
import contextlib
import os
import signal
import sys
import time

GRACE_S = 2.0
POLL_S = 0.05


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        sign, _, number = line.strip().partition(" ")
        if not number.isdigit():
            continue
        if sign == "+":
            groups.add(int(number))
        elif sign == "-":
            groups.discard(int(number))
    _end_groups(groups)
    return 0


def _end_groups(groups: set[int]) -> None:
    alive = {pgid for pgid in groups if _signal(pgid, signal.SIGTERM)}
    deadline = time.monotonic() + GRACE_S
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_S)
        alive = {pgid for pgid in alive if _signal(pgid, 0)}
    for pgid in alive:
        _signal(pgid, signal.SIGKILL)


def _signal(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class OrphanGuard:
    """The supervisor's side: start the guard and keep its list of groups current."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._groups: set[int] = set()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "supervisor.orphan_guard",
            stdin=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip

    def add(self, pgid: int) -> None:
        self._groups.add(pgid)
        self._send(f"+ {pgid}\n")

    async def close(self) -> None:
        """Tell the guard that every group is gone, then let it exit."""
        if self._process is None or self._process.stdin is None:
            return
        for pgid in sorted(self._groups):
            self._send(f"- {pgid}\n")
        self._groups.clear()
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), timeout=GRACE_S + 1)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()

    def _send(self, text: str) -> None:
        if self._process is None or self._process.stdin is None:
            return
        with contextlib.suppress(OSError):
            self._process.stdin.write(text.encode())


if __name__ == "__main__":
    sys.exit(main())
