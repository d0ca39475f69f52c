"""Run the supervisor's whole run (signals, timeout, summary) with tiny children.

Usage: python -m tests.supervisor.driver SPEC.json -- SUPERVISOR OPTIONS...
SPEC.json contains {"server": argv, "clients": [[name, argv], ...]}. Without a
"server" entry the real server workload runs, built from the options, and
"{address}" in a client's argv becomes its address. The data step is
skipped and the plan replaced; everything else is the real code path of
`python -m supervisor`.
"""

import json
import sys
from pathlib import Path
from typing import Any

from supervisor.app import Run
from supervisor.cli import execute
from supervisor.config import parse_config
from supervisor.plan import Plan, ProcessSpec, WorkloadSettings, build_plan
from supervisor.rundir import create_run_dir


def main() -> int:
    spec_path, separator, *options = sys.argv[1:]
    assert separator == "--"
    spec = json.loads(Path(spec_path).read_text())
    config = parse_config(options)
    assert config.run_dir is not None and config.port is not None
    run_dir = create_run_dir(config.run_dir)

    async def no_data() -> list[Any]:
        return []

    def tiny_plan(settings: WorkloadSettings, _partitions: Any, history: Path) -> Plan:
        real = build_plan(settings, [], history)
        server = real.server
        if "server" in spec:
            server = ProcessSpec("server", spec["server"], "server", ready_port=config.port)
        address = f"127.0.0.1:{config.port}"
        clients = [
            ProcessSpec(name, [part.replace("{address}", address) for part in argv], "client", env=real.server.env)
            for name, argv in spec["clients"]
        ]
        return Plan(server=server, clients=clients, host="127.0.0.1")

    def customize(run: Run) -> None:
        run._prepare_data = no_data  # type: ignore[method-assign]
        run.build_plan = tiny_plan  # type: ignore[assignment]

    return execute(config, run_dir, customize)


if __name__ == "__main__":
    sys.exit(main())
