"""Inline SVG charts for report.html, written as text with no chart library.

`time_chart` draws values over the run's time with the rounds shaded and
injected faults marked; `round_chart` draws one value per round. Every label
that comes from the run is escaped. A series longer than MAX_POINTS is
reduced to the minimum and maximum of equal buckets, so peaks stay visible
and a long run's report stays small.
"""

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# At most this many points per drawn line.
MAX_POINTS = 1000

Point = tuple[float, float]


def split_at_gaps(points: Sequence[Point], max_gap_s: float) -> list[list[Point]]:
    """Split a series where no sample came for more than `max_gap_s`, so that a line is not drawn across the gap.

    A gap means that the process was not running: it had not started yet,
    or it exited and was restarted under the same name.
    """
    segments: list[list[Point]] = []
    for point in points:
        if not segments or point[0] - segments[-1][-1][0] > max_gap_s:
            segments.append([])
        segments[-1].append(point)
    return segments


def downsample(points: Sequence[Point], max_points: int = MAX_POINTS) -> list[Point]:
    """Reduce `points` to at most `max_points` by keeping the minimum and maximum of equal buckets, in time order."""
    if len(points) <= max_points:
        return list(points)
    if max_points < 2:
        return [max(points, key=lambda point: point[1])] if max_points == 1 else []
    buckets = max_points // 2
    kept: list[Point] = []
    for bucket in range(buckets):
        start = bucket * len(points) // buckets
        end = (bucket + 1) * len(points) // buckets
        chunk = range(start, end)
        low = min(chunk, key=lambda index: points[index][1])
        high = max(chunk, key=lambda index: points[index][1])
        for index in sorted({low, high}):
            kept.append(points[index])
    return kept


