"""Output: the display survives a closed stream; the live table fits the terminal."""

import io

from supervisor.output import ConsoleRenderer, Display, _fit_rows


class ClosedStream(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_display_stops_writing_after_broken_pipe() -> None:
    display = Display(ClosedStream(), live=True)
    display.show_table(["table"])
    display.write("first")
    display.write("second")
    display.close()
    assert display.broken is True


def test_table_rows_cut_to_half_the_terminal() -> None:
    table = ["header", *[f"client-{index}" for index in range(30)], "machine"]
    rows = _fit_rows(table, height=20)
    assert len(rows) == 10
    assert rows[0] == "header"
    assert rows[-2] == "... 23 more processes"
    assert rows[-1] == "machine"


def test_small_table_kept_whole() -> None:
    table = ["header", "server", "machine"]
    assert _fit_rows(table, height=40) == table


def test_console_line_has_aligned_name() -> None:
    renderer = ConsoleRenderer(colour=False, name_width=10)
    text = renderer(None, "info", {"process": "client-3", "timestamp": "12:00:00", "line": "hello", "event": "output"})
    assert text == "12:00:00 client-3   | hello"


def test_console_event_lists_fields() -> None:
    renderer = ConsoleRenderer(colour=False, name_width=10)
    text = renderer(None, "warning", {"event": "exited", "child": "server", "pid": 7, "level": "warning",
                                      "timestamp": "12:00:00", "argv": "hidden"})  # fmt: skip
    assert text == "12:00:00 supervisor | WARNING exited child=server pid=7"
