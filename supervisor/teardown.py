"""The teardown rule: SIGTERM every process group, wait, SIGKILL, reap.

Every group gets SIGTERM at once, then up to `grace_s` seconds to empty. A
group that still has members after that (a child or grandchild that ignores
SIGTERM) is named in a WARNING and gets SIGKILL. Teardown returns only once
every child has been reaped, so no process of the run is left, also when it
was started because the supervisor itself was interrupted.

The supervisor registers as a child subreaper on Linux, so grandchildren
whose parent exited are re-parented to it and reaped here. Otherwise they
would stay zombies of an init process that may never reap them.
"""

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterable

import psutil
import structlog

from supervisor.child import Child

log = structlog.get_logger()

POLL_S = 0.02
# SIGKILL cannot be ignored, but a process in uninterruptible sleep (a stuck
# disk or network file system) may take a while to go.
KILL_WAIT_S = 5.0
PIPE_DRAIN_S = 2.0

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants so that they can be reaped; Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def reap_orphans(known_pids: Iterable[int]) -> None:
    """Reap adopted descendants that have exited.

    `known_pids` are the children that asyncio waits for itself; they are
    left alone so that their exit codes reach the fleet.
    """
    skip = set(known_pids)
    for proc in psutil.Process().children():
        if proc.pid in skip:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, os.WNOHANG)


async def stop_children(
    children: list[Child], grace_s: float, force: asyncio.Event, known_pids: Iterable[int] = ()
) -> None:
    """Stop every child's process group and reap everything.

    `force` set (a second Ctrl-C) skips what is left of the grace period.
    """
    started = [child for child in children if child.pid is not None]
    known = {*known_pids, *(child.pid for child in started if child.pid is not None)}

    # Ask every group to stop. Orphans that already exited are reaped first,
    # so that a group holding only zombies does not count as running.
    reap_orphans(known)
    for child in started:
        if child.running:
            child.stopped_by_supervisor = True
        if child.signal_group(signal.SIGTERM):
            # A stopped (stalled) process handles SIGTERM only once continued.
            child.signal_group(signal.SIGCONT)
            log.info("sent SIGTERM", child=child.name, pid=child.pid)

    # Wait for the groups to empty, within the grace period.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    alive = _alive_groups(started, known)
    while alive and loop.time() < deadline and not force.is_set():
        await asyncio.sleep(POLL_S)
        alive = _alive_groups(alive, known)

    # Kill what is left.
    for child in alive:
        members = _group_members(child.pid)
        log.warning(
            "still running after SIGTERM; sending SIGKILL",
            child=child.name,
            pid=child.pid,
            group_pids=members,
            waited_s=round(loop.time() - (deadline - grace_s), 1),
        )
        child.signal_group(signal.SIGKILL)

    # Reap.
    waits = [child.exited for child in started if child.exited is not None]
    if waits:
        await asyncio.wait(waits, timeout=KILL_WAIT_S)
    kill_deadline = time.monotonic() + KILL_WAIT_S
    # No event marks a process group becoming empty, so it is polled.
    while _alive_groups(started, known) and time.monotonic() < kill_deadline:  # noqa: ASYNC110
        await asyncio.sleep(POLL_S)
    await asyncio.gather(*(child.drain(PIPE_DRAIN_S) for child in started))
    reap_orphans(known)


def _alive_groups(children: list[Child], known_pids: set[int]) -> list[Child]:
    reap_orphans(known_pids)
    return [child for child in children if child.group_alive()]


def _group_members(pgid: int | None) -> list[int]:
    if pgid is None:
        return []
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members
