"""Tests for reading CIFAR-10 batches, the Keras cache lookup and the loopback download path."""

from __future__ import annotations

import hashlib
import http.server
import pickle
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from workloads import cifar10, data
from workloads.data import DataError

# Matches conftest.IMAGES_PER_BATCH; test_fake_batch_size checks that.
IMAGES_PER_BATCH = 20
TRAIN_SIZE = 5 * IMAGES_PER_BATCH


def load(dataset: str, data_dir: Path | None, warnings: list[str] | None = None) -> data.Dataset:
    sink = warnings if warnings is not None else []
    return data.load_dataset(
        dataset,
        data_dir,
        seed=0,
        download_timeout_s=5.0,
        warn=sink.append,
        synthetic_train=200,
        synthetic_test=50,
    )


def forbid_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> Path:
        raise AssertionError("load_dataset tried to download")

    monkeypatch.setattr(cifar10, "download_to_keras_cache", fail)


def check_fake_cifar(dataset: data.Dataset) -> None:
    assert dataset.name == "cifar10"
    assert dataset.x_train.shape == (TRAIN_SIZE, 32, 32, 3)
    assert dataset.x_train.dtype == np.uint8
    assert dataset.y_train.shape == (TRAIN_SIZE,)
    assert dataset.y_train.dtype == np.int64
    assert dataset.x_test.shape == (IMAGES_PER_BATCH, 32, 32, 3)
    assert dataset.y_test.shape == (IMAGES_PER_BATCH,)

    # Image 3 of data_batch_2 sits at train index 23: red plane 2, green 3, blue 17.
    image = dataset.x_train[IMAGES_PER_BATCH + 3]
    assert image[5, 5].tolist() == [2, 3, 17]
    assert image[0, 1, 0] == 203
    assert dataset.y_train[IMAGES_PER_BATCH + 3] == 5
    # test_batch is file number 6 in conftest.BATCH_FILES.
    assert dataset.x_test[0, 5, 5].tolist() == [6, 0, 42]
    assert dataset.y_test.tolist() == [(6 + i) % 10 for i in range(IMAGES_PER_BATCH)]


def test_fake_batch_size(cifar_fakes: types.SimpleNamespace) -> None:
    assert cifar_fakes.images_per_batch == IMAGES_PER_BATCH


def test_read_batches_folder_itself(tmp_path: Path, make_batches_dir: Callable[[Path], Path]) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")

    dataset = load("cifar10", folder)

    check_fake_cifar(dataset)
    assert dataset.origin == "data-dir"
    assert dataset.location == str(folder)


def test_read_parent_folder(tmp_path: Path, make_batches_dir: Callable[[Path], Path]) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")

    dataset = load("cifar10", tmp_path)

    check_fake_cifar(dataset)
    assert dataset.location == str(folder)


def test_read_archive_in_folder(tmp_path: Path, make_archive: Callable[[Path], Path]) -> None:
    archive = make_archive(tmp_path / "cifar-10-python.tar.gz")

    dataset = load("cifar10", tmp_path)

    check_fake_cifar(dataset)
    assert dataset.location == str(archive)
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_auto_with_data_dir_reads_it(tmp_path: Path, make_batches_dir: Callable[[Path], Path]) -> None:
    make_batches_dir(tmp_path / "cifar-10-batches-py")

    dataset = load("auto", tmp_path)

    check_fake_cifar(dataset)


def test_corrupt_batch_names_file(
    tmp_path: Path, make_batches_dir: Callable[[Path], Path], cifar_fakes: types.SimpleNamespace
) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")
    corrupt = folder / "data_batch_3"
    corrupt.write_bytes(cifar_fakes.batch_bytes(3)[:100])

    with pytest.raises(DataError, match=f"cannot read CIFAR-10 batch {corrupt}"):
        load("cifar10", folder)


def test_corrupt_batch_is_error_for_auto(tmp_path: Path, make_batches_dir: Callable[[Path], Path]) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")
    (folder / "test_batch").write_bytes(b"not a pickle")

    with pytest.raises(DataError, match="test_batch"):
        load("auto", folder)


def test_corrupt_archive_names_file(tmp_path: Path, make_archive: Callable[[Path], Path]) -> None:
    archive = make_archive(tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[:300])

    with pytest.raises(DataError, match=str(archive)):
        load("cifar10", tmp_path)


def test_missing_folder_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"

    with pytest.raises(DataError, match=f"data directory {missing} does not exist"):
        load("cifar10", missing)


def test_folder_without_cifar_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="contains neither CIFAR-10 batch files"):
        load("auto", tmp_path)


def test_missing_batch_file_named(tmp_path: Path, make_batches_dir: Callable[[Path], Path]) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_5").unlink()

    with pytest.raises(DataError, match="is missing data_batch_5"):
        load("cifar10", folder)


