"""LineSplitter: chunks in, complete lines out, nothing lost."""

from supervisor.lines import LineSplitter


def feed_all(chunks: list[bytes], max_chars: int = 16) -> list[tuple[str, bool]]:
    splitter = LineSplitter(max_line_chars=max_chars)
    lines = []
    for chunk in chunks:
        lines.extend(splitter.feed(chunk))
    lines.extend(splitter.flush())
    return lines


def test_lines_split_on_newline_across_chunks() -> None:
    assert feed_all([b"one\ntw", b"o\nthree\n"]) == [("one", False), ("two", False), ("three", False)]


def test_last_line_without_newline_is_kept() -> None:
    assert feed_all([b"first\nlast"]) == [("first", False), ("last", False)]


def test_carriage_return_frames_collapse_to_last() -> None:
    lines = feed_all([b"10%\r50%\r", b"100%\r\ndone\n"])
    assert lines == [("100%", False), ("done", False)]


def test_invalid_utf8_is_replaced() -> None:
    lines = feed_all([b"bad \xff\xfe byte\n"])
    assert lines == [("bad \ufffd\ufffd byte", False)]


def test_multibyte_character_split_between_chunks() -> None:
    encoded = "caf\u00e9\n".encode()
    lines = feed_all([encoded[:4], encoded[4:]])
    assert lines == [("caf\u00e9", False)]


def test_long_line_split_in_pieces_without_loss() -> None:
    text = "".join(str(i % 10) for i in range(100))
    lines = feed_all([text.encode()[:37], text.encode()[37:] + b"\n"])
    assert "".join(piece for piece, _ in lines) == text
    assert all(len(piece) <= 16 for piece, _ in lines)
    assert [continued for _, continued in lines] == [True] * (len(lines) - 1) + [False]


def test_long_unterminated_progress_frames_stay_bounded() -> None:
    splitter = LineSplitter(max_line_chars=16)
    for step in range(1000):
        splitter.feed(f"step {step}\r".encode())
    assert len(splitter._pending) <= 32
    assert splitter.flush() == [("step 999", False)]
