"""Fixtures that build small CIFAR-10-shaped files and an isolated Keras cache."""

from __future__ import annotations

import io
import pickle
import socket
import tarfile
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from workloads import cifar10

IMAGES_PER_BATCH = 20


def fake_batch(batch_index: int, count: int = IMAGES_PER_BATCH) -> dict[bytes, object]:
    """Return a dict in the CIFAR-10 python batch layout with recognisable pixels.

    Image i of batch b has red plane value b, green plane value i and blue plane
    value (b * 7 + i) % 256. Pixel (row 0, col 1) of the red plane is 200 + i % 50
    instead, so tests can check the channel-last transpose.
    """
    data = np.zeros((count, 3, 32, 32), dtype=np.uint8)
    for i in range(count):
        data[i, 0] = batch_index
        data[i, 1] = i
        data[i, 2] = (batch_index * 7 + i) % 256
        data[i, 0, 0, 1] = 200 + i % 50
    return {
        b"batch_label": f"fake batch {batch_index}".encode(),
        b"labels": [(batch_index + i) % 10 for i in range(count)],
        b"data": data.reshape(count, 3072),
        b"filenames": [f"img_{batch_index}_{i}.png".encode() for i in range(count)],
    }


def batch_bytes(batch_index: int, count: int = IMAGES_PER_BATCH) -> bytes:
    """Pickle a fake batch with protocol 2, the protocol of the real CIFAR-10 files."""
    return pickle.dumps(fake_batch(batch_index, count), protocol=2)


BATCH_FILES = {name: index for index, name in enumerate((*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH), start=1)}


@pytest.fixture
def cifar_fakes() -> types.SimpleNamespace:
    """Expose the fake-batch helpers to tests, which cannot import conftest reliably."""
    return types.SimpleNamespace(images_per_batch=IMAGES_PER_BATCH, fake_batch=fake_batch, batch_bytes=batch_bytes)


@pytest.fixture
def make_batches_dir() -> Callable[[Path], Path]:
    """Return a function that writes fake data_batch_1..5 and test_batch into a folder."""

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, index in BATCH_FILES.items():
            (folder / name).write_bytes(batch_bytes(index))
        return folder

    return make


@pytest.fixture
def make_archive() -> Callable[[Path], Path]:
    """Return a function that writes a fake cifar-10-python.tar.gz with the real member names."""

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tar:
            for name, index in BATCH_FILES.items():
                payload = batch_bytes(index)
                info = tarfile.TarInfo(f"{cifar10.BATCHES_DIR}/{name}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        return path

    return make


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point KERAS_HOME at an empty folder so tests never see the user's Keras cache."""
    home = tmp_path / "keras-home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def closed_port_url() -> str:
    """Return an http URL on 127.0.0.1 at a port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
