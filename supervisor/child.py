"""Start one child process, copy its output, and stop its process group.

Each child runs in a session of its own, so it is the leader of a new process
group and a signal to that group also reaches anything it forked. The group
id equals the child's pid.
"""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from supervisor.lines import LineSplitter
from supervisor.plan import ProcessSpec

CHUNK_BYTES = 64 * 1024

# Called for every line a child prints: (child, stream name, text, continued).
LineHandler = Callable[["Child", str, str, bool], None]


class Child:
    """One running workload process.

    `start()` spawns it with stdout and stderr piped; two tasks read the pipes
    in chunks, append the bytes unchanged to `<log_dir>/<name>.<stream>.log`
    and pass each decoded line to `on_line`. `exited` completes when the
    process has been reaped; the pipes can stay open longer while a
    grandchild holds them, which `drain()` bounds.
    """

    def __init__(self, spec: ProcessSpec, log_dir: Path, on_line: LineHandler) -> None:
        self.spec = spec
        self.name = spec.name
        self.pid: int | None = None
        self.returncode: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.stopped_by_supervisor = False
        # The fault the supervisor injected on purpose ("kill", "stall"), if any.
        self.injected: str | None = None
        self.injected_round: int | None = None
        self._log_dir = log_dir
        self._on_line = on_line
        self._process: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._raw_files: list[BinaryIO] = []
        self.exited: asyncio.Future[int] | None = None

    async def start(self) -> None:
        """Spawn the process; raise OSError if the program cannot run."""
        self._raw_files = _open_raw_logs(self._log_dir, self.name)
        self._process = await asyncio.create_subprocess_exec(
            *self.spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.spec.env},
            start_new_session=True,
        )
        self.pid = self._process.pid
        self.started_at = time.time()
        assert self._process.stdout is not None and self._process.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(self._process.stdout, "stdout", self._raw_files[0])),
            asyncio.create_task(self._pump(self._process.stderr, "stderr", self._raw_files[1])),
        ]
        self.exited = asyncio.ensure_future(self._wait())

    async def _wait(self) -> int:
        assert self._process is not None
        code = await self._process.wait()
        self.returncode = code
        self.ended_at = time.time()
        return code

    async def _pump(self, stream: asyncio.StreamReader, name: str, raw: BinaryIO) -> None:
        splitter = LineSplitter()
        while chunk := await stream.read(CHUNK_BYTES):
            raw.write(chunk)
            for text, continued in splitter.feed(chunk):
                self._forward(name, text, continued)
        for text, continued in splitter.flush():
            self._forward(name, text, continued)

    def _forward(self, stream: str, text: str, continued: bool) -> None:
        # The pipe must keep being read, or the child blocks on a full pipe.
        # The caller has already written the chunk to the raw log.
        with contextlib.suppress(Exception):
            self._on_line(self, stream, text, continued)

    @property
    def running(self) -> bool:
        return self.pid is not None and self.returncode is None

    def signal_group(self, signum: int) -> bool:
        """Send `signum` to the child's process group; return False if it is empty."""
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def group_alive(self) -> bool:
        """Return True while any process, zombies included, is in the group."""
        return self.signal_group(0)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the output pipes to close, then close the logs."""
        if self._pumps:
            _, pending = await asyncio.wait(self._pumps, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for raw in self._raw_files:
            raw.close()

    def describe_exit(self) -> str:
        """Return how the process ended, in words ("exit code 3", "SIGKILL")."""
        return describe_returncode(self.returncode, started=self.pid is not None)


def describe_returncode(code: int | None, started: bool = True) -> str:
    if not started:
        return "not started"
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _open_raw_logs(log_dir: Path, name: str) -> list[BinaryIO]:
    # Unbuffered: each chunk is one write, so nothing waits in memory if the
    # supervisor itself is killed.
    # Appending keeps the output of a restarted process after its predecessor's.
    return [open(log_dir / f"{name}.{stream}.log", "ab", buffering=0) for stream in ("stdout", "stderr")]
