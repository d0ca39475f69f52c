"""One run, from data preparation to summary.json.

Steps: register for signals and the whole-run timeout, prepare the data
(decoded once, one partition file per client), start the orphan guard, start
and supervise the fleet, then write summary.json and report.html and print
the human summary. summary.json is written on every path out of `run()`.
"""

import asyncio
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import structlog

from supervisor.child import Child
from supervisor.config import Config, environment_summary, is_loopback
from supervisor.exitcodes import ExitCode, for_signal
from supervisor.faults import FaultPlan
from supervisor.fleet import Fleet, FleetOptions, Outcome, StopRequest
from supervisor.gpu import open_gpus
from supervisor.live_table import render_table
from supervisor.orphan_guard import OrphanGuard
from supervisor.output import Display
from supervisor.plan import WorkloadSettings, build_plan
from supervisor.progress import RoundProgress, parse_event
from supervisor.readiness import free_port
from supervisor.report import write_report
from supervisor.resources import ResourceSampler
from supervisor.rundir import RunDir, read_json, write_json
from supervisor.summary import build_summary, render_summary
from supervisor.teardown import become_subreaper
from workloads.data import DataError, load_dataset, write_partitions

log = structlog.get_logger()
T = TypeVar("T")

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Time a client the server reported lost has to exit and be named, in seconds.
_LOST_CLIENT_WAIT_S = 1.0
# How often the live table redraws at most while lines scroll, in seconds.
_REDRAW_S = 0.1


