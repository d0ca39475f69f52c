"""Command line: parse, check, create the run folder, run, return the exit code."""

import asyncio
import sys
from pathlib import Path

from supervisor.app import Run
from supervisor.config import ConfigError, default_run_dir, parse_config
from supervisor.exitcodes import ExitCode
from supervisor.output import SUPERVISOR, configure_logging
from supervisor.report import report_main
from supervisor.rundir import RunDirError, create_run_dir


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

    name_width = max(len(SUPERVISOR), len(f"client-{config.clients - 1}"))
    display, renderer = configure_logging(config.log_format, sys.stdout, name_width, live=config.live)
    run = Run(config, run_dir, display, colour=bool(renderer and renderer.colour))
    display.set_redraw_scheduler(run.schedule_redraw)
    return asyncio.run(run.execute())
