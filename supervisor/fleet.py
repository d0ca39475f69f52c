"""The fleet policy: start in order, watch every child, decide the outcome.

Start order: the server, then (once its port accepts a connection) every
client. A client that exits with a non-zero code, is killed by a signal, or
exits before the server has finished is lost. With `--restart-clients` a lost
client is started again with the same command line, up to `max_restarts`
times. Up to `max_client_failures` clients may be lost for good, as long as
at least `min_clients` are left. The run has failed, and is torn down at
once, as soon as:
- the server exits with a non-zero code or is killed by a signal;
- one client more than `max_client_failures` is lost, or fewer than
  `min_clients` are left;
- the server exits before its port opens, or does not open it within
  `ready_timeout_s`;
- more clients than `max_client_failures` are still running `drain_s`
  after the server finished.
A stop request (a signal, the whole-run timeout) ends the run the same way,
with the exit code the request carries. The first failure sets the exit code
and is named; processes that the teardown itself stops are not blamed.
Teardown is `teardown.stop_children()`, and it also runs if the fleet task is
cancelled.
"""

import asyncio
import signal
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
    """Time limits in seconds, and the rules for lost clients."""

    grace_s: float = 5.0
    ready_timeout_s: float = 120.0
    drain_s: float = 10.0
    max_client_failures: int = 0
    min_clients: int = 1
    restart_clients: bool = False
    max_restarts: int = 3