class Run:
    """State of one run, shared by its steps."""

    def __init__(self, config: Config, run_dir: RunDir, display: Display, colour: bool) -> None:
        self.config = config
        self.run_dir = run_dir
        self.display = display
        self.colour = colour
        self.started_at = time.time()
        self.stop = StopRequest()
        self.sampler = ResourceSampler(samples_path=run_dir.resources, gpu=open_gpus())
        self.data: dict[str, Any] | None = None
        self.port: int | None = None
        self.fleet: Fleet | None = None
        self.progress = RoundProgress(total_rounds=config.rounds)
        seed = config.seed if config.inject_seed is None else config.inject_seed
        self.faults = FaultPlan(list(config.inject), config.inject_random_kill, seed)
        self.injected: list[dict[str, Any]] = []
        # Replaceable, so that tests can run the same steps with tiny children.
        self.build_plan = build_plan
        self._redraw_pending = False
        self._flush_pending = False

    async def execute(self) -> int:
        """Run everything and return the exit code; summary.json is always written."""
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        if self.config.timeout_s is not None:
            loop.call_later(self.config.timeout_s, self._on_timeout)

        outcome = Outcome(ExitCode.WORKLOAD_FAILED, "the supervisor stopped unexpectedly")
        guard = OrphanGuard()
        monitor: asyncio.Task[None] | None = None
        try:
            log.info("run started", run_dir=str(self.run_dir.root), clients=self.config.clients,
                     rounds=self.config.rounds, dataset=self.config.dataset)  # fmt: skip
            if not is_loopback(self.config.host):
                log.warning("the server listens beyond this machine and its gRPC traffic is unencrypted",
                            host=self.config.host)  # fmt: skip
            prepared = await self._prepare_data()
            if isinstance(prepared, Outcome):
                outcome = prepared
            else:
                # Nothing is spawned before the data is known to be good.
                await guard.start()
                become_subreaper()
                monitor = asyncio.create_task(self._monitor())
                outcome = await self._run_fleet(guard, prepared)
        except Exception as error:
            log.exception("supervisor error", error=repr(error))
            outcome = Outcome(ExitCode.WORKLOAD_FAILED, f"supervisor error: {error!r}")
        finally:
            if monitor is not None:
                monitor.cancel()
                await asyncio.gather(monitor, return_exceptions=True)
            await guard.close()
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)
            self._finish(outcome)
        return int(outcome.code)

    def _on_signal(self, signum: int) -> None:
        # Request the stop before logging: logging to a closed terminal must
        # not keep the run from stopping.
        name = signal.Signals(signum).name
        first = self.stop.outcome is None
        self.stop.request(Outcome(for_signal(signum), f"interrupted by {name}"))
        if first:
            log.warning("received signal; stopping the run", signal=name)
        else:
            log.warning("received signal again; killing every process now", signal=name)

    def _on_timeout(self) -> None:
        seconds = self.config.timeout_s
        self.stop.request(Outcome(ExitCode.TIMED_OUT, f"--timeout {seconds:g} s expired"))
        log.error("--timeout expired; stopping the run", timeout_s=seconds)

    async def _prepare_data(self) -> list[Any] | Outcome:
        """Decode the data once and write one partition per client, off the event loop."""
        config = self.config
        warnings: list[str] = []

        def prepare() -> dict[str, Any]:
            dataset = load_dataset(
                config.dataset, config.data_dir, seed=config.seed,
                download_timeout_s=config.download_timeout_s, warn=warnings.append,
            )  # fmt: skip
            return write_partitions(dataset, config.clients, config.seed, self.run_dir.partitions)

        began = time.monotonic()
        task = asyncio.ensure_future(_in_thread(prepare))
        stopped = asyncio.ensure_future(self.stop.requested.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        for message in warnings:
            log.warning(message)
        if not task.done():
            assert self.stop.outcome is not None
            return self.stop.outcome
        try:
            manifest = task.result()
        except DataError as error:
            log.error("invalid data", reason=str(error))
            return Outcome(ExitCode.INVALID_INPUT, str(error))
        self.data = manifest
        log.info(
            "data ready", dataset=manifest["dataset"], origin=manifest["origin"],
            train_per_client=manifest["train_per_client"], test_per_client=manifest["test_per_client"],
            took_s=round(time.monotonic() - began, 1),
        )  # fmt: skip
        return list(manifest["partitions"])

    async def _run_fleet(self, guard: "OrphanGuard", partitions: list[Any]) -> Outcome:
        config = self.config
        self.port = config.port or free_port(config.host)
        settings = WorkloadSettings(
            host=config.host, port=self.port, clients=config.clients, rounds=config.rounds,
            fraction_fit=config.fraction_fit, fraction_evaluate=config.fraction_evaluate,
            round_timeout_s=config.round_timeout_s, steps_per_epoch=config.steps_per_epoch,
            batch_size=config.batch_size, seed=config.seed, max_client_failures=config.max_client_failures,
            client_wait_timeout_s=config.client_wait_timeout_s,
        )  # fmt: skip
        plan = self.build_plan(settings, partitions, self.run_dir.history)

        def started(child: Child) -> None:
            assert child.pid is not None
            guard.add(child.pid)
            self.sampler.track(child.name, child.pid)
            self._refresh_table()

        def exited(child: Child) -> None:
            if child.pid is not None:
                self.sampler.mark_exited(child.pid)
            self._refresh_table()

        self.fleet = Fleet(
            plan=plan,
            log_dir=self.run_dir.logs,
            options=FleetOptions(
                grace_s=config.grace_s,
                ready_timeout_s=config.ready_timeout_s,
                max_client_failures=config.max_client_failures,
                min_clients=config.min_clients,
                restart_clients=config.restart_clients,
                max_restarts=config.max_restarts,
            ),
            on_line=self._on_line,
            on_started=started,
            on_exited=exited,
            known_pids={guard.pid} if guard.pid else set(),
        )
        return await self.fleet.run(self.stop)

    async def _monitor(self) -> None:
        """Sample resources every interval; show the table or log a resources event."""
        self.sampler.sample()
        while True:
            await asyncio.sleep(self.config.monitor_interval_s)
            self.sampler.sample()
            if self.display.live:
                self._refresh_table()
            else:
                log.info("resources", **self._resources_fields())

    def _on_line(self, child: Child, stream: str, text: str, continued: bool) -> None:
        _log_line(child, stream, text, continued)
        if child.spec.role != "server" or stream != "stdout":
            return
        event = parse_event(text)
        if event is None:
            return
        if event.get("event") == "round_started" and self.fleet is not None:
            self.fleet.current_round = int(event.get("round", 0))
            self._inject_faults()
        if event.get("event") == "client_lost" and self.config.max_client_failures == 0:
            # A client whose process died is named by its exit within moments.
            # One that a round timeout disconnected may never exit, so the run
            # fails on the server's report if no exit came first.
            round_number = event.get("round")
            asyncio.get_running_loop().call_later(_LOST_CLIENT_WAIT_S, self._fail_lost_client, round_number)
        if self.progress.update(event):
            log.info(
                "round finished", round=self.progress.round, total_rounds=self.progress.total_rounds,
                loss=self.progress.last_loss, accuracy=self.progress.last_accuracy,
                duration_s=self.progress.round_durations[-1] if self.progress.round_durations else None,
            )  # fmt: skip
        self._refresh_table()

    def _fail_lost_client(self, round_number: object) -> None:
        if self.stop.outcome is not None or self.fleet is None or self.fleet.decided:
            return
        reason = (
            f"the server lost a client in round {round_number} (a reply timed out or its connection ended) "
            "and --max-client-failures is 0"
        )
        self.stop.request(Outcome(ExitCode.WORKLOAD_FAILED, reason))
        log.error("run failed; stopping every process", reason=reason)

    def _inject_faults(self) -> None:
        assert self.fleet is not None
        if not self.faults:
            return
        round_number = self.fleet.current_round
        running = [child.name for child in self.fleet.children if child.spec.role == "client" and child.running]
        for fault in self.faults.due(round_number, running):
            if self.fleet.inject(fault.kind, fault.client):
                self.injected.append({"fault": fault.kind, "client": fault.client, "round": round_number,
                                      "at": time.time()})  # fmt: skip
            else:
                log.warning("fault not injected: the client is not running", fault=str(fault))

    def _resources_fields(self) -> dict[str, Any]:
        machine = self.sampler.machine
        return {
            "processes": {
                usage.name: {"pid": usage.pid, "cpu_percent": round(usage.cpu_percent, 1), "rss_bytes": usage.rss_bytes}
                for usage in self.sampler.usage.values() if usage.alive
            },
            "machine_cpu_percent": round(machine.cpu_percent, 1),
            "machine_memory_used_bytes": machine.memory_used_bytes,
            "progress": self.progress.describe(),
        }  # fmt: skip

    def _refresh_table(self) -> None:
        if not self.display.live or self.fleet is None:
            return
        table = render_table(self.fleet.children, self.sampler, self.started_at, self.colour)
        self.display.show_table([self.progress.describe(), *table])

    def schedule_flush(self) -> None:
        """Flush the output once the event loop has handled what is ready now."""
        if self._flush_pending:
            return
        self._flush_pending = True

        def flush() -> None:
            self._flush_pending = False
            self.display.flush()

        asyncio.get_running_loop().call_soon(flush)

    def schedule_redraw(self) -> None:
        """Redraw the table once, shortly, however many lines arrive meanwhile."""
        if self._redraw_pending:
            return
        self._redraw_pending = True

        def redraw() -> None:
            self._redraw_pending = False
            self.display.redraw()

        asyncio.get_running_loop().call_later(_REDRAW_S, redraw)

    def _finish(self, outcome: Outcome) -> None:
        """Write summary.json and report.html, remove the partitions, print the human summary."""
        self.display.close()
        children = self.fleet.children if self.fleet else []
        config = {**self.config.as_dict(), "environment": environment_summary()}
        summary = build_summary(
            config=config, outcome=outcome, started_at=self.started_at, children=children,
            sampler=self.sampler, data=self.data, history=read_json(self.run_dir.history), port=self.port,
            lost=self.fleet.lost if self.fleet else [], injected=self.injected,
        )  # fmt: skip
        gpu = self.sampler.gpu_summary()
        if gpu is not None:
            summary["gpu"] = gpu
        write_json(self.run_dir.summary, summary)
        self.sampler.close()
        self._write_report()
        shutil.rmtree(self.run_dir.partitions, ignore_errors=True)
        log.info("run finished", outcome=outcome.status, exit_code=int(outcome.code), summary=str(self.run_dir.summary))
        if self.config.log_format == "console":
            out = sys.stdout
            for line in render_summary(summary, str(self.run_dir.root)):
                out.write(line + "\n")
            out.flush()

    def _write_report(self) -> None:
        """Write report.html; a failure is logged and changes neither summary.json nor the exit code."""
        try:
            path = write_report(self.run_dir.root)
        except Exception as error:
            log.error("report.html not written", run_dir=str(self.run_dir.root), error=repr(error))
        else:
            log.info("report written", report=str(path))


def _log_line(child: Child, stream: str, text: str, continued: bool) -> None:
    # A logger bound once per child and stream skips rebuilding the lazy
    # proxy's logger on every line, which matters at thousands of lines a second.
    key = (child.name, child.pid, stream)
    bound = _line_loggers.get(key)
    if bound is None:
        bound = _line_loggers[key] = log.bind(process=child.name, pid=child.pid, stream=stream)
    if continued:
        bound.info("output", line=text, continued=True)
    else:
        bound.info("output", line=text)


_line_loggers: dict[tuple[str, int | None, str], Any] = {}


async def _in_thread(function: Callable[[], T]) -> T:
    """Run `function` in a daemon thread, so an interrupted run need not wait for it."""
    loop = asyncio.get_running_loop()
    future: Future[T] = Future()

    def target() -> None:
        try:
            future.set_result(function())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=target, name="prepare-data", daemon=True).start()
    return await asyncio.wrap_future(future, loop=loop)
