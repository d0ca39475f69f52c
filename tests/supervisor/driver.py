"""Run the supervisor's whole run (signals, timeout, summary) with tiny children.

Usage: python -m tests.supervisor.driver SPEC.json -- SUPERVISOR OPTIONS...
SPEC.json holds {"server": argv, "clients": [[name, argv], ...]}. Without a
"server" entry the real server workload runs, built from the options, and
"{address}" in a client's argv becomes its address. The data step is
skipped and the plan replaced; everything else is the real code path of
`python -m supervisor`.
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from supervisor.app import Run
from supervisor.config import parse_config
from supervisor.output import configure_logging
from supervisor.plan import Plan, ProcessSpec, WorkloadSettings, build_plan
from supervisor.rundir import create_run_dir


def main() -> int:
    spec_path, separator, *options = sys.argv[1:]
    assert separator == "--"
    spec = json.loads(Path(spec_path).read_text())
    config = parse_config(options)
    assert config.run_dir is not None and config.port is not None
    run_dir = create_run_dir(config.run_dir)
    display, _renderer = configure_logging(config.log_format, sys.stdout, 10, live=False)
    run = Run(config, run_dir, display, colour=False)

    async def no_data() -> list[Any]:
        return []

    def tiny_plan(settings: WorkloadSettings, _partitions: Any, history: Path) -> Plan:
        real = build_plan(settings, [], history)
        server = (
            ProcessSpec("server", spec["server"], "server", ready_port=config.port) if "server" in spec else real.server
        )
        address = f"127.0.0.1:{config.port}"
        clients = [
            ProcessSpec(name, [part.replace("{address}", address) for part in argv], "client", env=real.server.env)
            for name, argv in spec["clients"]
        ]
        return Plan(server=server, clients=clients, host="127.0.0.1")

    run._prepare_data = no_data  # type: ignore[method-assign]
    run.build_plan = tiny_plan  # type: ignore[assignment]
    return asyncio.run(run.execute())


if __name__ == "__main__":
    sys.exit(main())
