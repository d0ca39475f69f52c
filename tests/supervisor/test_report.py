"""report.html: content, escaping, size, the `report` command, and a real headless browser.

Every test writes its own small run folder. The browser tests need
Debian's chromium (`apt-get install chromium`; .ci/run installs it) and are
skipped where it is missing.
"""

import csv
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli import main
from supervisor.readiness import free_port
from supervisor.report import PALETTE, REPORT_NAME, read_samples, write_report
from supervisor.report_charts import MAX_POINTS, downsample, split_at_gaps
from tests.supervisor import children

PROJECT = Path(__file__).resolve().parents[2]
MIB = 2**20
STARTED_AT = 1_700_000_000.0
HOSTILE = "<script>alert(1)</script>"


# --- Run folders --------------------------------------------------------------


def process_entry(name: str, pid: int, **fields: Any) -> dict[str, Any]:
    entry = {
        "name": name, "role": "server" if name == "server" else "client", "pid": pid,
        "argv": ["python", "-m", f"workloads.{name}"], "exit_code": 0, "signal": None, "status": "exit code 0",
        "stopped_by_supervisor": False, "started_at": STARTED_AT + 1, "ended_at": STARTED_AT + 100,
        "peak_rss_bytes": 300 * MIB, "cpu_seconds": 12.5,
    }  # fmt: skip
    entry.update(fields)
    return entry


