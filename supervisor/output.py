"""Render the supervisor's events and its children's lines.

structlog is configured once, by `configure_logging()`. Every event carries
a `process` field: a child's name for its output lines, `supervisor` for
the supervisor's own events, so both read alike. In a terminal an event
becomes `TIME  NAME  | text` with the name padded and coloured; with
`--log-format json` it becomes one JSON object per line. Colour follows
NO_COLOR and FORCE_COLOR, then whether the stream is a terminal.
"""

import json
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import structlog

SUPERVISOR = "supervisor"

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_LEVEL_COLOURS = {"warning": "\x1b[33m", "error": "\x1b[31;1m", "critical": "\x1b[31;1m"}
_NAME_COLOURS = ["\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[92m", "\x1b[93m", "\x1b[94m", "\x1b[95m"]
_SERVER_COLOUR = "\x1b[36m"
_SUPERVISOR_COLOUR = "\x1b[1;37m"

# Fields the console shows in fixed places rather than as key=value pairs,
# and fields too long for a terminal line (JSON output and summary.json keep them).
_PLACED = {"event", "timestamp", "level", "process"}
_CONSOLE_HIDDEN = {"argv"}


def use_colour(stream: TextIO) -> bool:
    """Decide colour from NO_COLOR, FORCE_COLOR and whether `stream` is a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


class ConsoleRenderer:
    """Render an event as `HH:MM:SS name | text` with an aligned name column."""

    def __init__(self, colour: bool, name_width: int = len(SUPERVISOR)) -> None:
        self.colour = colour
        self.name_width = name_width
        self._colours: dict[str, str] = {}

    def name_colour(self, name: str) -> str:
        if not self.colour:
            return ""
        if name not in self._colours:
            if name == SUPERVISOR:
                self._colours[name] = _SUPERVISOR_COLOUR
            elif name == "server":
                self._colours[name] = _SERVER_COLOUR
            else:
                index = len([n for n in self._colours if n not in (SUPERVISOR, "server")])
                self._colours[name] = _NAME_COLOURS[index % len(_NAME_COLOURS)]
        return self._colours[name]

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
        name = str(event.get("process", SUPERVISOR))
        stamp = str(event.get("timestamp", ""))
        level = str(event.get("level", "info"))
        if "line" in event:
            text = str(event["line"])
        elif event.get("event") == "resources":
            text = _format_resources(event)
        else:
            extras = " ".join(
                f"{key}={_format_value(value)}"
                for key, value in event.items()
                if key not in _PLACED and key not in _CONSOLE_HIDDEN
            )
            text = str(event.get("event", ""))
            if extras:
                text += " " + extras
        if level in _LEVEL_COLOURS:
            label = level.upper()
            text = f"{_LEVEL_COLOURS[level]}{label}{_RESET} {text}" if self.colour else f"{label} {text}"
        padded = name.ljust(self.name_width)
        if self.colour:
            return f"{_DIM}{stamp}{_RESET} {self.name_colour(name)}{padded}{_RESET} {_DIM}|{_RESET} {text}"
        return f"{stamp} {padded} | {text}"


def _format_resources(event: MutableMapping[str, Any]) -> str:
    parts = [
        f"{name} {usage['cpu_percent']:.0f}% {format_bytes(usage['rss_bytes'])}"
        for name, usage in event.get("processes", {}).items()
    ]
    machine = (
        f"machine {event.get('machine_cpu_percent', 0):.0f}% {format_bytes(event.get('machine_memory_used_bytes', 0))}"
    )
    text = "resources: " + ", ".join([*parts, machine])
    if event.get("progress"):
        text = f"{event['progress']}; {text}"
    return text


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and value and " " not in value:
        return value
    return json.dumps(value, default=str)


class _CachedClock:
    """Format the current time once per distinct value, since lines arrive thousands per second."""

    def __init__(self, render: Callable[[float], str], resolution_s: float) -> None:
        self._render = render
        self._resolution = resolution_s
        self._key = -1
        self._text = ""

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        now = time.time()
        key = int(now / self._resolution)
        if key != self._key:
            self._key = key
            self._text = self._render(now)
        event["timestamp"] = self._text
        return event


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ISO 8601 in UTC to the millisecond for JSON; local HH:MM:SS on the console.
_iso_timestamp = _CachedClock(_iso, 0.001)
_clock_timestamp = _CachedClock(lambda now: time.strftime("%H:%M:%S", time.localtime(now)), 1.0)


def _default_process(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.setdefault("process", SUPERVISOR)
    return event


class SupervisorEventFile:
    """A structlog processor that appends the supervisor's own events to a file as JSON lines.

    The children's lines are already saved byte for byte, so only events
    with `process == "supervisor"` are written. They survive a closed
    terminal or a scrollback that the live table filled.
    """

    def __init__(self) -> None:
        self._file: TextIO | None = None

    def open(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open for the run

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if self._file is not None and event.get("process") == SUPERVISOR:
            self._file.write(json.dumps(dict(event), default=str) + "\n")
        return event


SUPERVISOR_EVENTS = SupervisorEventFile()


class Display:
    """The terminal: scrolling log lines with an optional live table below them.

    `write()` prints a rendered event. With `live` on, the table's lines are
    erased before new log lines print and redrawn after them, so the table
    stays at the bottom of the screen. All calls come from the event loop's
    thread.
    """

    def __init__(self, stream: TextIO, live: bool) -> None:
        self.stream = stream
        self.live = live
        # Set once writing failed (a closed pipe or terminal). Later output is
        # dropped, so that the supervisor can still stop its children; its own
        # events are in the run folder too.
        self.broken = False
        self._table: list[str] = []
        self._shown = 0
        self._schedule: Callable[[], None] | None = None
        self._schedule_flush: Callable[[], None] | None = None

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            if self._shown:
                self._erase()
            self.stream.write(text + "\n")
            if self.live and self._table:
                if self._schedule is not None:
                    self._schedule()
                else:
                    self.redraw()
            elif self._schedule_flush is not None:
                self._schedule_flush()
            else:
                self.stream.flush()
        except (OSError, ValueError):
            self.broken = True

    def set_flush_scheduler(self, schedule: Callable[[], None]) -> None:
        """Let the caller batch flushes: `schedule()` must call `flush()` soon.

        A flush per line costs a system call per line. Batched, the lines of
        one chunk of child output reach the terminal or pipe in one write.
        """
        self._schedule_flush = schedule

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.broken = True

    def set_redraw_scheduler(self, schedule: Callable[[], None]) -> None:
        """Let the caller batch redraws: `schedule()` must call `redraw()` soon."""
        self._schedule = schedule

    def show_table(self, lines: list[str]) -> None:
        self._table = lines
        self.redraw()

    def redraw(self) -> None:
        if not self.live or self.broken:
            return
        try:
            if self._shown:
                self._erase()
            width, height = _terminal_size(self.stream)
            lines = _fit_rows(self._table, height)
            for line in lines:
                self.stream.write(_clip(line, width) + "\x1b[K\n")
            self._shown = len(lines)
            self.stream.flush()
        except (OSError, ValueError):
            self.broken = True

    def close(self) -> None:
        """Remove the table, leaving the terminal as the log lines left it."""
        if self._shown and not self.broken:
            try:
                self._erase()
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True
        self._table = []
        self.live = False

    def _erase(self) -> None:
        self.stream.write(f"\x1b[{self._shown}F\x1b[J")
        self._shown = 0


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return 120, 40
    return size.columns, size.lines


def _fit_rows(lines: list[str], height: int) -> list[str]:
    """Keep the table below half the terminal's height, so log lines stay visible.

    A table taller than the screen cannot be erased in place and would fill
    the scrollback with stale copies; the rows cut are counted instead.
    """
    limit = max(3, height // 2)
    if len(lines) <= limit:
        return lines
    kept = lines[: limit - 2]
    return [*kept, f"... {len(lines) - len(kept) - 1} more processes", lines[-1]]


def _clip(line: str, width: int) -> str:
    """Cut `line` to `width` visible characters, keeping colour codes whole."""
    visible = 0
    out = []
    index = 0
    while index < len(line):
        if line[index] == "\x1b":
            end = line.find("m", index)
            if end < 0:
                break
            out.append(line[index : end + 1])
            index = end + 1
            continue
        if visible >= width - 1:
            break
        out.append(line[index])
        visible += 1
        index += 1
    return "".join(out) + (_RESET if "\x1b" in line else "")


class DisplayLogger:
    """A structlog logger that hands rendered events to a `Display`."""

    def __init__(self, display: Display) -> None:
        self._display = display

    def msg(self, message: str) -> None:
        self._display.write(message)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def configure_logging(
    log_format: str, stream: TextIO | None = None, name_width: int = len(SUPERVISOR), live: bool = False
) -> tuple[Display, ConsoleRenderer | None]:
    """Configure structlog for the whole process and return the display it writes to.

    `live` requests the live table, which is shown only on a terminal with
    the console format.
    """
    stream = stream or sys.stdout
    renderer: ConsoleRenderer | None = None
    processors: list[Any] = [structlog.processors.add_log_level, _default_process]
    if log_format == "json":
        processors += [
            _iso_timestamp,
            structlog.processors.format_exc_info,
            SUPERVISOR_EVENTS,
            structlog.processors.JSONRenderer(default=str),
        ]
        live = False
    else:
        renderer = ConsoleRenderer(colour=use_colour(stream), name_width=name_width)
        processors += [
            _clock_timestamp,
            structlog.processors.format_exc_info,
            SUPERVISOR_EVENTS,
            renderer,
        ]
        live = live and stream.isatty()
    display = Display(stream, live)
    structlog.configure(
        processors=processors,
        logger_factory=lambda *_args: DisplayLogger(display),
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )
    return display, renderer


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
