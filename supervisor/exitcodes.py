"""The supervisor's exit codes: one table, used by the code, `--help` and the README."""

import enum
import signal


class ExitCode(enum.IntEnum):
    """The supervisor's exit status for each way a run can end."""

    OK = 0
    WORKLOAD_FAILED = 1
    INVALID_INPUT = 2
    TIMED_OUT = 124
    SIGHUP = 128 + signal.SIGHUP
    SIGINT = 128 + signal.SIGINT
    SIGTERM = 128 + signal.SIGTERM


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "every process finished cleanly and all rounds ran",
    ExitCode.WORKLOAD_FAILED: "a workload failed; the first real failure is named",
    ExitCode.INVALID_INPUT: "invalid arguments or data, found before anything started",
    ExitCode.TIMED_OUT: "the whole-run --timeout expired",
    ExitCode.SIGHUP: "interrupted by SIGHUP",
    ExitCode.SIGINT: "interrupted by SIGINT (Ctrl-C)",
    ExitCode.SIGTERM: "interrupted by SIGTERM",
}


def for_signal(signum: int) -> ExitCode:
    """Return the exit code for a run interrupted by `signum`."""
    return ExitCode(128 + signum)


def help_table() -> str:
    """Return the exit codes as lines for `--help`."""
    return "\n".join(f"  {code.value:<4} {MEANINGS[code]}" for code in ExitCode)