def make_run(
    root: Path,
    names: tuple[str, ...] = ("server", "client-0", "client-1"),
    samples: int = 60,
    interval_s: float = 2.0,
    outcome: dict[str, Any] | None = None,
    gpu_columns: bool = False,
    **summary_fields: Any,
) -> Path:
    """Write a small finished run folder: summary.json, history.json, resources.csv and logs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    rounds = [
        {"round": 1, "started_at": STARTED_AT + 20, "ended_at": STARTED_AT + 70, "duration_s": 50.0, "loss": 2.3,
         "accuracy": 0.1, "fit_results": 2, "fit_failures": 0, "evaluate_results": 2, "evaluate_failures": 0},
        {"round": 2, "started_at": STARTED_AT + 70, "ended_at": STARTED_AT + 110, "duration_s": 40.0, "loss": 1.9,
         "accuracy": 0.3, "fit_results": 2, "fit_failures": 0, "evaluate_results": 2, "evaluate_failures": 0},
    ]  # fmt: skip
    summary: dict[str, Any] = {
        "outcome": outcome or {"status": "succeeded", "exit_code": 0, "reason": "every process finished cleanly",
                               "failed_process": None},
        "started_at": STARTED_AT, "ended_at": STARTED_AT + 125, "wall_seconds": 125.0,
        "config": {"clients": len(names) - 1, "rounds": 2, "monitor_interval_s": interval_s, "dataset": "synthetic",
                   "environment": {"python": "3.11"}},
        "port": 40000, "data": {"dataset": "synthetic", "origin": "generated", "train_per_client": 64,
                                "test_per_client": 16},
        "rounds": rounds, "rounds_completed": 2,
        "processes": [process_entry(name, 1000 + index) for index, name in enumerate(names)],
        "lost_clients": [], "injected_faults": [],
    }  # fmt: skip
    summary.update(summary_fields)
    (root / "summary.json").write_text(json.dumps(summary))
    (root / "history.json").write_text(json.dumps({"rounds": rounds, "num_rounds": 2, "complete": True}))

    columns = ["time", "process", "pid", "cpu_percent", "rss_bytes", "processes"]
    if gpu_columns:
        columns += ["gpu_memory_bytes", "gpu_percent"]
    with (root / "resources.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for step in range(samples):
            stamp = STARTED_AT + 2 + step * interval_s
            for index, name in enumerate(names):
                # Distinct, varying values per process, so every line is visible on its own.
                cpu = 10 + 25 * index + 15 * ((step + index) % 4)
                rss = (100 + 120 * index + step) * MIB
                row: list[Any] = [f"{stamp:.3f}", name, 1000 + index, f"{cpu:.1f}", rss, 1]
                if gpu_columns:
                    row += [(200 + 50 * index) * MIB, f"{5 * index + step % 7:.1f}"]
                writer.writerow(row)
            machine: list[Any] = [f"{stamp:.3f}", "machine", "", f"{40 + step % 30:.1f}", (2000 + 5 * step) * MIB, ""]
            if gpu_columns:
                machine += [(1000 + step) * MIB, "55.0"]
            writer.writerow(machine)
    return root


def polylines(page: str, chart: str) -> list[str]:
    """Return the points attribute of every polyline in the SVG whose data-chart is `chart`."""
    match = re.search(rf'<svg class="chart" data-chart="{chart}".*?</svg>', page, re.DOTALL)
    assert match, f"chart {chart} missing"
    return re.findall(r'<polyline points="([^"]*)"', match.group(0))


# --- Content ------------------------------------------------------------------


def test_report_has_every_section(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run")
    path = write_report(root)
    assert path == root / REPORT_NAME
    page = path.read_text()

    for heading in ("CPU and memory", "Rounds", "Processes", "Configuration"):
        assert f"<h2>{heading}</h2>" in page
    assert '<span class="status succeeded">succeeded</span>' in page
    assert "every process finished cleanly" in page
    assert "synthetic from generated, 64 train / 16 test examples per client" in page
    for name in ("server", "client-0", "client-1"):
        assert f'data-series="{name}"' in page
    assert len(polylines(page, "cpu")) == 3
    assert len(polylines(page, "memory")) == 3
    assert len(polylines(page, "machine-cpu")) == 1
    assert len(polylines(page, "machine-memory")) == 1
    assert len(polylines(page, "loss")) == 1
    assert len(polylines(page, "accuracy")) == 1
    assert 'data-chart="gpu-memory"' not in page
    # Two rounds, so two shaded bands on each of the four time charts.
    assert page.count('class="band') == 8
    assert "<td class=num>2.3000</td><td class=num>0.1000</td>" in page
    assert "environment.python" in page


def test_report_marks_lost_clients_and_faults(tmp_path: Path) -> None:
    root = make_run(
        tmp_path / "run",
        outcome={"status": "failed", "exit_code": 1, "reason": "client-1 exited with code 1",
                 "failed_process": "client-1"},
        lost_clients=[{"name": "client-0", "pid": 1001, "lost_in_round": 1, "status": "SIGKILL",
                       "injected": "kill", "restarted": True, "rounds_missed": [1]}],
        injected_faults=[{"fault": "kill", "client": "client-0", "round": 1, "at": STARTED_AT + 30}],
    )  # fmt: skip
    summary = json.loads((root / "summary.json").read_text())
    summary["processes"][2].update(exit_code=1, status="exit code 1")
    (root / "summary.json").write_text(json.dumps(summary))
    (root / "logs" / "client-1.stderr.log").write_bytes(b"".join(b"line %d\n" % n for n in range(100)) + b"boom \xff")

    page = write_report(root).read_text()
    assert '<span class="status failed">failed</span>' in page
    assert "<code>client-1</code>" in page
    assert "<h3>Lost clients</h3>" in page
    assert "injected kill" in page
    assert "<h3>Injected faults</h3>" in page
    assert "<td class=num>0:30</td>" in page
    # One fault line on each of the four time charts.
    assert page.count('class="fault"') == 4
    assert "<h2>Logs of failed processes</h2>" in page
    assert "line 99\nboom \ufffd</pre>" in page
    assert "line 79\n" not in page
    assert "<tr class=bad><td>client-1</td>" in page


def test_report_escapes_run_text(tmp_path: Path) -> None:
    hostile_reason = '"><img src=x onerror=alert(1)>'
    root = make_run(
        tmp_path / "run",
        names=("server", HOSTILE),
        outcome={"status": HOSTILE, "exit_code": 1, "reason": hostile_reason, "failed_process": HOSTILE},
        lost_clients=[{"name": HOSTILE, "pid": 1, "lost_in_round": 1, "status": HOSTILE, "injected": HOSTILE,
                       "restarted": False, "rounds_missed": [1, 2]}],
        injected_faults=[{"fault": HOSTILE, "client": HOSTILE, "round": 1, "at": STARTED_AT + 30}],
    )  # fmt: skip
    summary = json.loads((root / "summary.json").read_text())
    summary["processes"][1]["argv"] = ["python", "</code><script>x()</script>"]
    summary["config"]["data_dir"] = "</dd><iframe src=https://example.invalid>"
    (root / "summary.json").write_text(json.dumps(summary))

    page = write_report(root).read_text()
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<iframe" not in page.lower()
    assert html.escape(HOSTILE) in page
    assert html.escape(hostile_reason) in page
    tags = TagCollector.collect(page)
    assert tags <= ALLOWED_TAGS, f"unexpected elements: {tags - ALLOWED_TAGS}"


def test_report_without_samples_or_rounds(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    summary = {
        "outcome": {"status": "invalid input", "exit_code": 2, "reason": "no CIFAR-10 found", "failed_process": None},
        "started_at": STARTED_AT, "ended_at": STARTED_AT + 1, "wall_seconds": 1.0, "config": {"rounds": 3},
        "rounds": [], "processes": [],
    }  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary))
    page = write_report(root).read_text()
    assert "No resource samples" in page
    assert "No round finished." in page
    assert "No process was started." in page
    assert "no CIFAR-10 found" in page


def test_report_reads_rounds_from_history(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run", rounds=[], rounds_completed=0)
    page = write_report(root).read_text()
    assert len(polylines(page, "loss")) == 1
    assert "<td class=num>1.9000</td>" in page


def test_report_skips_bad_csv_rows(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run", samples=5)
    with (root / "resources.csv").open("a") as handle:
        handle.write("not-a-time,server,1,2,3,1\n")
        handle.write(f"{STARTED_AT + 20},server,1000,nan,oops,1\n")
        handle.write("\n")
    samples = read_samples(root / "resources.csv", STARTED_AT)
    assert samples.skipped_rows == 1
    assert len(samples.points("server", "cpu_percent")) == 5
    page = write_report(root).read_text()
    assert "1 rows of resources.csv did not parse" in page


def test_report_gpu_charts(tmp_path: Path) -> None:
    gpu = {"devices": [{"index": 0, "name": "Fake GPU", "memory_total_bytes": 16 * 2**30}],
           "processes": {"client-0": {"peak_gpu_memory_bytes": 250 * MIB, "peak_gpu_percent": 11.0}}}  # fmt: skip
    root = make_run(tmp_path / "run", gpu_columns=True, gpu=gpu)
    page = write_report(root).read_text()
    # Three processes plus the machine's total in the memory chart.
    assert len(polylines(page, "gpu-memory")) == 4
    assert len(polylines(page, "gpu-percent")) == 3
    assert "Fake GPU (16.0 GiB)" in page
    assert "<th class=num>peak GPU memory</th>" in page
    assert "<td class=num>250.0 MiB</td>" in page


def test_restarted_process_line_breaks_at_gap(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run", samples=40)
    rows = (root / "resources.csv").read_text().splitlines()
    # Drop client-1's samples 10 to 19: it was down and came back under the same name.
    kept = [rows[0]] + [
        row for index, row in enumerate(rows[1:]) if not (row.split(",")[1] == "client-1" and 10 <= index // 4 < 20)
    ]
    (root / "resources.csv").write_text("\n".join(kept) + "\n")
    page = write_report(root).read_text()
    series = re.findall(r'<polyline points="[^"]*"[^>]*data-series="([^"]+)"', page.split('data-chart="memory"')[0])
    assert series.count("client-1") == 2
    assert series.count("client-0") == 1


def test_long_run_stays_small(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run", names=tuple(["server"] + [f"client-{n}" for n in range(10)]), samples=5_000)
    page = write_report(root).read_text()
    for chart in ("cpu", "memory", "machine-cpu", "machine-memory"):
        for points in polylines(page, chart):
            assert len(points.split()) <= MAX_POINTS
    size = len(page.encode())
    assert size < 1_500_000, f"report is {size} bytes"


# --- Series reduction and gaps ------------------------------------------------


def test_downsample_keeps_extremes() -> None:
    points = [(float(index), float(index % 97)) for index in range(50_000)]
    points[31_337] = (31_337.0, 1e6)
    points[12_345] = (12_345.0, -5.0)
    reduced = downsample(points, 1000)
    assert len(reduced) <= 1000
    assert (31_337.0, 1e6) in reduced
    assert (12_345.0, -5.0) in reduced
    assert [x for x, _ in reduced] == sorted(x for x, _ in reduced)


def test_downsample_short_series_unchanged() -> None:
    points = [(0.0, 1.0), (1.0, 2.0)]
    assert downsample(points, 1000) == points


def test_split_at_gaps() -> None:
    points = [(0.0, 1.0), (2.0, 1.0), (4.0, 1.0), (20.0, 1.0), (22.0, 1.0)]
    assert split_at_gaps(points, 6.0) == [points[:3], points[3:]]
    assert split_at_gaps([], 6.0) == []


# --- Self-containment -----------------------------------------------------------


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "p", "section", "span", "div",
    "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "code", "pre", "details", "summary",
    "svg", "line", "polyline", "circle", "rect", "text",
}  # fmt: skip
# Attributes through which a page can load or navigate to something.
URL_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "formaction", "data", "poster", "background",
                  "ping", "manifest", "codebase", "cite", "longdesc", "usemap", "archive", "profile"}  # fmt: skip


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.references: list[str] = []
        self.csp: str | None = None
        self._in_style = False

    @classmethod
    def collect(cls, page: str) -> set[str]:
        collector = cls()
        collector.feed(page)
        return collector.tags

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self._in_style = tag == "style"
        values = dict(attrs)
        if tag == "meta" and (values.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = values.get("content")
        for name, value in attrs:
            if name in URL_ATTRIBUTES:
                self.references.append(f"{tag} {name}={value}")
            if name == "style" and value and re.search(r"url\(|@import", value, re.IGNORECASE):
                self.references.append(f"{tag} style={value}")

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and re.search(r"url\(|@import", data, re.IGNORECASE):
            self.references.append(f"style: {data.strip()[:80]}")


def external_references(page: str) -> list[str]:
    """Return every way `page` could load or navigate to another resource; a self-contained page has none."""
    collector = TagCollector()
    collector.feed(page)
    return collector.references


def test_reference_check_catches_loads() -> None:
    bad_pages = [
        '<img src="https://example.invalid/a.png">',
        '<link rel="stylesheet" href="https://example.invalid/a.css">',
        '<script src="//example.invalid/a.js"></script>',
        '<div style="background: url(http://example.invalid/a.png)"></div>',
        "<style>@import 'http://example.invalid/a.css';</style>",
        '<svg><image xlink:href="http://example.invalid/a.png"/></svg>',
    ]
    for page in bad_pages:
        assert external_references(page), page


def test_report_is_self_contained(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run", gpu_columns=True)
    page = write_report(root).read_text()
    assert external_references(page) == []
    collector = TagCollector()
    collector.feed(page)
    assert collector.csp is not None and "default-src 'none'" in collector.csp
    assert collector.tags <= ALLOWED_TAGS
    assert "http://" not in page
    assert "https://" not in page


# --- The report command and the end of a run -------------------------------------


def test_report_command_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_run(tmp_path / "run")
    assert main(["report", str(root)]) == 0
    assert capsys.readouterr().out.strip() == str(root / REPORT_NAME)
    assert (root / REPORT_NAME).stat().st_size > 10_000


def test_report_command_without_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"error: {tmp_path} has no summary.json" in error
    assert not (tmp_path / REPORT_NAME).exists()


def test_report_command_invalid_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "summary.json").write_text("[1, 2")
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a valid summary" in capsys.readouterr().err


def test_report_command_as_module(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run")
    result = subprocess.run([sys.executable, "-m", "supervisor", "report", str(root)], cwd=PROJECT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(root / REPORT_NAME)


def run_driver(tmp_path: Path, run_dir: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run the supervisor's real code path with a tiny server and one tiny client."""
    port = free_port("127.0.0.1")
    spec = {"server": children.listening_server(port, run_s=1.0),
            "clients": [["client-0", children.client_until_server_stops(port)]]}  # fmt: skip
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    command = [sys.executable, "-m", "tests.supervisor.driver", str(spec_file), "--", "--clients", "1",
               "--fraction-fit", "1", "--dataset", "synthetic", "--port", str(port), "--run-dir", str(run_dir),
               "--log-format", "json", "--grace", "1", "--timeout", "60", "--monitor-interval", "0.2"]  # fmt: skip
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, events


