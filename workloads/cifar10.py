"""Read CIFAR-10 in its "python version" layout, find it in Keras's cache, or download it.

Uses numpy and the standard library only, because the supervisor imports this
module in-process and importing TensorFlow there would cost seconds and memory.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from workloads.errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The SHA-256 that Keras 3.15 checks in keras/src/datasets/cifar10.py.
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"

BATCHES_DIR = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"

# keras.datasets.cifar10.load_data() in Keras 3 calls get_file(fname=KERAS_FNAME,
# extract=True). That stores the archive as <cache>/KERAS_FNAME + "_archive" and
# extracts it into <cache>/KERAS_FNAME/, so the batches end up in
# <cache>/cifar-10-batches-py-target/cifar-10-batches-py/.
KERAS_FNAME = "cifar-10-batches-py-target"
KERAS_ARCHIVE_NAME = KERAS_FNAME + "_archive"

CONNECT_TIMEOUT_S = 10.0
_READ_CHUNK_BYTES = 1 << 20

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
PIXELS_PER_IMAGE = 32 * 32 * 3

SplitArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# The CIFAR batch pickles contain a dict of bytes keys, a uint8 ndarray and lists.
# Only the globals needed to rebuild such an ndarray are allowed, so a tampered
# file cannot run code through a pickle __reduce__ gadget. "_codecs.encode"
# appears in protocol-2 pickles written by Python 3.
_ALLOWED_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def decode_batch(stream: IO[bytes], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR-10 python batch into images (N, 32, 32, 3) uint8 and labels (N,) int64.

    `source` names the file in error messages. Raises DataError when the pickle is
    unreadable, lacks b"data" or b"labels", has the wrong shape or dtype, or has
    labels outside 0-9.
    """
    try:
        content = _NumpyOnlyUnpickler(stream, encoding="bytes").load()
    except Exception as error:  # pickle raises many types on corrupt input
        raise DataError(
            f"cannot read CIFAR-10 batch {source}: {type(error).__name__}: {error}; "
            "the file is corrupt or not a CIFAR-10 python batch, so replace it "
            f"with one from a fresh copy of {ARCHIVE_NAME}"
        ) from error

    if not isinstance(content, dict) or b"data" not in content or b"labels" not in content:
        raise DataError(
            f"invalid CIFAR-10 batch {source}: expected a dict with keys b'data' and "
            f"b'labels'; replace it with one from a fresh copy of {ARCHIVE_NAME}"
        )

    data = content[b"data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS_PER_IMAGE
    ):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(
            f"invalid CIFAR-10 batch {source}: b'data' must be a uint8 array of shape "
            f"(N, {PIXELS_PER_IMAGE}), got {dtype} with shape {shape}"
        )

    try:
        labels = np.asarray(content[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DataError(f"invalid CIFAR-10 batch {source}: b'labels' is not a list of integers") from error
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"invalid CIFAR-10 batch {source}: {data.shape[0]} images but b'labels' has shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(
            f"invalid CIFAR-10 batch {source}: labels must be in 0-{NUM_CLASSES - 1}, "
            f"got values from {labels.min()} to {labels.max()}"
        )

    # The batches store channel planes (N, 3, 32, 32), and Keras returns channels-last.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _concatenate_split(
    batches: list[tuple[np.ndarray, np.ndarray]], test: tuple[np.ndarray, np.ndarray]
) -> SplitArrays:
    x_train = np.concatenate([images for images, _ in batches])
    y_train = np.concatenate([labels for _, labels in batches])
    return x_train, y_train, test[0], test[1]


def read_batches_dir(batches_dir: Path) -> SplitArrays:
    """Read data_batch_1..5 and test_batch from an extracted cifar-10-batches-py/ folder."""
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (batches_dir / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 folder {batches_dir} is missing {', '.join(missing)}; extract a complete {ARCHIVE_NAME} there"
        )

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = batches_dir / name
        try:
            with path.open("rb") as stream:
                return decode_batch(stream, str(path))
        except OSError as error:
            raise DataError(f"cannot read CIFAR-10 batch {path}: {error}") from error

    return _concatenate_split([read(name) for name in TRAIN_BATCHES], read(TEST_BATCH))


def read_archive(archive: Path) -> SplitArrays:
    """Read the batches straight from a cifar-10-python.tar.gz archive without extracting it."""
    try:
        with tarfile.open(archive, "r:*") as tar:

            def read(name: str) -> tuple[np.ndarray, np.ndarray]:
                member_name = f"{BATCHES_DIR}/{name}"
                source = f"{archive}:{member_name}"
                try:
                    stream = tar.extractfile(member_name)
                except KeyError as error:
                    raise DataError(
                        f"CIFAR-10 archive {archive} has no member {member_name}; download a complete {ARCHIVE_NAME}"
                    ) from error
                if stream is None:
                    raise DataError(f"CIFAR-10 archive member {source} is not a regular file")
                with stream:
                    return decode_batch(stream, source)

            return _concatenate_split([read(name) for name in TRAIN_BATCHES], read(TEST_BATCH))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(
            f"cannot read CIFAR-10 archive {archive}: {error}; the file is corrupt or "
            f"truncated, so download {ARCHIVE_NAME} again"
        ) from error


