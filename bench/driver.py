"""Run the supervisor's whole run (signals, timeout, teardown, summary) with tiny children from a spec file.

Usage: python -m bench.driver SPEC.json -- SUPERVISOR OPTIONS...
SPEC.json contains {"server": argv, "clients": [[name, argv], ...]}. The data
step is skipped and the plan replaced; the rest is the code path of
`python -m supervisor`. --port and --run-dir are required.
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from supervisor.app import Run
from supervisor.config import parse_config
from supervisor.output import configure_logging
from supervisor.plan import Plan, ProcessSpec
from supervisor.rundir import create_run_dir


def main() -> int:
    spec_path, separator, *options = sys.argv[1:]
    if separator != "--":
        print("usage: python -m bench.driver SPEC.json -- SUPERVISOR OPTIONS...", file=sys.stderr)
        return 2
    spec = json.loads(Path(spec_path).read_text())
    config = parse_config(options)
    if config.run_dir is None or config.port is None:
        print("error: --run-dir and --port are required", file=sys.stderr)
        return 2
    run_dir = create_run_dir(config.run_dir)
    display, _renderer = configure_logging(config.log_format, sys.stdout, 10, live=False)
    run = Run(config, run_dir, display, colour=False)

    async def no_data() -> list[Any]:
        return []

    def tiny_plan(*_args: Any) -> Plan:
        return Plan(
            server=ProcessSpec("server", spec["server"], "server", ready_port=config.port),
            clients=[ProcessSpec(name, argv, "client") for name, argv in spec["clients"]],
            host="127.0.0.1",
        )

    run._prepare_data = no_data  # type: ignore[method-assign]
    run.build_plan = tiny_plan  # type: ignore[assignment]
    return asyncio.run(run.execute())


if __name__ == "__main__":
    sys.exit(main())
