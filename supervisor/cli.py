"""Command line: parse, check, create the run folder, run, return the exit code."""

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from supervisor.app import Run
from supervisor.config import Config, ConfigError, default_run_dir, parse_config
from supervisor.exitcodes import ExitCode
from supervisor.output import SUPERVISOR, SUPERVISOR_EVENTS, configure_logging
from supervisor.report import report_main
from supervisor.rundir import RunDir, RunDirError, create_run_dir


def main(argv: list[str] | None = None) -> int:
    """Run `python -m supervisor` with `argv` and return its exit code.

    `python -m supervisor report RUN_DIR` writes a run folder's report.html again.
    """
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["report"]:
        return report_main(arguments[1:])

    try:
        config = parse_config(argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return int(ExitCode.INVALID_INPUT)

    try:
        if config.run_dir is None:
            run_dir = create_run_dir(default_run_dir(Path("runs")), create_parents=True)
        else:
            run_dir = create_run_dir(config.run_dir)
    except RunDirError as error:
        print(f"error: {error}", file=sys.stderr)
        return int(ExitCode.INVALID_INPUT)

    return execute(config, run_dir)


def execute(config: Config, run_dir: RunDir, customize: Callable[[Run], None] | None = None) -> int:
    """Configure output, run, and release the run folder; return the exit code.

    `customize` may change the run before it starts (tests replace the plan).
    """
    name_width = max(len(SUPERVISOR), len(f"client-{config.clients - 1}"))
    display, renderer = configure_logging(config.log_format, sys.stdout, name_width, live=config.live)
    SUPERVISOR_EVENTS.open(run_dir.supervisor_log)
    run = Run(config, run_dir, display, colour=bool(renderer and renderer.colour))
    display.set_redraw_scheduler(run.schedule_redraw)
    display.set_flush_scheduler(run.schedule_flush)
    if customize is not None:
        customize(run)
    try:
        return asyncio.run(run.execute())
    finally:
        display.flush()
        SUPERVISOR_EVENTS.close()
        run_dir.unlock()
        if display.broken:
            # Python flushes stdout at exit; a closed pipe would print a traceback.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