def test_label_out_of_range_raises(
    tmp_path: Path, make_batches_dir: Callable[[Path], Path], cifar_fakes: types.SimpleNamespace
) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")
    batch = cifar_fakes.fake_batch(1)
    batch[b"labels"] = [0] * (IMAGES_PER_BATCH - 1) + [10]
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))

    with pytest.raises(DataError, match=r"data_batch_1: labels must be in 0-9, got values from 0 to 10"):
        load("cifar10", folder)


def test_wrong_image_size_raises(
    tmp_path: Path, make_batches_dir: Callable[[Path], Path], cifar_fakes: types.SimpleNamespace
) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")
    batch = cifar_fakes.fake_batch(1)
    batch[b"data"] = np.zeros((IMAGES_PER_BATCH, 1024), dtype=np.uint8)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))

    expected = r"must be a uint8 array of shape \(N, 3072\), got uint8 with shape \(20, 1024\)"
    with pytest.raises(DataError, match=expected):
        load("cifar10", folder)


def test_pickle_with_code_rejected(tmp_path: Path, make_batches_dir: Callable[[Path], Path]) -> None:
    folder = make_batches_dir(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": print}, protocol=2))

    with pytest.raises(DataError, match=r"data_batch_2: UnpicklingError: global __builtin__.print is not allowed"):
        load("cifar10", folder)


def test_keras_cache_honours_keras_home(
    keras_home: Path, make_batches_dir: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    folder = make_batches_dir(keras_home / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py")

    dataset = load("cifar10", None)

    check_fake_cifar(dataset)
    assert dataset.origin == "keras-cache"
    assert dataset.location == str(folder)


def test_keras_cache_flat_layout(
    keras_home: Path, make_batches_dir: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    folder = make_batches_dir(keras_home / "datasets" / "cifar-10-batches-py")

    dataset = load("auto", None)

    assert dataset.origin == "keras-cache"
    assert dataset.location == str(folder)


def test_damaged_keras_cache_raises(
    keras_home: Path, make_batches_dir: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    folder = make_batches_dir(keras_home / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py")
    (folder / "data_batch_4").write_bytes(b"\x80\x02garbage")

    with pytest.raises(DataError, match="Keras cache copy is damaged: delete"):
        load("auto", None)


def test_auto_unreachable_download_falls_back(
    keras_home: Path, closed_port_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar10, "CIFAR10_URL", closed_port_url)
    warnings: list[str] = []

    dataset = load("auto", None, warnings)

    assert dataset.name == "synthetic"
    assert dataset.origin == "generated"
    assert dataset.x_train.shape == (200, 32, 32, 3)
    assert len(warnings) == 1
    assert closed_port_url in warnings[0]
    assert "--data-dir PATH" in warnings[0]
    assert "--dataset cifar10" in warnings[0]


def test_cifar10_unreachable_download_raises(
    keras_home: Path, closed_port_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar10, "CIFAR10_URL", closed_port_url)
    warnings: list[str] = []

    with pytest.raises(DataError, match=f"download of {closed_port_url} failed") as raised:
        load("cifar10", None, warnings)

    assert "--data-dir PATH" in str(raised.value)
    assert warnings == []


@pytest.fixture
def archive_server(tmp_path: Path, make_archive: Callable[[Path], Path]) -> Iterator[tuple[str, bytes]]:
    """Serve a fake cifar-10-python.tar.gz over HTTP on 127.0.0.1; yield its URL and bytes."""
    payload = make_archive(tmp_path / "served" / "cifar-10-python.tar.gz").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz", payload
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_fills_keras_cache(
    keras_home: Path, archive_server: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, payload = archive_server
    monkeypatch.setattr(cifar10, "CIFAR10_URL", url)
    monkeypatch.setattr(cifar10, "CIFAR10_SHA256", hashlib.sha256(payload).hexdigest())
    cache = keras_home / "datasets"

    downloaded = load("cifar10", None)

    check_fake_cifar(downloaded)
    assert downloaded.origin == "download"
    batches_dir = cache / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    assert downloaded.location == str(batches_dir)
    assert sorted(p.name for p in batches_dir.iterdir()) == sorted(
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    )
    assert (cache / "cifar-10-batches-py-target_archive").read_bytes() == payload
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []

    forbid_download(monkeypatch)
    cached = load("cifar10", None)
    assert cached.origin == "keras-cache"


def test_download_checksum_mismatch_raises(
    keras_home: Path, archive_server: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = archive_server
    monkeypatch.setattr(cifar10, "CIFAR10_URL", url)

    with pytest.raises(DataError, match=f"expected {cifar10.CIFAR10_SHA256}"):
        load("cifar10", None)

    assert not (keras_home / "datasets" / "cifar-10-batches-py-target").exists()


def test_auto_checksum_mismatch_falls_back(
    keras_home: Path, archive_server: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = archive_server
    monkeypatch.setattr(cifar10, "CIFAR10_URL", url)
    warnings: list[str] = []

    dataset = load("auto", None, warnings)

    assert dataset.name == "synthetic"
    assert len(warnings) == 1
    assert "SHA-256" in warnings[0]


def test_keras_cache_dir_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert cifar10.keras_cache_dir() == tmp_path / ".keras" / "datasets"