@dataclass
class LostClient:
    """A client that ended before the server finished, and the round it was lost in.

    `round` is the round in progress (0 before round 1). `injected` names the
    fault that the supervisor injected on purpose, or is None for a real
    failure. `restarted` is true when a new process took its place.
    """

    name: str
    pid: int | None
    round: int
    status: str
    injected: str | None
    restarted: bool = False


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
    # The round in progress, set by the code that reads the server's round events.
    current_round: int = 0
    lost: list[LostClient] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    _pending: dict["asyncio.Future[int]", Child] = field(default_factory=dict, repr=False)
    _decided: bool = field(default=False, repr=False)

    def current(self, name: str) -> Child | None:
        """Return the newest process started under `name`, or None."""
        for child in reversed(self.children):
            if child.name == name:
                return child
        return None

    def inject(self, kind: str, name: str) -> bool:
        """Inject a fault into client `name`: "kill" (SIGKILL) or "stall" (SIGSTOP).

        Returns False if that client is not running. The process group gets
        the signal, so a stalled client sends no reply until teardown.
        """
        child = self.current(name)
        if child is None or not child.running:
            return False
        child.injected = kind
        child.injected_round = self.current_round
        log.warning("injected fault", fault=kind, child=name, pid=child.pid, round=self.current_round)
        child.signal_group(signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
        return True

    @property
    def decided(self) -> bool:
        """Return True once the run's outcome is known and teardown has begun."""
        return self._decided

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
            self._decided = True
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
        self._pending = pending
        # Clients that exited cleanly while the server still ran, with the time.
        # A server that has just asked its clients to disconnect can take a
        # moment to exit itself, so they are judged when it does, or after
        # `drain_s` if it does not.
        early: dict[Child, float] = {}
        while pending:
            done, _ = await asyncio.wait(pending, timeout=self._timeout(early), return_when=asyncio.FIRST_COMPLETED)
            if not done:
                if self.server_finished_at is not None:
                    return self._lingering(list(pending.values()))
                for child in self._expired(early):
                    failure = await self._lose(child, "exited (exit code 0) before the server finished")
                    if failure is not None:
                        return failure
                continue

            # The server first, so that a client ending together with it is not blamed.
            for child in sorted((pending.pop(future) for future in done), key=lambda c: c.spec.role != "server"):
                self._report_exit(child)
                if child.spec.role == "server":
                    if child.returncode != 0:
                        return self._fail(child.name, f"{child.name} {child.describe_exit()}")
                    self.server_finished_at = time.monotonic()
                    early.clear()
                elif child.returncode == 0 and child.injected is None:
                    if self.server_finished_at is None:
                        early[child] = time.monotonic()
                else:
                    failure = await self._lose(child, child.describe_exit())
                    if failure is not None:
                        return failure
        return Outcome(ExitCode.OK, self._success_reason())

    def _timeout(self, early: dict[Child, float]) -> float | None:
        """Return the seconds until the next drain deadline, or None if none is due."""
        starts = list(early.values())
        if self.server_finished_at is not None:
            starts.append(self.server_finished_at)
        if not starts:
            return None
        return max(0.0, min(starts) + self.options.drain_s - time.monotonic())

    def _expired(self, early: dict[Child, float]) -> list[Child]:
        now = time.monotonic()
        expired = [child for child, at in early.items() if now - at >= self.options.drain_s]
        for child in expired:
            del early[child]
        return expired

    async def _lose(self, child: Child, reason: str) -> Outcome | None:
        """Record a lost client; restart it, go on without it, or fail the run."""
        if child.injected:
            reason = f"{reason}, by an injected {child.injected}"
        lost = LostClient(child.name, child.pid, _lost_round(child, self.current_round), reason, child.injected)
        self.lost.append(lost)

        if self.options.restart_clients and self.restarts.get(child.name, 0) < self.options.max_restarts:
            self.restarts[child.name] = self.restarts.get(child.name, 0) + 1
            log.warning("client lost; restarting it", child=child.name, reason=reason, round=self.current_round,
                        restart=self.restarts[child.name])  # fmt: skip
            replacement = await self._start(child.spec)
            if isinstance(replacement, Outcome):
                return replacement
            assert replacement.exited is not None
            self._pending[replacement.exited] = replacement
            lost.restarted = True
            return None

        failures = sum(1 for entry in self.lost if not entry.restarted)
        left = sum(1 for other in self.children if other.spec.role == "client" and other.running)
        if failures > self.options.max_client_failures:
            budget = self.options.max_client_failures
            return self._fail(
                child.name,
                f"{child.name} {reason}"
                + (f"; that is {failures} lost clients, more than --max-client-failures {budget}" if budget else ""),
            )
        if left < self.options.min_clients:
            return self._fail(child.name, f"{child.name} {reason}; {left} clients left, fewer than the "
                                          f"{self.options.min_clients} needed per round")  # fmt: skip
        log.warning(
            "client lost; the run goes on",
            child=child.name,
            reason=reason,
            round=self.current_round,
            lost=failures,
            max_client_failures=self.options.max_client_failures,
            clients_left=left,
        )
        return None

    def _lingering(self, clients: list[Child]) -> Outcome:
        """Decide on clients still running `drain_s` after the server finished.

        They count as lost clients, a hung client for example, and are
        stopped by the teardown. Within the failure budget the run has still
        succeeded.
        """
        reason = f"still running {self.options.drain_s:g} s after the server finished"
        for child in clients:
            status = reason + (f", after an injected {child.injected}" if child.injected else "")
            self.lost.append(LostClient(child.name, child.pid, _lost_round(child, self.current_round), status,
                                        child.injected))  # fmt: skip
        failures = sum(1 for entry in self.lost if not entry.restarted)
        names = ", ".join(child.name for child in clients)
        if failures > self.options.max_client_failures:
            return self._fail(clients[0].name, f"{names} {reason}")
        log.warning("clients lost; stopping them", children=names, reason=reason)
        return Outcome(ExitCode.OK, self._success_reason())

    def _success_reason(self) -> str:
        if not self.lost:
            return "every process finished cleanly"
        names = ", ".join(sorted({entry.name for entry in self.lost}))
        return f"all rounds ran; clients lost on the way: {names}"

    def _report_exit(self, child: Child) -> None:
        duration = (child.ended_at or time.time()) - (child.started_at or time.time())
        level = log.info if child.returncode == 0 else log.error
        level("exited", child=child.name, pid=child.pid, status=child.describe_exit(), ran_s=round(duration, 1))
        self.on_exited(child)

    def _fail(self, name: str, reason: str) -> Outcome:
        log.error("run failed; stopping every process", failed=name, reason=reason)
        return Outcome(ExitCode.WORKLOAD_FAILED, reason, name)


def _lost_round(child: Child, current_round: int) -> int:
    """Return the round a client was lost in: an injected fault's round, else the round in progress."""
    return child.injected_round if child.injected_round is not None else current_round
