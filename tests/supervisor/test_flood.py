"""A child that floods its output: memory stays bounded and no byte is lost."""

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from supervisor.readiness import free_port
from tests.supervisor import children

PROJECT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120.0
FLOOD_BYTES = 200 * 2**20
LINE_BYTES = 8 * 1024
# The supervisor reads 64 KiB chunks and never keeps a whole line of output,
# so its memory must not grow with the amount a child writes.
MAX_GROWTH_BYTES = 100 * 2**20
# Appended to a client's code: exit once the server's port closes.
WAIT_FOR_SERVER = """
import socket, time
while True:
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
    except OSError:
        break
    time.sleep(0.05)
"""


def test_flood_garbage_and_huge_line(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    garbage = tmp_path / "garbage.bin"
    with garbage.open("wb") as handle:
        handle.write(bytes(range(256)) * 40_000 + b"\x00\xff\r\r\n")
    done = tmp_path / "done"
    flood = children.python(
        textwrap.dedent(f"""
        import sys
        line = b"y" * {LINE_BYTES - 1} + b"\\n"
        out = sys.stdout.buffer
        for _ in range({FLOOD_BYTES // LINE_BYTES}):
            out.write(line)
        out.write(b"z" * 10_000_000 + b"\\n")
        out.flush()
        open({str(done)!r} + "-0", "w").close()
    """)
        + WAIT_FOR_SERVER.format(port=port)
    )
    noise = children.python(
        textwrap.dedent(f"""
        import sys
        sys.stderr.buffer.write(open({str(garbage)!r}, "rb").read())
        sys.stderr.flush()
        open({str(done)!r} + "-1", "w").close()
    """)
        + WAIT_FOR_SERVER.format(port=port)
    )
    server = children.python(f"""
        import os, socket, time
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", {port}))
        listener.listen()
        while not (os.path.exists({str(done)!r} + "-0") and os.path.exists({str(done)!r} + "-1")):
            time.sleep(0.05)
    """)
    spec = {"server": server, "clients": [["client-0", flood], ["client-1", noise]]}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "tests.supervisor.driver", str(spec_file), "--", "--clients", "2",
               "--fraction-fit", "1", "--dataset", "synthetic", "--port", str(port), "--run-dir", str(run_dir),
               "--log-format", "json", "--grace", "1", "--timeout", "90"]  # fmt: skip

    with (tmp_path / "stdout.jsonl").open("w") as out:
        process = subprocess.Popen(command, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)  # fmt: skip
        supervisor = psutil.Process(process.pid)
        baseline = None
        peak = 0
        deadline = time.monotonic() + DEADLINE_S
        while process.poll() is None and time.monotonic() < deadline:
            try:
                rss = supervisor.memory_info().rss
            except psutil.NoSuchProcess:
                break
            baseline = baseline or rss
            peak = max(peak, rss)
            time.sleep(0.05)
        code = process.wait(timeout=DEADLINE_S)

    assert code == 0
    flood_log = run_dir / "logs" / "client-0.stdout.log"
    assert flood_log.stat().st_size == FLOOD_BYTES + 10_000_001
    noise_log = run_dir / "logs" / "client-1.stderr.log"
    assert hashlib.sha256(noise_log.read_bytes()).digest() == hashlib.sha256(garbage.read_bytes()).digest()
    assert baseline is not None
    assert peak - baseline < MAX_GROWTH_BYTES, f"supervisor grew from {baseline} to {peak} bytes"

    lines = 0
    with (tmp_path / "stdout.jsonl").open() as records:
        for text in records:
            record = json.loads(text)
            if record.get("process") == "client-0" and not record.get("continued"):
                lines += 1
    assert lines == FLOOD_BYTES // LINE_BYTES + 1
