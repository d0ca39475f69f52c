"""Invalid input ends the run with exit code 2 before anything starts."""

import socket
from pathlib import Path

import pytest

from supervisor.cli import main
from supervisor.config import ConfigError, parse_config
from supervisor.rundir import create_run_dir


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--clients", "0"], "--clients 0 is below 1"),
        (["--rounds", "0"], "--rounds 0 is below 1"),
        (["--fraction-fit", "0"], "--fraction-fit 0.0 is outside (0, 1]"),
        (["--fraction-fit", "1.5"], "--fraction-fit 1.5 is outside (0, 1]"),
        (["--fraction-evaluate", "-0.1"], "--fraction-evaluate -0.1 is outside (0, 1]"),
        (["--clients", "3", "--fraction-fit", "0.2"], "samples 0 clients per round"),
        (["--grace", "-1"], "--grace -1.0 is negative"),
        (["--timeout", "0"], "--timeout 0.0 must be a positive number"),
        (["--dataset", "synthetic", "--data-dir", "."], "conflicts with --dataset synthetic"),
        (["--data-dir", "/nonexistent/cifar"], "--data-dir /nonexistent/cifar is not a folder"),
        (["--port", "70000"], "--port 70000 is outside 1-65535"),
        (["--host", "example"], "--host example is not an IP address"),
    ],
)
def test_invalid_option_rejected(options: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        parse_config(options)
    assert expected in str(error.value)


def test_port_in_use_rejected() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as error:
            parse_config(["--port", str(port)])
    assert f"port {port} on 127.0.0.1 is already in use" in str(error.value)


def test_main_exits_2_without_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["--clients", "0", "--run-dir", str(run_dir)]) == 2
    assert "error: --clients 0 is below 1" in capsys.readouterr().err
    assert not run_dir.exists()


def test_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--no-such-option"])
    assert exit_info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_unwritable_run_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--dataset", "synthetic", "--run-dir", str(blocker)]) == 2
    assert "cannot write the run folder" in capsys.readouterr().err


def test_read_only_run_folder_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # /proc rejects new folders even for root, so this is true in CI too.
    assert main(["--dataset", "synthetic", "--run-dir", "/proc/fl-supervisor-run"]) == 2
    assert "cannot write the run folder /proc/fl-supervisor-run" in capsys.readouterr().err


def test_run_folder_under_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--dataset", "synthetic", "--run-dir", str(blocker / "run")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_run_folder_missing_parent_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "missing" / "run"
    assert main(["--dataset", "synthetic", "--run-dir", str(run_dir)]) == 2
    assert "the parent folder" in capsys.readouterr().err
    assert not run_dir.parent.exists()


def test_run_folder_in_use_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = create_run_dir(tmp_path / "run")
    try:
        assert main(["--dataset", "synthetic", "--run-dir", str(tmp_path / "run")]) == 2
    finally:
        holder.unlock()
    assert "is in use by another run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--seed", "-1"], "--seed -1 is below 0"),
        (["--seed", str(2**32 - 1), "--clients", "2"], "--seed 4294967295 is too large"),
        (["--clients", "3", "--fraction-fit", "0.333"], "raise --fraction-fit to at least 0.334"),
        (["--clients", "1"], "of 1 client samples 0 clients"),
    ],
)
def test_seed_and_fraction_messages(options: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(options)
    assert expected in str(error.value)


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for code in ("0", "1", "2", "124", "130", "143"):
        assert f"  {code} " in text
