"""summary.json: figures per process, restarts included."""

from pathlib import Path

from supervisor.child import Child
from supervisor.exitcodes import ExitCode
from supervisor.fleet import Outcome
from supervisor.plan import ProcessSpec
from supervisor.resources import ResourceSampler, Usage
from supervisor.summary import build_summary


def finished_child(tmp_path: Path, name: str, pid: int, code: int) -> Child:
    child = Child(ProcessSpec(name, ["true"], "client"), tmp_path, lambda *_args: None)
    child.pid = pid
    child.returncode = code
    return child


def test_restarted_client_keeps_own_figures(tmp_path: Path) -> None:
    first = finished_child(tmp_path, "client-0", 101, -9)
    second = finished_child(tmp_path, "client-0", 202, 0)
    sampler = ResourceSampler()
    sampler.usage[101] = Usage(name="client-0", pid=101, peak_rss_bytes=1000, cpu_seconds=5.0)
    sampler.usage[202] = Usage(name="client-0", pid=202, peak_rss_bytes=3000, cpu_seconds=7.0)

    summary = build_summary(config={"rounds": 1}, outcome=Outcome(ExitCode.OK, "ok"), started_at=0.0,
                            children=[first, second], sampler=sampler, data=None, history=None,
                            port=None)  # fmt: skip

    by_pid = {process["pid"]: process for process in summary["processes"]}
    assert by_pid[101]["peak_rss_bytes"] == 1000
    assert by_pid[101]["cpu_seconds"] == 5.0
    assert by_pid[101]["signal"] == 9
    assert by_pid[202]["peak_rss_bytes"] == 3000
    assert by_pid[202]["cpu_seconds"] == 7.0
    assert by_pid[202]["exit_code"] == 0
