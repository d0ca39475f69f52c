"""Write files atomically, so readers never see a partly written file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# mkstemp creates files with mode 0o600, but other programs read these files.
FILE_MODE = 0o644


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call `write` on a temporary file in path's folder, then rename it over `path`.

    The rename is atomic on POSIX file systems, so `path` contains either the old or
    the new content. The temporary file is removed if `write` raises.
    """
    descriptor, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, content: Any) -> None:
    """Write `content` as indented JSON with a trailing newline, atomically."""
    encoded = (json.dumps(content, indent=2) + "\n").encode()
    write_atomically(path, lambda stream: stream.write(encoded))
