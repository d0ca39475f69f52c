"""The run folder: raw logs, resource samples, round history and summary.json.

Layout:
    logs/<name>.stdout.log, logs/<name>.stderr.log   each child's bytes, unchanged
    resources.csv                                    one row per process per sample
    history.json                                     per-round loss and accuracy (server)
    partitions/                                      the clients' data, removed at the end
    summary.json                                     written on every exit path
"""

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class RunDirError(Exception):
    """The run folder cannot be created or written; the message names the fix."""


class RunDir:
    """Paths inside one run folder, and the lock that keeps a second run out of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.supervisor_log = root / "logs" / "supervisor.log"
        self._lock: int | None = None
        self.logs = root / "logs"
        self.partitions = root / "partitions"
        self.resources = root / "resources.csv"
        self.history = root / "history.json"
        self.summary = root / "summary.json"

    def lock(self) -> None:
        """Hold an exclusive lock on the folder until this process exits.

        Two runs writing the same folder would mix their logs and samples.
        """
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunDirError(
                f"--run-dir {self.root} is in use by another run; choose another folder "
                "or omit --run-dir for a time-stamped one"
            ) from None
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def create_run_dir(root: Path, create_parents: bool = False) -> RunDir:
    """Create `root` and its logs folder; raise RunDirError if that fails.

    The parent folder must exist unless `create_parents` is set, so that a
    mistyped --run-dir is reported instead of creating a new tree. An
    existing folder is accepted only if it contains no summary.json, so that
    one run never overwrites another's results.
    """
    run_dir = RunDir(root)
    if not create_parents and not root.parent.is_dir():
        problem = "is not a folder" if root.parent.exists() else "does not exist"
        raise RunDirError(
            f"--run-dir {root}: the parent folder {root.parent} {problem}; create it first "
            "or omit --run-dir for a time-stamped folder under runs/"
        )
    if run_dir.summary.exists():
        raise RunDirError(
            f"--run-dir {root} already contains a finished run (summary.json); choose a new folder "
            "or omit --run-dir for a time-stamped one"
        )
    try:
        run_dir.logs.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-check-"):
            pass
    except OSError as error:
        raise RunDirError(
            f"cannot write the run folder {root}: {error.strerror or error}; choose a writable --run-dir"
        ) from error
    run_dir.lock()
    return run_dir


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON through a temporary file, so readers never see half a file."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=str)
            handle.write("\n")
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    """Return the parsed file, or None if it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
