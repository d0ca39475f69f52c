"""Split a child's output stream into lines without losing any of it.

`asyncio.StreamReader.readline()` raises on lines over its 64 KiB limit and
drops the data, so children's pipes are read in chunks and split here. The
splitter works on decoded text: an incremental UTF-8 decoder replaces invalid
bytes and keeps a multi-byte character that straddles two chunks intact.
"""

import codecs

# Maximum line length, in characters, emitted as one event. A longer line is
# emitted in pieces of this size, each marked as continued, so that nothing is
# dropped and no single event can hold megabytes.
MAX_LINE_CHARS = 16 * 1024


class LineSplitter:
    """Turn chunks of bytes into complete lines.

    Carriage-return frames (progress bars that redraw one line) collapse to
    the last non-empty frame. A final line without a newline is returned by
    `flush()`. Feed and flush return `(text, continued)` pairs, where
    `continued` is true for every piece of an over-long line but its last.
    """

    def __init__(self, max_line_chars: int = MAX_LINE_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._max = max_line_chars

    def feed(self, chunk: bytes) -> list[tuple[str, bool]]:
        """Add a chunk and return every line it completes."""
        text = self._pending + self._decoder.decode(chunk)
        *complete, self._pending = text.split("\n")
        lines: list[tuple[str, bool]] = []
        for line in complete:
            lines.extend(self._pieces(_last_frame(line)))
        self._trim_pending(lines)
        return lines

    def flush(self) -> list[tuple[str, bool]]:
        """Return what is left after the stream ended, if anything."""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if not text:
            return []
        return self._pieces(_last_frame(text))

    def _pieces(self, line: str) -> list[tuple[str, bool]]:
        if len(line) <= self._max:
            return [(line, False)]
        count = (len(line) + self._max - 1) // self._max
        return [(line[i * self._max : (i + 1) * self._max], i < count - 1) for i in range(count)]

    def _trim_pending(self, lines: list[tuple[str, bool]]) -> None:
        """Keep the unterminated remainder below the line limit.

        Frames before the last carriage return can never be shown, so they
        are dropped; a long line without any is emitted in pieces now.
        """
        if len(self._pending) <= self._max:
            return
        cut = self._pending.rfind("\r", 0, len(self._pending) - 1)
        if cut >= 0:
            self._pending = self._pending[cut + 1 :]
        while len(self._pending) > self._max and "\r" not in self._pending:
            lines.append((self._pending[: self._max], True))
            self._pending = self._pending[self._max :]


def _last_frame(line: str) -> str:
    """Return the last non-empty carriage-return frame of a line."""
    if "\r" not in line:
        return line
    for frame in reversed(line.split("\r")):
        if frame:
            return frame
    return ""
