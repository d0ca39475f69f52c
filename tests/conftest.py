"""Shared fixtures: every test must leave no process of its own behind."""

import time
from collections.abc import Iterator

import psutil
import pytest
import structlog

from supervisor.teardown import become_subreaper

LEFTOVER_DEADLINE_S = 10.0


def _descendants() -> list[psutil.Process]:
    return [proc for proc in psutil.Process().children(recursive=True) if _alive(proc)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail a test that leaves a child or grandchild of the test process running.

    The test process registers as a child subreaper, so that a grandchild
    whose parent died is re-parented here and still counts.
    """
    become_subreaper()
    before = {proc.pid for proc in _descendants()}
    yield
    deadline = time.monotonic() + LEFTOVER_DEADLINE_S
    left = [proc for proc in _descendants() if proc.pid not in before]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [proc for proc in _descendants() if proc.pid not in before]
    for proc in left:
        proc.kill()
    assert not left, f"processes left running: {[(p.pid, p.cmdline()) for p in left]}"
    zombies = [proc.pid for proc in psutil.Process().children() if proc.pid not in before and not _alive(proc)]
    assert not zombies, f"children exited but were never reaped: {zombies}"


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