def read_data_dir(data_dir: Path) -> tuple[SplitArrays, Path]:
    """Read CIFAR-10 from a user-named folder and return the arrays and the path read.

    The folder may be cifar-10-batches-py/ itself, contain it, or contain
    cifar-10-python.tar.gz. The first of these that exists is read.
    """
    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist or is not a folder; use --data-dir PATH "
            f"pointing at a folder with {BATCHES_DIR}/ or {ARCHIVE_NAME}, or --dataset synthetic"
        )
    if (data_dir / TEST_BATCH).exists() or (data_dir / TRAIN_BATCHES[0]).exists():
        return read_batches_dir(data_dir), data_dir
    if (data_dir / BATCHES_DIR).is_dir():
        return read_batches_dir(data_dir / BATCHES_DIR), data_dir / BATCHES_DIR
    if (data_dir / ARCHIVE_NAME).is_file():
        return read_archive(data_dir / ARCHIVE_NAME), data_dir / ARCHIVE_NAME
    raise DataError(
        f"data directory {data_dir} contains neither CIFAR-10 batch files, {BATCHES_DIR}/ "
        f"nor {ARCHIVE_NAME}; use --data-dir PATH pointing at a folder with one of them, "
        "or --dataset synthetic"
    )


def keras_cache_dir() -> Path:
    """Return the folder where Keras 3 caches datasets: $KERAS_HOME/datasets or ~/.keras/datasets.

    Mirrors keras/src/backend/config.py in Keras 3.15, including its fallback to
    /tmp/.keras when the home folder is not writable.
    """
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        return Path(keras_home).expanduser() / "datasets"
    home = Path("~").expanduser()
    base = home if os.access(home, os.W_OK) else Path("/tmp")
    return base / ".keras" / "datasets"


def find_in_keras_cache(cache_dir: Path) -> Path | None:
    """Return the cached cifar-10-batches-py/ folder, or None when the cache does not have one."""
    for candidate in (cache_dir / KERAS_FNAME / BATCHES_DIR, cache_dir / BATCHES_DIR):
        if candidate.is_dir():
            return candidate
    return None


def download_to_keras_cache(
    cache_dir: Path,
    *,
    url: str,
    sha256: str,
    timeout_s: float,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download the CIFAR-10 archive, extract it in Keras's cache layout and return the batches folder.

    The archive is downloaded to a temporary file, checked against `sha256`, kept as
    <cache>/cifar-10-batches-py-target_archive and extracted into
    <cache>/cifar-10-batches-py-target/, which is where keras.datasets.cifar10 looks.
    Raises DataError when the download fails, exceeds `timeout_s` seconds in total,
    or the checksum does not match.
    """
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the Keras dataset cache {cache_dir}: {error}") from error

    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".cifar10-download-") as scratch:
        scratch_dir = Path(scratch)
        archive_tmp = scratch_dir / ARCHIVE_NAME
        _download(url, archive_tmp, timeout_s=timeout_s, log=log)
        _verify_sha256(archive_tmp, sha256, url)

        extract_tmp = scratch_dir / KERAS_FNAME
        _extract_batches(archive_tmp, extract_tmp)

        target_dir = cache_dir / KERAS_FNAME
        if target_dir.exists():
            shutil.rmtree(target_dir)
        os.replace(extract_tmp, target_dir)
        os.replace(archive_tmp, cache_dir / KERAS_ARCHIVE_NAME)

    return target_dir / BATCHES_DIR


def _download(url: str, destination: Path, *, timeout_s: float, log: Callable[[str], None] | None) -> None:
    deadline = time.monotonic() + timeout_s
    # The socket timeout bounds the connect and each read, so a stalled read can
    # overrun the total deadline by at most this much.
    socket_timeout_s = max(0.1, min(CONNECT_TIMEOUT_S, timeout_s))
    if log is not None:
        log(f"downloading {url} (deadline {timeout_s:.0f} s)")
    try:
        with urllib.request.urlopen(url, timeout=socket_timeout_s) as response, destination.open("wb") as out:
            while True:
                if time.monotonic() > deadline:
                    raise DataError(
                        f"download of {url} timed out after {timeout_s:.0f} s; raise "
                        "--download-timeout, or download the archive yourself and pass --data-dir"
                    )
                chunk = response.read(_READ_CHUNK_BYTES)
                if not chunk:
                    break
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as error:
        # URLError wraps HTTP errors, DNS failures and refused connections. TimeoutError
        # and other socket errors are OSError, and ValueError means a malformed URL.
        raise DataError(f"download of {url} failed: {error}") from error


def _verify_sha256(path: Path, expected: str, url: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_READ_CHUNK_BYTES), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DataError(
            f"download of {url} has SHA-256 {digest.hexdigest()}, expected {expected}; "
            "the transfer was corrupted or the server returned another file, so try again"
        )


def _extract_batches(archive: Path, destination: Path) -> None:
    """Extract only regular files under cifar-10-batches-py/, so no member can escape `destination`."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) != 2 or parts[0] != BATCHES_DIR:
                    continue
                if parts[1] in ("", ".", ".."):
                    continue
                stream = tar.extractfile(member)
                if stream is None:
                    continue
                target = destination / BATCHES_DIR / parts[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                with stream, target.open("wb") as out:
                    shutil.copyfileobj(stream, out)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"cannot extract CIFAR-10 archive {archive}: {error}") from error
