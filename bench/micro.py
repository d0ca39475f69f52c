"""Supervisor micro-benchmarks with tiny `sys.executable -c` children on 127.0.0.1.

logs       one child prints short lines, another 100 KB lines: lines/s, supervisor CPU, lines lost
teardown   one child fails among 10 and 100 that honour SIGTERM: failure to last child reaped
monitor    100 idle children sampled every 1 s: supervisor CPU %
readiness  server port open to first client started, 5 runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from bench.common import QUIET_ENVIRONMENT, free_port
from bench.systems import PROJECT_ROOT, child_environment, load_average

LONG_LINE_CHARS = 100_000
TEARDOWN_SIZES = (10, 100)
READINESS_RUNS = 5
SUPERVISOR_TIMEOUT_S = 600


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def wait_for_file_then_exit(path: Path, poll_s: float) -> str:
    return f"""
import os, time
while not os.path.exists({str(path)!r}):
    time.sleep({poll_s})
"""


def server_until(path: Path, port: int, listened_file: Path | None = None, delay_s: float = 0.0) -> list[str]:
    """Build the argv of a server that listens on `port` until `path` exists and records when it started listening."""
    note = f"open({str(listened_file)!r}, 'w').write(repr(time.time()))" if listened_file else ""
    return python(
        f"""
import socket, time
time.sleep({delay_s})
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", {port}))
listener.listen(1024)
{note}
"""
        + wait_for_file_then_exit(path, 0.05)
    )


def supervise(
    spec: dict[str, Any], work: Path, port: int, extra: list[str], sampler: Any = None
) -> tuple[int, Path, float, float]:
    """Run bench.driver on `spec`; return its exit code, its JSON log, its wall time and its own CPU seconds.

    `sampler(process)` runs on this thread while the supervisor runs, if given.
    """
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec))
    log_path = work / "supervisor.jsonl"
    command = [sys.executable, "-m", "bench.driver", str(spec_file), "--", "--clients", str(len(spec["clients"])),
               "--fraction-fit", "1", "--dataset", "synthetic", "--port", str(port), "--run-dir", str(work / "run"),
               "--log-format", "json", "--grace", "5", "--timeout", str(SUPERVISOR_TIMEOUT_S), *extra]  # fmt: skip
    env = child_environment() | QUIET_ENVIRONMENT
    began = time.monotonic()
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        watched = psutil.Process(process.pid)
        cpu_s = 0.0
        if sampler is not None:
            sampler(watched)
        while process.poll() is None:
            try:
                times = watched.cpu_times()
                cpu_s = times.user + times.system
            except psutil.Error:
                pass
            time.sleep(0.05)
    return process.returncode, log_path, time.monotonic() - began, cpu_s


def events(log_path: Path) -> list[dict[str, Any]]:
    parsed = []
    with log_path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("{"):
                parsed.append(json.loads(line))
    return parsed


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def bench_logs(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    work.mkdir(parents=True)
    port = free_port()
    done = work / "done"
    short = python(
        f"""
import sys
out = sys.stdout
for start in range(0, {args.short_lines}, 1000):
    out.write("".join(f"short line {{i:08d}}\\n" for i in range(start, min(start + 1000, {args.short_lines}))))
out.flush()
open({str(done)!r} + "-0", "w").close()
"""
        + wait_for_file_then_exit(done, 0.05)
    )
    long = python(
        f"""
import sys
line = "L" * {LONG_LINE_CHARS - 1} + "\\n"
for _ in range({args.long_lines}):
    sys.stdout.write(line)
sys.stdout.flush()
open({str(done)!r} + "-1", "w").close()
"""
        + wait_for_file_then_exit(done, 0.05)
    )
    # The server ends the run once both children have printed everything.
    server = python(
        f"""
import os, socket, time
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", {port}))
listener.listen()
while not (os.path.exists({str(done)!r} + "-0") and os.path.exists({str(done)!r} + "-1")):
    time.sleep(0.05)
open({str(done)!r}, "w").close()
"""
    )
    spec = {"server": server, "clients": [["client-0", short], ["client-1", long]]}
    code, log_path, wall_s, cpu_s = supervise(spec, work, port, [])

    counts = {"client-0": 0, "client-1": 0}
    long_ok = 0
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    pending = {"client-0": 0, "client-1": 0}
    for event in events(log_path):
        name = event.get("process")
        if event.get("event") != "output" or name not in counts or event.get("stream") != "stdout":
            continue
        first.setdefault(name, stamp(event))
        pending[name] += len(event["line"])
        if event.get("continued"):
            continue
        counts[name] += 1
        last[name] = stamp(event)
        if name == "client-1" and pending[name] == LONG_LINE_CHARS - 1:
            long_ok += 1
        pending[name] = 0
    raw = {name: _count_newlines(work / "run" / "logs" / f"{name}.stdout.log") for name in counts}
    total = counts["client-0"] + counts["client-1"]
    span = max(last.values(), default=0) - min(first.values(), default=0)
    return {
        "exit_code": code,
        "short_lines_expected": args.short_lines,
        "short_lines_forwarded": counts["client-0"],
        "short_lines_in_raw_log": raw["client-0"],
        "long_lines_expected": args.long_lines,
        "long_lines_forwarded": counts["client-1"],
        "long_lines_whole": long_ok,
        "long_lines_in_raw_log": raw["client-1"],
        "lines_lost": args.short_lines + args.long_lines - total,
        "short_lines_per_s": _rate(counts["client-0"], first.get("client-0"), last.get("client-0")),
        "all_lines_per_s": total / span if span > 0 else None,
        "forwarding_span_s": span,
        "supervisor_wall_s": wall_s,
        "supervisor_cpu_s": cpu_s,
        # Lines per second of the supervisor's own CPU time: the figure that does not depend on how much
        # CPU other programs on the machine leave it.
        "lines_per_supervisor_cpu_s": total / cpu_s if cpu_s > 0 else None,
    }


def _rate(count: int, first: float | None, last: float | None) -> float | None:
    if first is None or last is None or last <= first:
        return None
    return count / (last - first)


def _count_newlines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


def bench_teardown(work: Path, size: int) -> dict[str, Any]:
    work.mkdir(parents=True)
    port = free_port()
    ready = work / "ready"
    ready.mkdir()
    failed_at = work / "failed_at"
    sleeper = python(
        f"""
