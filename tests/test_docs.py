"""The README documents what the code does."""

from pathlib import Path

from supervisor.exitcodes import MEANINGS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_documents_every_exit_code() -> None:
    text = README.read_text()
    for code in MEANINGS:
        assert f"| {int(code)} |" in text, f"exit code {int(code)} missing from the README table"


def test_readme_shows_test_command() -> None:
    assert "python -m pytest" in README.read_text()
