"""report.html: one self-contained page that describes a finished run.

The page shows the outcome and configuration, CPU and memory over time for
every process and for the machine with the rounds marked, loss and accuracy
per round, and the per-process table. It is built only from the run folder
(summary.json, history.json, resources.csv, logs/), so
`python -m supervisor report RUN_DIR` can build it again at any time.

The charts are inline SVG written here in Python rather than drawn by a
script: the page needs no JavaScript, looks the same with scripting off,
and the tests can read every drawn line in the HTML itself. The page
refers to nothing outside itself, and its Content-Security-Policy
(default-src 'none') makes the browser block any load that a later edit
might add. Every string from the run folder is escaped, because process
names, reasons and argv are untrusted text.
"""

import argparse
import csv
import html
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.output import format_bytes, format_duration
from supervisor.report_charts import Line, Marks, Point, format_clock, round_chart, time_chart
from supervisor.rundir import read_json

REPORT_NAME = "report.html"
# Lines of a failed process's stderr log shown in the report.
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 64 * 1024

# Twelve distinguishable line colours; after twelve processes they repeat dashed.
PALETTE = [
    "#1f6fb4", "#e8710a", "#1a9e3a", "#c8202b", "#7b4fb5", "#8c5a3c",
    "#d0479e", "#5f6b73", "#a8a21a", "#14a3b8", "#0b3d91", "#f2a900",
]  # fmt: skip
MACHINE_COLOUR = "#30343a"
# Loss and accuracy are drawn in a colour that no process line uses.
ROUND_COLOUR = "#30343a"
DASHES = ["", "6 3", "2 3"]


class ReportError(Exception):
    """The run folder cannot be read or the report cannot be written; the message names the fix."""


# --- Reading the run folder ---------------------------------------------------


@dataclass
class Samples:
    """The rows of resources.csv as points (seconds since the run started, value) per name and column."""

    series: dict[str, dict[str, list[Point]]] = field(default_factory=dict)
    skipped_rows: int = 0

    def points(self, name: str, column: str) -> list[Point]:
        return self.series.get(name, {}).get(column, [])

    def has(self, column: str) -> bool:
        return any(columns.get(column) for columns in self.series.values())


_SAMPLE_COLUMNS = ("cpu_percent", "rss_bytes", "gpu_memory_bytes", "gpu_percent")


def read_samples(path: Path, origin: float | None) -> Samples:
    """Read resources.csv; rows without a valid time and process name are counted and skipped.

    Times become seconds since `origin`, or since the first row where
    `origin` is None. An empty or non-numeric cell leaves that one value
    out. A missing file, or one without the time and process columns, gives
    no samples.
    """
    samples = Samples()
    try:
        handle = path.open(newline="", encoding="utf-8", errors="replace")
    except OSError:
        return samples
    with handle:
        reader = csv.reader(handle)
        position = {name: index for index, name in enumerate(next(reader, []))}
        time_at, name_at = position.get("time"), position.get("process")
        if time_at is None or name_at is None:
            return samples
        present_columns = [(column, position[column]) for column in _SAMPLE_COLUMNS if column in position]
        for row in reader:
            if not row:
                continue
            try:
                stamp, name = float(row[time_at]), row[name_at]
            except (IndexError, ValueError):
                stamp, name = math.nan, ""
            if not name or not math.isfinite(stamp):
                samples.skipped_rows += 1
                continue
            if origin is None:
                origin = stamp
            columns = samples.series.setdefault(name, {})
            for column, index in present_columns:
                try:
                    value = float(row[index])
                except (IndexError, ValueError):
                    continue
                if math.isfinite(value):
                    columns.setdefault(column, []).append((stamp - origin, value))
    return samples