def _reduce(points: Sequence[Point], max_gap_s: float) -> list[list[Point]]:
    """Split a series at gaps, then share the MAX_POINTS budget among the segments by their length."""
    segments = split_at_gaps(points, max_gap_s)
    total = sum(len(segment) for segment in segments)
    if total <= MAX_POINTS:
        return segments
    return [downsample(segment, max(1, MAX_POINTS * len(segment) // total)) for segment in segments]


@dataclass
class Line:
    """One drawn series: its label, style and points."""

    label: str
    colour: str
    points: list[Point]
    dash: str = ""
    markers: bool = False


@dataclass
class Marks:
    """Marks on every time chart: the rounds as shaded bands and the injected faults as dark red lines."""

    rounds: list[tuple[int, float, float]] = field(default_factory=list)
    # (seconds since the start, short label drawn on the chart, full label as a tooltip)
    faults: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass
class Frame:
    """A chart's size in SVG units and the value ranges it maps onto the plot area."""

    width: float
    height: float
    x_min: float
    x_max: float
    y_max: float
    left: float = 64
    right: float = 14
    top: float = 22
    bottom: float = 34

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        return self.left + (value - self.x_min) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        plot = self.height - self.top - self.bottom
        return self.height - self.bottom - max(0.0, value) / (self.y_max or 1.0) * plot


def nice_step(span: float, count: int = 5) -> float:
    """Return a 1, 2 or 5 times a power of ten step that divides `span` into about `count` intervals."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


_TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]


def time_step(span_s: float, count: int = 8) -> float:
    """Return a clock-friendly tick step (1 s to 1 day) that gives at most about `count` ticks over `span_s`."""
    for step in _TIME_STEPS_S:
        if span_s / step <= count:
            return step
    return nice_step(span_s, count)


def format_clock(seconds: float) -> str:
    """Format elapsed seconds as m:ss, or h:mm:ss from one hour on."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _value_ticks(y_max: float, unit: str) -> tuple[float, list[tuple[float, str]]]:
    """Return the axis maximum and the labelled ticks for values in `unit` ("percent", "bytes" or "number")."""
    if unit == "bytes":
        scale, suffix = 1.0, "B"
        for candidate, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if y_max >= candidate:
                scale, suffix = float(candidate), name
                break
        step = nice_step(y_max / scale)
        top = math.ceil(y_max / scale / step) * step
        ticks = [(index * step * scale, f"{_trim(index * step)} {suffix}") for index in range(round(top / step) + 1)]
        return top * scale, ticks
    step = nice_step(y_max)
    top = math.ceil(y_max / step) * step
    label_suffix = "%" if unit == "percent" else ""
    return top, [(index * step, f"{_trim(index * step)}{label_suffix}") for index in range(round(top / step) + 1)]


def _trim(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _coordinates(frame: Frame, points: Iterable[Point]) -> str:
    return " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in points)


def time_chart(
    key: str, lines: list[Line], marks: Marks, x_max: float, unit: str, max_gap_s: float,
    width: float = 1160, height: float = 260, y_floor: float = 0.0,
) -> str:  # fmt: skip
    """Return an SVG chart of values over time: one polyline per line segment, the rounds shaded, faults marked.

    `key` names the chart in a data-chart attribute. The y axis starts at 0
    and reaches at least `y_floor`.
    """
    peak = max((y for line in lines for _, y in line.points), default=0.0)
    y_max, ticks = _value_ticks(max(peak, y_floor, 1e-9 if unit != "bytes" else 1.0), unit)
    frame = Frame(width=width, height=height, x_min=0.0, x_max=max(x_max, 1.0), y_max=y_max)
    parts = [_svg_open(key, frame)]
    parts += _round_bands(frame, marks)
    parts += _value_grid(frame, ticks)
    parts += _time_axis(frame)
    for line in lines:
        title = f"<title>{_escape(line.label)}</title>"
        for segment in _reduce(line.points, max_gap_s):
            if len(segment) == 1:
                x, y = segment[0]
                parts.append(
                    f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2" fill="{line.colour}" '
                    f'data-series="{_escape(line.label)}">{title}</circle>'
                )
                continue
            dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
            parts.append(
                f'<polyline points="{_coordinates(frame, segment)}" fill="none" stroke="{line.colour}" '
                f'stroke-width="1.6" stroke-linejoin="round"{dash} data-series="{_escape(line.label)}">'
                f"{title}</polyline>"
            )
    parts += _fault_marks(frame, marks)
    parts.append("</svg>")
    return "\n".join(parts)


def round_chart(key: str, line: Line, rounds: list[int], unit: str, y_floor: float = 0.0) -> str:
    """Return an SVG chart of one value per round, with a marker on every round."""
    peak = max((y for _, y in line.points), default=0.0)
    y_max, ticks = _value_ticks(max(peak, y_floor, 1e-9), unit)
    last = max(rounds, default=1)
    frame = Frame(width=570, height=230, x_min=0.5, x_max=last + 0.5, y_max=y_max)
    parts = [_svg_open(key, frame)]
    parts += _value_grid(frame, ticks)
    step = max(1, int(nice_step(last, 8)))
    for number in range(step if step > 1 else 1, last + 1, step):
        x = frame.x(number)
        parts.append(f'<text x="{x:.1f}" y="{frame.height - frame.bottom + 16:.1f}" class="tick" '
                     f'text-anchor="middle">{number}</text>')  # fmt: skip
    parts.append(f'<text x="{frame.left + (frame.width - frame.left - frame.right) / 2:.1f}" '
                 f'y="{frame.height - 4:.1f}" class="axis" text-anchor="middle">round</text>')  # fmt: skip
    title = f"<title>{_escape(line.label)}</title>"
    if len(line.points) > 1:
        parts.append(
            f'<polyline points="{_coordinates(frame, line.points)}" fill="none" stroke="{line.colour}" '
            f'stroke-width="1.8" data-series="{_escape(line.label)}">{title}</polyline>'
        )
    for x, y in line.points:
        parts.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3" fill="{line.colour}">'
                     f"<title>round {x:g}: {y:.4f}</title></circle>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def _svg_open(key: str, frame: Frame) -> str:
    return (
        f'<svg class="chart" data-chart="{_escape(key)}" viewBox="0 0 {frame.width:g} {frame.height:g}" '
        f'width="{frame.width:g}" height="{frame.height:g}" role="img">'
    )


def _value_grid(frame: Frame, ticks: list[tuple[float, str]]) -> list[str]:
    parts = []
    for value, label in ticks:
        y = frame.y(value)
        parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.width - frame.right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'class="grid"/>')  # fmt: skip
        parts.append(f'<text x="{frame.left - 6:.1f}" y="{y + 4:.1f}" class="tick" text-anchor="end">{label}</text>')
    return parts


def _time_axis(frame: Frame) -> list[str]:
    step = time_step(frame.x_max - frame.x_min)
    parts = []
    tick = 0.0
    while tick <= frame.x_max + 1e-9:
        x = frame.x(tick)
        base = frame.height - frame.bottom
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base:.1f}" y2="{base + 4:.1f}" class="axisline"/>')
        parts.append(f'<text x="{x:.1f}" y="{base + 16:.1f}" class="tick" text-anchor="middle">'
                     f"{format_clock(tick)}</text>")  # fmt: skip
        tick += step
    parts.append(f'<text x="{frame.width - frame.right:.1f}" y="{frame.height - 4:.1f}" class="axis" '
                 f'text-anchor="end">time since the run started (m:ss)</text>')  # fmt: skip
    return parts


def _round_bands(frame: Frame, marks: Marks) -> list[str]:
    parts = []
    bottom = frame.height - frame.bottom
    for position, (number, start, end) in enumerate(marks.rounds):
        x1, x2 = frame.x(max(start, frame.x_min)), frame.x(min(end, frame.x_max))
        if x2 <= x1:
            continue
        shade = "band" if position % 2 == 0 else "band alt"
        parts.append(
            f'<rect x="{x1:.1f}" y="{frame.top:.1f}" width="{x2 - x1:.1f}" height="{bottom - frame.top:.1f}" '
            f'class="{shade}"><title>round {number}: {format_clock(start)} to {format_clock(end)}</title></rect>'
        )
        for x in (x1, x2):
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top:.1f}" y2="{bottom:.1f}" class="roundline"/>')
        # A label needs about 50 units; narrower bands keep only their tooltip.
        if x2 - x1 >= 50:
            parts.append(f'<text x="{x1 + 4:.1f}" y="{frame.top - 6:.1f}" class="roundlabel">round {number}</text>')
    return parts


def _fault_marks(frame: Frame, marks: Marks) -> list[str]:
    parts = []
    bottom = frame.height - frame.bottom
    for at, short, label in marks.faults:
        if not frame.x_min <= at <= frame.x_max:
            continue
        x = frame.x(at)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top:.1f}" y2="{bottom:.1f}" class="fault">'
                     f"<title>{_escape(label)}</title></line>")  # fmt: skip
        parts.append(f'<text x="{x + 3:.1f}" y="{frame.top + 11:.1f}" class="faultlabel">{_escape(short)}</text>')
    return parts


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)