import os, sys, time
open(os.path.join({str(ready)!r}, str(os.getpid())), "w").close()
time.sleep(300)
"""
    )
    failing = python(
        f"""
import os, sys, time
while len(os.listdir({str(ready)!r})) < {size - 1}:
    time.sleep(0.05)
time.sleep(0.5)
open({str(failed_at)!r}, "w").write(repr(time.time()))
sys.exit(3)
"""
    )
    clients = [[f"client-{i}", sleeper] for i in range(size - 1)] + [[f"client-{size - 1}", failing]]
    spec = {"server": server_until(work / "never", port), "clients": clients}
    code, log_path, _wall_s, _cpu_s = supervise(spec, work, port, [])
    ended = time.time()
    failure = float(failed_at.read_text()) if failed_at.is_file() else None
    # The supervisor logs "run finished" after it has reaped every child. Its process exits later, after
    # writing summary.json and report.html, so the second figure is an upper bound.
    finished = [stamp(e) for e in events(log_path) if e.get("event") == "run finished"]
    return {
        "children": size,
        "exit_code": code,
        "failure_to_run_finished_s": finished[0] - failure if failure and finished else None,
        "failure_to_supervisor_exit_s": ended - failure if failure else None,
    }


def bench_monitor(work: Path, args: argparse.Namespace, size: int = 100) -> dict[str, Any]:
    work.mkdir(parents=True)
    port = free_port()
    ready = work / "ready"
    ready.mkdir()
    done = work / "done"
    idle = python(
        f"""
import os
open(os.path.join({str(ready)!r}, str(os.getpid())), "w").close()
"""
        + wait_for_file_then_exit(done, 1.0)
    )
    clients = [[f"client-{i}", idle] for i in range(size)]
    spec = {"server": server_until(done, port), "clients": clients}
    window: dict[str, float] = {}

    def measure(process: psutil.Process) -> None:
        deadline = time.monotonic() + 120
        while len(os.listdir(ready)) < size and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3.0)  # let start-up work settle
        before = process.cpu_times()
        began = time.monotonic()
        time.sleep(args.idle_seconds)
        after = process.cpu_times()
        window["seconds"] = time.monotonic() - began
        window["cpu_s"] = (after.user + after.system) - (before.user + before.system)
        done.touch()

    code, _log, _wall, _cpu = supervise(spec, work, port, ["--monitor-interval", "1", "--no-live"], sampler=measure)
    return {
        "children": size,
        "exit_code": code,
        "window_s": window.get("seconds"),
        "supervisor_cpu_s": window.get("cpu_s"),
        "supervisor_cpu_percent": 100 * window["cpu_s"] / window["seconds"] if window else None,
    }


def bench_readiness(work: Path) -> dict[str, Any]:
    latencies = []
    codes = []
    for attempt in range(READINESS_RUNS):
        run_work = work / f"run-{attempt + 1}"
        run_work.mkdir(parents=True)
        port = free_port()
        done = run_work / "done"
        listened = run_work / "listened_at"
        client = python(
            f"""
import socket, time
open({str(done)!r}, "w").close()
while True:
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
    except OSError:
        break
    time.sleep(0.05)
"""
        )
        spec = {"server": server_until(done, port, listened, delay_s=0.5), "clients": [["client-0", client]]}
        code, log_path, _wall, _cpu = supervise(spec, run_work, port, [])
        codes.append(code)
        started = [stamp(e) for e in events(log_path) if e.get("event") == "started" and e.get("child") == "client-0"]
        if started and listened.is_file():
            latencies.append(started[0] - float(listened.read_text()))
    return {
        "runs": READINESS_RUNS,
        "exit_codes": codes,
        "latencies_s": latencies,
        "median_s": statistics.median(latencies) if latencies else None,
        "max_s": max(latencies, default=None),
    }


def run_micro(args: argparse.Namespace) -> int:
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    out_dir = args.out_dir or PROJECT_ROOT / "bench" / "results" / ("micro-" + time.strftime("%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True, exist_ok=False)
    results: dict[str, Any] = {"command": sys.argv, "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    for name in selected:
        print(f"[bench] {name} (load {load_average()})", flush=True)
        results[f"{name}_load_before"] = load_average()
        if name == "logs":
            results["logs"] = bench_logs(out_dir / "logs", args)
        elif name == "teardown":
            results["teardown"] = [bench_teardown(out_dir / f"teardown-{size}", size) for size in TEARDOWN_SIZES]
        elif name == "monitor":
            results["monitor"] = bench_monitor(out_dir / "monitor", args)
        elif name == "readiness":
            results["readiness"] = bench_readiness(out_dir / "readiness")
        else:
            print(f"error: unknown micro-benchmark {name}", file=sys.stderr)
            return 2
        results[f"{name}_load_after"] = load_average()
        print(json.dumps(results[name], indent=1), flush=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {out_dir / 'results.json'}")
    return 0