def write_report(root: Path) -> Path:
    """Build report.html in the run folder `root` and return its path.

    Raises ReportError if summary.json is missing or invalid, or the file
    cannot be written. The file is replaced in one step, so a reader never
    sees half a report.
    """
    summary_path = root / "summary.json"
    if not summary_path.is_file():
        raise ReportError(f"{root} has no summary.json; pass the folder of a finished run")
    summary = read_json(summary_path)
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path} is not a valid summary (expected a JSON object)")
    rounds = _list(summary.get("rounds"))
    if not rounds:
        history = read_json(root / "history.json")
        rounds = _list(history.get("rounds")) if isinstance(history, dict) else []
    samples = read_samples(root / "resources.csv", _finite(summary.get("started_at")))
    page = render_report(summary, rounds, samples, root)

    target = root / REPORT_NAME
    try:
        fd, temp = tempfile.mkstemp(dir=root, prefix=f".{REPORT_NAME}.")
    except OSError as error:
        raise ReportError(f"cannot write {target}: {error.strerror or error}") from error
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise ReportError(f"cannot write {target}: {error.strerror or error}") from error
    return target


# --- The page -----------------------------------------------------------------------


_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2125; margin: 0;
       background: #f6f7f9; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d5d9de; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 14px 0 4px; }