def test_run_writes_report(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, events = run_driver(tmp_path, run_dir)
    assert code == 0
    page = (run_dir / REPORT_NAME).read_text()
    assert '<span class="status succeeded">succeeded</span>' in page
    assert 'data-series="client-0"' in page
    assert [event["report"] for event in events if event["event"] == "report written"] == [str(run_dir / REPORT_NAME)]


def test_report_failure_keeps_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # A folder where report.html should go makes the final rename fail.
    (run_dir / REPORT_NAME).mkdir(parents=True)
    code, events = run_driver(tmp_path, run_dir)
    assert code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outcome"]["exit_code"] == 0
    errors = [event for event in events if event["event"] == "report.html not written"]
    assert len(errors) == 1
    assert errors[0]["level"] == "error"
    assert not list(run_dir.glob(f".{REPORT_NAME}.*")), "temporary file left behind"


# --- A real headless browser --------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--disable-extensions", "--disable-default-apps",
    # Chromium still makes a few requests of its own (component updates, sign-in);
    # no host name resolves, so none of them leaves the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]  # fmt: skip
# Chromium's initiator for requests the browser makes of its own accord, not for a page.
BROWSER_INITIATOR = "not an origin"


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium); the browser checks need it")
    return CHROMIUM


# Runs the command in argv, then waits for every process that it left behind.
# As a child subreaper it adopts chromium's helper processes that outlive the
# browser, so it exits only once all of them have exited and been reaped.
BROWSER_REAPER = """
import os, subprocess, sys
from supervisor.teardown import become_subreaper
become_subreaper()
code = subprocess.call(sys.argv[1:])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
sys.exit(code)
"""


