"""The fleet policy: start in order, watch every child, decide the outcome.

Start order: the server, then (once its port accepts a connection) every
client. The run has failed, and is torn down at once, as soon as:
- any process exits with a non-zero code or is killed by a signal;
- a client exits before the server has finished;
- the server exits before its port opens, or does not open it within
  `ready_timeout_s`;
- clients are still running `drain_s` after the server finished.
A stop request (a signal, the whole-run timeout) ends the run the same way,
with the exit code the request carries. The first failure sets the exit code
and is named; processes that the teardown itself stops are not blamed.
Teardown is `teardown.stop_children()`, and it also runs if the fleet task is
cancelled.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from supervisor.child import Child
from supervisor.exitcodes import ExitCode
from supervisor.plan import Plan, ProcessSpec
from supervisor.readiness import wait_for_port
from supervisor.teardown import stop_children

log = structlog.get_logger()


@dataclass(frozen=True)
class Outcome:
    """The end of a run: its exit code, a one-line reason and the process to blame."""

    code: ExitCode
    reason: str
    failed_process: str | None = None

    @property
    def status(self) -> str:
        return {
            ExitCode.OK: "succeeded",
            ExitCode.WORKLOAD_FAILED: "failed",
            ExitCode.INVALID_INPUT: "invalid input",
            ExitCode.TIMED_OUT: "timed out",
        }.get(self.code, "interrupted")


class StopRequest:
    """Requests from outside the fleet to end the run.

    The first `request()` sets the outcome and `requested`; any later one sets
    `force`, which cuts the teardown's grace period short (a second Ctrl-C).
    Signal handlers only call `request()`: the fleet task does the work.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.force = asyncio.Event()
        self.outcome: Outcome | None = None

    def request(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.requested.set()
        else:
            self.force.set()


@dataclass(frozen=True)
class FleetOptions:
    """Time limits, in seconds."""

    grace_s: float = 5.0
    ready_timeout_s: float = 120.0
    drain_s: float = 30.0


@dataclass
class Fleet:
    """Run one plan to its outcome and tear it down.

    `on_line` receives every line a child prints; `on_started` and `on_exited`
    report lifecycle changes (to the resource sampler and the orphan guard).
    """

    plan: Plan
    log_dir: Path
    options: FleetOptions
    on_line: Callable[[Child, str, str, bool], None]
    on_started: Callable[[Child], None] = lambda _child: None
    on_exited: Callable[[Child], None] = lambda _child: None
    known_pids: set[int] = field(default_factory=set)
    children: list[Child] = field(default_factory=list)
    server_finished_at: float | None = None

    async def run(self, stop: StopRequest) -> Outcome:
        """Start, supervise and tear down; return the first failure or success."""
        supervise = asyncio.create_task(self._supervise())
        stopped = asyncio.create_task(stop.requested.wait())
        try:
            await asyncio.wait({supervise, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if supervise.done():
                outcome = supervise.result()
            else:
                supervise.cancel()
                await asyncio.gather(supervise, return_exceptions=True)
                assert stop.outcome is not None
                outcome = stop.outcome
                log.error("stopping the run", reason=outcome.reason)
        finally:
            stopped.cancel()
            if not supervise.done():
                supervise.cancel()
            await stop_children(self.children, self.options.grace_s, stop.force, self.known_pids)
            for child in self.children:
                self.on_exited(child)
        return outcome

    async def _supervise(self) -> Outcome:
        server = await self._start(self.plan.server)
        if isinstance(server, Outcome):
            return server

        not_ready = await self._wait_until_ready(server)
        if not_ready is not None:
            return not_ready

        for spec in self.plan.clients:
            started = await self._start(spec)
            if isinstance(started, Outcome):
                return started

        return await self._watch()

    async def _start(self, spec: ProcessSpec) -> Child | Outcome:
        child = Child(spec, self.log_dir, self.on_line)
        self.children.append(child)
        try:
            await child.start()
        except OSError as error:
            return self._fail(spec.name, f"{spec.name} could not start: {error}")
        log.info("started", child=spec.name, pid=child.pid, argv=" ".join(spec.argv))
        self.on_started(child)
        return child

    async def _wait_until_ready(self, server: Child) -> Outcome | None:
        port = server.spec.ready_port
        if port is None:
            return None
        assert server.exited is not None
        began = time.monotonic()
        ready = asyncio.create_task(wait_for_port(self.plan.host, port, self.options.ready_timeout_s))
        exited: asyncio.Future[Any] = server.exited
        await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if server.exited.done():
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
            self._report_exit(server)
            return self._fail(server.name, f"server exited ({server.describe_exit()}) before its port {port} opened")
        if not ready.result():
            return self._fail(
                server.name,
                f"server did not open port {port} within --ready-timeout {self.options.ready_timeout_s:g} s",
            )
        log.info("server ready", port=port, waited_s=round(time.monotonic() - began, 2))
        return None

    async def _watch(self) -> Outcome:
        pending = {child.exited: child for child in self.children if child.exited is not None}
        while pending:
            timeout = None
            if self.server_finished_at is not None:
                timeout = max(0.0, self.server_finished_at + self.options.drain_s - time.monotonic())
            done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                names = ", ".join(child.name for child in pending.values())
                first = next(iter(pending.values())).name
                return self._fail(first, f"{names} still running {self.options.drain_s:g} s after the server finished")

            # The server first, so that a client ending together with it is not blamed.
            for child in sorted((pending.pop(future) for future in done), key=lambda c: c.spec.role != "server"):
                self._report_exit(child)
                failure = self._check_exit(child)
                if failure is not None:
                    return failure
                if child.spec.role == "server":
                    self.server_finished_at = time.monotonic()
        return Outcome(ExitCode.OK, "every process finished cleanly")

    def _check_exit(self, child: Child) -> Outcome | None:
        if child.returncode != 0:
            return self._fail(child.name, f"{child.name} {child.describe_exit()}")
        if child.spec.role == "client" and self.server_finished_at is None:
            return self._fail(child.name, f"{child.name} exited (exit code 0) before the server finished")
        return None

    def _report_exit(self, child: Child) -> None:
        duration = (child.ended_at or time.time()) - (child.started_at or time.time())
        level = log.info if child.returncode == 0 else log.error
        level("exited", child=child.name, pid=child.pid, status=child.describe_exit(), ran_s=round(duration, 1))
        self.on_exited(child)

    def _fail(self, name: str, reason: str) -> Outcome:
        log.error("run failed; stopping every process", failed=name, reason=reason)
        return Outcome(ExitCode.WORKLOAD_FAILED, reason, name)