.sub { color: #5b636b; margin: 0 0 12px; }
.card { background: #fff; border: 1px solid #dfe3e8; border-radius: 6px; padding: 12px 16px; margin: 10px 0; }
.status { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600; color: #fff; }
.succeeded { background: #1a7f37; } .failed, .timed-out { background: #c8202b; }
.interrupted, .invalid-input { background: #b35900; } .unknown { background: #5f6b73; }
table { border-collapse: collapse; background: #fff; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #e6e9ed; vertical-align: top; }
th { background: #eef0f3; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fdecee; }
code, pre { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: #f1f3f5; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.chart { width: 100%; height: auto; display: block; }
.chart text { font: 11px system-ui, sans-serif; fill: #4a5259; }
.chart .axis { fill: #6a737b; } .chart .roundlabel { fill: #2d5d8a; font-weight: 600; }
.chart .grid { stroke: #e3e6ea; stroke-width: 1; } .chart .axisline { stroke: #9aa3ab; }
.chart .band { fill: #e3eefa; } .chart .band.alt { fill: #eef0fb; }
.chart .roundline { stroke: #7fa7cf; stroke-dasharray: 3 3; }
.chart .fault { stroke: #8b0000; stroke-width: 2; stroke-dasharray: 5 3; }
.chart .faultlabel { fill: #8b0000; font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 4px 0 8px; }
.legend span { white-space: nowrap; }
.legend svg { vertical-align: middle; margin-right: 4px; }
.note { color: #5b636b; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.kv dt { color: #5b636b; } dl.kv dd { margin: 0; word-break: break-all; }
"""

# The browser enforces this before any load: nothing outside the page is
# fetched, and no script runs, whatever the page contains.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def render_report(summary: dict[str, Any], rounds: list[Any], samples: Samples, root: Path) -> str:
    """Return the whole HTML page for one run."""
    title = f"fl-supervisor run {root.name}"
    body = [
        f"<h1>{_escape(title)}</h1>",
        f'<p class="sub">{_escape(_time_range(summary))}</p>',
        _outcome_section(summary),
        _resources_section(summary, samples),
        _rounds_section(rounds),
        _processes_section(summary),
        _failure_logs_section(summary, root),
        _configuration_section(summary),
        f'<p class="note">Written by fl-supervisor at {_escape(_clock(time.time()))} from the files in '
        f"{_escape(str(root))}.</p>",
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        *body,
        "</main>",
        "</body>",
        "</html>",
        "",
    ])  # fmt: skip


def _outcome_section(summary: dict[str, Any]) -> str:
    outcome = _dict(summary.get("outcome"))
    status = str(outcome.get("status", "unknown"))
    known = ("succeeded", "failed", "timed out", "interrupted", "invalid input")
    css = status.replace(" ", "-") if status in known else "unknown"
    rows = [
        ("Outcome", f'<span class="status {css}">{_escape(status)}</span>'),
        ("Exit code", _escape(outcome.get("exit_code", "-"))),
        ("Reason", _escape(outcome.get("reason", "-"))),
    ]
    if outcome.get("failed_process"):
        rows.append(("Failed process", f"<code>{_escape(outcome['failed_process'])}</code>"))

    config = _dict(summary.get("config"))
    wall = _finite(summary.get("wall_seconds"))
    rows.append(("Wall time", _escape(format_duration(wall)) if wall is not None else "-"))
    rows.append(("Rounds", f"{_escape(summary.get('rounds_completed', len(_list(summary.get('rounds')))))} of "
                           f"{_escape(config.get('rounds', '-'))} completed"))  # fmt: skip
    rows.append(("Clients", _escape(config.get("clients", "-"))))

    data = _dict(summary.get("data"))
    if data:
        rows.append(("Data", _escape(
            f"{data.get('dataset', '-')} from {data.get('origin', '-')}, {data.get('train_per_client', '-')} train / "
            f"{data.get('test_per_client', '-')} test examples per client"
        )))  # fmt: skip
    gpu = _dict(summary.get("gpu"))
    if gpu:
        devices = ", ".join(
            f"{device.get('name', '?')} ({format_bytes(_finite(device.get('memory_total_bytes')) or 0)})"
            for device in map(_dict, _list(gpu.get("devices")))
        )  # fmt: skip
        rows.append(("GPUs", _escape(devices or "-")))

    parts = ['<section class="card">', _definition_list(rows), "</section>"]
    parts.append(_lost_clients(summary))
    parts.append(_injected_faults(summary))
    return "\n".join(part for part in parts if part)


def _lost_clients(summary: dict[str, Any]) -> str:
    lost = [_dict(entry) for entry in _list(summary.get("lost_clients"))]
    if not lost:
        return ""
    rows = []
    for entry in lost:
        cause = f"injected {entry['injected']}" if entry.get("injected") else "real failure"
        then = "restarted" if entry.get("restarted") else "not restarted"
        missed = ", ".join(str(number) for number in _list(entry.get("rounds_missed"))) or "-"
        rows.append([_escape(entry.get("name", "?")), _escape(entry.get("pid", "-")),
                     _escape(entry.get("lost_in_round", "-")), _escape(entry.get("status", "-")),
                     _escape(cause), _escape(then), _escape(missed)])  # fmt: skip
    header = ["client", "pid", "lost in round", "status", "cause", "then", "rounds missed"]
    return "<h3>Lost clients</h3>\n" + _table(header, rows, numeric={1, 2})


def _injected_faults(summary: dict[str, Any]) -> str:
    faults = [_dict(entry) for entry in _list(summary.get("injected_faults"))]
    if not faults:
        return ""
    started = _finite(summary.get("started_at"))
    rows = []
    for entry in faults:
        at = _finite(entry.get("at"))
        when = format_clock(at - started) if at is not None and started is not None else "-"
        rows.append([_escape(entry.get("fault", "?")), _escape(entry.get("client", "?")),
                     _escape(entry.get("round", "-")), _escape(when)])  # fmt: skip
    return "<h3>Injected faults</h3>\n" + _table(["fault", "client", "round", "at (m:ss)"], rows, numeric={2, 3})


def _resources_section(summary: dict[str, Any], samples: Samples) -> str:
    parts = ["<h2>CPU and memory</h2>"]
    if not samples.series:
        parts.append('<p class="note">No resource samples: resources.csv is missing or empty.</p>')
        return "\n".join(parts)

    config = _dict(summary.get("config"))
    interval = _finite(config.get("monitor_interval_s")) or 2.0
    # A process sampled every interval has no gap longer than this; a longer
    # one means that it was not running for a while.
    max_gap = 2.5 * interval + 1.0
    marks = _marks(summary)
    wall = _finite(summary.get("wall_seconds")) or 0.0
    x_max = max([wall, *(x for columns in samples.series.values() for points in columns.values() for x, _ in points)])

    names = [name for name in samples.series if name != "machine"]
    styles = {name: (PALETTE[index % len(PALETTE)], DASHES[index // len(PALETTE) % len(DASHES)])
              for index, name in enumerate(names)}  # fmt: skip

    def lines(column: str) -> list[Line]:
        return [Line(name, styles[name][0], samples.points(name, column), dash=styles[name][1])
                for name in names if samples.points(name, column)]  # fmt: skip

    def machine(column: str, label: str) -> list[Line]:
        points = samples.points("machine", column)
        return [Line(label, MACHINE_COLOUR, points)] if points else []

    parts.append(_legend([(name, *styles[name]) for name in names]))
    keys = []
    if marks.rounds:
        keys.append("Shaded bands are the rounds.")
    if marks.faults:
        keys.append("Dark red dashed lines are injected faults.")
    keys.append("Hover over a line, band or mark for its name.")
    parts.append(f'<p class="note">{" ".join(keys)}</p>')
    parts.append("<h3>CPU per process (100% = one core)</h3>")
    parts.append(time_chart("cpu", lines("cpu_percent"), marks, x_max, "percent", max_gap, y_floor=100))
    parts.append("<h3>Memory (RSS) per process</h3>")
    parts.append(time_chart("memory", lines("rss_bytes"), marks, x_max, "bytes", max_gap))
    parts.append('<div class="grid2"><div>')
    parts.append("<h3>Machine CPU (100% = all cores)</h3>")
    parts.append(time_chart("machine-cpu", machine("cpu_percent", "machine CPU"), marks, x_max, "percent",
                            max_gap, width=570, height=220, y_floor=100))  # fmt: skip
    parts.append("</div><div>")
    parts.append("<h3>Machine memory used</h3>")
    parts.append(time_chart("machine-memory", machine("rss_bytes", "machine memory used"), marks, x_max, "bytes",
                            max_gap, width=570, height=220))  # fmt: skip
    parts.append("</div></div>")
    if samples.has("gpu_memory_bytes") or samples.has("gpu_percent"):
        parts.append("<h3>GPU memory per process, and used on all GPUs (dark line)</h3>")
        parts.append(time_chart("gpu-memory", lines("gpu_memory_bytes") + machine("gpu_memory_bytes", "all GPUs"),
                                marks, x_max, "bytes", max_gap))  # fmt: skip
        parts.append("<h3>GPU utilisation per process (SM time; 100% = one GPU)</h3>")
        parts.append(time_chart("gpu-percent", lines("gpu_percent"), marks, x_max, "percent", max_gap, y_floor=100))
    if samples.skipped_rows:
        parts.append(f'<p class="note">{samples.skipped_rows} rows of resources.csv did not parse and were '
                     "skipped.</p>")  # fmt: skip
    return "\n".join(parts)


def _marks(summary: dict[str, Any]) -> Marks:
    started = _finite(summary.get("started_at"))
    marks = Marks()
    if started is None:
        return marks
    for entry in map(_dict, _list(summary.get("rounds"))):
        begin, end, number = _finite(entry.get("started_at")), _finite(entry.get("ended_at")), entry.get("round")
        if begin is not None and end is not None and isinstance(number, int):
            marks.rounds.append((number, begin - started, end - started))
    for entry in map(_dict, _list(summary.get("injected_faults"))):
        at = _finite(entry.get("at"))
        if at is not None:
            fault, client, number = entry.get("fault", "?"), entry.get("client", "?"), entry.get("round", "?")
            marks.faults.append((at - started, f"{fault} {client}", f"injected {fault} of {client} in round {number}"))
    return marks


def _legend(entries: list[tuple[str, str, str]]) -> str:
    items = []
    for name, colour, dash in entries:
        dash_attribute = f' stroke-dasharray="{dash}"' if dash else ""
        items.append(f'<span><svg width="22" height="6" aria-hidden="true"><line x1="0" x2="22" y1="3" y2="3" '
                     f'stroke="{colour}" stroke-width="3"{dash_attribute}/></svg>{_escape(name)}</span>')  # fmt: skip
    return '<div class="legend">' + "".join(items) + "</div>"


def _rounds_section(rounds: list[Any]) -> str:
    parts = ["<h2>Rounds</h2>"]
    entries = [entry for entry in map(_dict, rounds) if isinstance(entry.get("round"), int)]
    if not entries:
        parts.append('<p class="note">No round finished.</p>')
        return "\n".join(parts)
    numbers = [entry["round"] for entry in entries]
    loss = [(float(entry["round"]), value) for entry in entries if (value := _finite(entry.get("loss"))) is not None]
    accuracy = [(float(entry["round"]), value) for entry in entries
                if (value := _finite(entry.get("accuracy"))) is not None]  # fmt: skip
    parts.append('<div class="grid2"><div>')
    parts.append("<h3>Loss (mean over the evaluating clients)</h3>")
    parts.append(round_chart("loss", Line("loss", ROUND_COLOUR, loss), numbers, "number"))
    parts.append("</div><div>")
    parts.append("<h3>Accuracy</h3>")
    top = 1.0 if all(value <= 1.0 for _, value in accuracy) else 0.0
    parts.append(round_chart("accuracy", Line("accuracy", ROUND_COLOUR, accuracy), numbers, "number", y_floor=top))
    parts.append("</div></div>")
    rows = []
    for entry in entries:
        duration = _finite(entry.get("duration_s"))
        rows.append([
            _escape(entry["round"]), _number(entry.get("loss"), "{:.4f}"), _number(entry.get("accuracy"), "{:.4f}"),
            _escape(format_duration(duration)) if duration is not None else "-",
            _escape(f"{entry.get('fit_results', '-')} / {entry.get('fit_failures', '-')}"),
            _escape(f"{entry.get('evaluate_results', '-')} / {entry.get('evaluate_failures', '-')}"),
        ])  # fmt: skip
    header = ["round", "loss", "accuracy", "time", "fit results / failures", "evaluate results / failures"]
    parts.append(_table(header, rows, numeric={0, 1, 2, 3, 4, 5}))
    return "\n".join(parts)


def _processes_section(summary: dict[str, Any]) -> str:
    processes = [_dict(entry) for entry in _list(summary.get("processes"))]
    parts = ["<h2>Processes</h2>"]
    if not processes:
        parts.append('<p class="note">No process was started.</p>')
        return "\n".join(parts)

    gpu = _dict(_dict(summary.get("gpu")).get("processes"))
    header = ["process", "role", "pid", "status", "peak memory", "CPU s", "run time"]
    if gpu:
        header.append("peak GPU memory")
    rows = [_process_row(process, gpu) for process in processes]
    bad = {index for index, process in enumerate(processes) if _failed_on_its_own(process, summary)}
    parts.append(_table(header, rows, numeric={2, 4, 5, 6, 7}, bad_rows=bad))

    commands = "\n".join(
        f"<dt>{_escape(process.get('name', '?'))}</dt><dd><code>{_escape(_command(process.get('argv')))}</code></dd>"
        for process in processes
    )
    parts.append(f'<details><summary>Command lines</summary><dl class="kv">{commands}</dl></details>')
    return "\n".join(parts)


def _process_row(process: dict[str, Any], gpu: dict[str, Any]) -> list[str]:
    """Return one row of the process table as escaped cells; `gpu` maps names to GPU peaks, or is empty."""
    status = str(process.get("status", "-"))
    if process.get("stopped_by_supervisor"):
        status += " (stopped by the supervisor)"
    peak = _finite(process.get("peak_rss_bytes"))
    cpu = _finite(process.get("cpu_seconds"))
    started, ended = _finite(process.get("started_at")), _finite(process.get("ended_at"))
    row = [
        _escape(process.get("name", "?")), _escape(process.get("role", "-")), _escape(process.get("pid", "-")),
        _escape(status), _escape(format_bytes(peak)) if peak else "-", f"{cpu:.1f}" if cpu is not None else "-",
        _escape(format_duration(ended - started)) if started is not None and ended is not None else "-",
    ]  # fmt: skip
    if gpu:
        gpu_peak = _finite(_dict(gpu.get(str(process.get("name")))).get("peak_gpu_memory_bytes"))
        row.append(_escape(format_bytes(gpu_peak)) if gpu_peak else "-")
    return row


def _failure_logs_section(summary: dict[str, Any], root: Path) -> str:
    """Show the end of the stderr log of every process that failed on its own."""
    parts = []
    for process in map(_dict, _list(summary.get("processes"))):
        name = process.get("name")
        if not isinstance(name, str) or not _failed_on_its_own(process, summary):
            continue
        tail = _log_tail(root / "logs" / f"{Path(name).name}.stderr.log")
        if tail:
            parts.append(f"<h3>{_escape(name)}: last lines of stderr</h3><pre>{_escape(tail)}</pre>")
    if not parts:
        return ""
    return "<h2>Logs of failed processes</h2>\n" + "\n".join(parts)


def _failed_on_its_own(process: dict[str, Any], summary: dict[str, Any]) -> bool:
    """Return True for the run's failed process and any other that failed before the supervisor stopped it."""
    if process.get("name") == _dict(summary.get("outcome")).get("failed_process"):
        return True
    failed = process.get("exit_code") not in (0, None) or process.get("signal") is not None
    return failed and not process.get("stopped_by_supervisor")


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _configuration_section(summary: dict[str, Any]) -> str:
    config = _dict(summary.get("config"))
    rows = [(key, _escape(_plain(value))) for key, value in _flatten(config)]
    if summary.get("port") is not None:
        rows.append(("port (used)", _escape(summary["port"])))
    return "<h2>Configuration</h2>\n" + ('<section class="card">' + _definition_list(rows) + "</section>"
                                         if rows else '<p class="note">No configuration recorded.</p>')  # fmt: skip


# --- HTML helpers ---------------------------------------------------------------


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None,
           bad_rows: set[int] | None = None) -> str:  # fmt: skip
    """Return an HTML table; `header` is plain text, the cells are HTML that the caller has escaped."""
    numeric = numeric or set()
    bad_rows = bad_rows or set()
    head = "".join(f'<th{" class=num" if index in numeric else ""}>{_escape(text)}</th>'
                   for index, text in enumerate(header))  # fmt: skip
    body = []
    for row_index, row in enumerate(rows):
        cells = "".join(f"<td{' class=num' if index in numeric else ''}>{cell}</td>" for index, cell in enumerate(row))
        body.append(f"<tr{' class=bad' if row_index in bad_rows else ''}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _definition_list(rows: list[tuple[str, str]]) -> str:
    """Return a <dl>; the keys are plain text, the values HTML that the caller has escaped."""
    items = "".join(f"<dt>{_escape(key)}</dt><dd>{value}</dd>" for key, value in rows)
    return f'<dl class="kv">{items}</dl>'


def _flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "none"
    return json.dumps(value, default=str)


def _command(argv: Any) -> str:
    if isinstance(argv, list):
        return " ".join(str(part) for part in argv)
    return "-" if argv is None else str(argv)


def _number(value: Any, pattern: str) -> str:
    number = _finite(value)
    return pattern.format(number) if number is not None else "-"


def _time_range(summary: dict[str, Any]) -> str:
    started, ended = _finite(summary.get("started_at")), _finite(summary.get("ended_at"))
    if started is None:
        return "Start time not recorded"
    text = f"Started {_clock(started)}"
    if ended is not None:
        text += f", ended {_clock(ended)}"
    return text


def _clock(stamp: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    except (OverflowError, OSError, ValueError):
        return "an invalid time"


def _finite(value: Any) -> float | None:
    """Return `value` as a finite float, or None for anything else (bool, text, NaN, empty cell)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- python -m supervisor report RUN_DIR ------------------------------------------


def report_main(argv: list[str]) -> int:
    """Run `python -m supervisor report RUN_DIR`: write report.html again and print its path.

    Returns 0 on success, 2 if RUN_DIR contains no valid summary.json or the
    report cannot be written there.
    """
    parser = argparse.ArgumentParser(
        prog="python -m supervisor report",
        description="Write report.html again for an existing run folder, from its summary.json, "
        "history.json and resources.csv.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the run folder (it contains summary.json)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