def run_browser(browser: str, tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    """Run headless chromium once, through BROWSER_REAPER, so that no process of it outlives this call."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [sys.executable, "-c", BROWSER_REAPER, browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               *arguments]  # fmt: skip
    with subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as reaper:  # fmt: skip
        try:
            stdout, stderr = reaper.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(reaper.pid, signal.SIGKILL)
            reaper.communicate()
            raise
    return subprocess.CompletedProcess(command, reaper.returncode, stdout, stderr)


def page_requests(net_log: Path) -> list[str]:
    """Return the URL of every request in a chromium NetLog that a page made (the browser's own are left out)."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start_job and "url" in params and params.get("initiator") != BROWSER_INITIATOR:
            urls.append(params["url"])
    return urls


class ProbeServer:
    """An HTTP server on loopback that records the paths requested from it."""

    def __init__(self) -> None:
        paths = self.paths = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def probe() -> Iterator[ProbeServer]:
    server = ProbeServer()
    yield server
    server.close()


def test_browser_loads_report_without_network(chromium: str, tmp_path: Path) -> None:
    root = make_run(tmp_path / "run")
    report = write_report(root)
    net_log = tmp_path / "netlog.json"
    result = run_browser(chromium, tmp_path, f"--log-net-log={net_log}", "--dump-dom", report.as_uri())
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    assert page_requests(net_log) == []

    dom = result.stdout.decode()
    # The browser parsed every chart and line: the DOM after load has them all.
    assert len(polylines(dom, "cpu")) == 3
    assert len(polylines(dom, "memory")) == 3
    assert len(polylines(dom, "machine-cpu")) == 1
    assert len(polylines(dom, "loss")) == 1


def test_browser_net_log_catches_page_request(chromium: str, tmp_path: Path, probe: ProbeServer) -> None:
    """The NetLog check above can fail: a page that loads an image from loopback shows up in it."""
    page = tmp_path / "control.html"
    page.write_text(f'<!DOCTYPE html><html><body><img src="{probe.url}/probe.png"></body></html>')
    net_log = tmp_path / "netlog.json"
    result = run_browser(chromium, tmp_path, f"--log-net-log={net_log}", "--dump-dom", page.as_uri())
    assert result.returncode == 0
    assert probe.paths == ["/probe.png"]
    assert page_requests(net_log) == [f"{probe.url}/probe.png"]


def test_browser_policy_blocks_added_load(chromium: str, tmp_path: Path, probe: ProbeServer) -> None:
    """The report's Content-Security-Policy stops a load even if one is added to the page."""
    root = make_run(tmp_path / "run")
    page = write_report(root).read_text().replace("<main>", f'<main><img src="{probe.url}/blocked.png">', 1)
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page)
    net_log = tmp_path / "netlog.json"
    result = run_browser(chromium, tmp_path, f"--log-net-log={net_log}", "--dump-dom", tampered.as_uri())
    assert result.returncode == 0
    assert probe.paths == []
    assert page_requests(net_log) == []


def colour_pixels(png: Path, colours: list[str]) -> dict[str, int]:
    """Count the pixels of a screenshot within a small distance of each colour (lines are anti-aliased)."""
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed (pip install -e '.[test]')")
    numpy = pytest.importorskip("numpy")
    pixels = numpy.asarray(image.open(png).convert("RGB")).astype(int)
    counts = {}
    for colour in colours:
        rgb = numpy.array([int(colour[index : index + 2], 16) for index in (1, 3, 5)])
        counts[colour] = int((numpy.abs(pixels - rgb).sum(axis=2) <= 60).sum())
    return counts


def test_browser_draws_charts(chromium: str, tmp_path: Path) -> None:
    root = make_run(tmp_path / "run")
    report = write_report(root)
    # The same page with every polyline removed: only the legend keeps the colours.
    stripped = tmp_path / "no-lines.html"
    stripped.write_text(re.sub(r"<polyline .*?</polyline>", "", report.read_text(), flags=re.DOTALL))

    colours = PALETTE[:3]
    counts = {}
    for name, page in (("report", report), ("stripped", stripped)):
        png = tmp_path / f"{name}.png"
        result = run_browser(chromium, tmp_path, f"--screenshot={png}", "--window-size=1280,2600", page.as_uri())
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
        counts[name] = colour_pixels(png, colours)

    for colour in colours:
        # Each process's line runs across the CPU and the memory chart, about
        # 2 x 1000 pixels wide. The legend and the outcome badge are in both pages.
        assert counts["report"][colour] - counts["stripped"][colour] >= 1000, (colour, counts)
