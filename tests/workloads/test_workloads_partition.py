"""Tests for partition(), write_partitions(), load_partition() and the data CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workloads import data
from workloads.data import DataError, Dataset


def numbered_dataset(num_train: int, num_test: int) -> Dataset:
    """Return a Dataset whose images carry their own index in the first three bytes.

    Test images are numbered from 1_000_000 so train and test ids never collide.
    """

    def images(first_id: int, count: int) -> np.ndarray:
        out = np.zeros((count, 32, 32, 3), dtype=np.uint8)
        ids = np.arange(first_id, first_id + count)
        out[:, 0, 0, 0] = ids % 256
        out[:, 0, 0, 1] = (ids // 256) % 256
        out[:, 0, 0, 2] = ids // 65536
        return out

    return Dataset(
        x_train=images(0, num_train),
        y_train=np.arange(num_train, dtype=np.int64) % 10,
        x_test=images(1_000_000, num_test),
        y_test=np.arange(num_test, dtype=np.int64) % 10,
        name="synthetic",
        origin="generated",
        location=None,
    )


def image_ids(images: np.ndarray) -> set[int]:
    pixels = images[:, 0, 0, :].astype(np.int64)
    return set((pixels[:, 0] + pixels[:, 1] * 256 + pixels[:, 2] * 65536).tolist())


def test_partition_sizes_equal_and_remainder_dropped() -> None:
    parts = data.partition(numbered_dataset(103, 31), num_clients=4, seed=0)

    assert len(parts) == 4
    assert [len(p.y_train) for p in parts] == [25] * 4
    assert [len(p.y_test) for p in parts] == [7] * 4
    for p in parts:
        assert p.x_train.shape == (25, 32, 32, 3)
        assert p.x_test.shape == (7, 32, 32, 3)


def test_partition_splits_disjoint_across_clients() -> None:
    dataset = numbered_dataset(100, 40)
    parts = data.partition(dataset, num_clients=4, seed=3)

    train_sets = [image_ids(p.x_train) for p in parts]
    test_sets = [image_ids(p.x_test) for p in parts]
    assert [len(s) for s in train_sets] == [25] * 4
    assert [len(s) for s in test_sets] == [10] * 4
    for sets in (train_sets, test_sets):
        assert len(set().union(*sets)) == sum(len(s) for s in sets)
    assert set().union(*train_sets) == image_ids(dataset.x_train)
    assert set().union(*test_sets) == image_ids(dataset.x_test)


def test_partition_labels_follow_images() -> None:
    dataset = numbered_dataset(50, 20)
    for p in data.partition(dataset, num_clients=2, seed=5):
        ids = p.x_train[:, 0, 0, 0].astype(np.int64) + p.x_train[:, 0, 0, 1].astype(np.int64) * 256
        np.testing.assert_array_equal(p.y_train, ids % 10)


def test_partition_same_seed_same_split() -> None:
    dataset = numbered_dataset(60, 30)
    first = data.partition(dataset, num_clients=3, seed=11)
    second = data.partition(dataset, num_clients=3, seed=11)

    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.x_test, b.x_test)


def test_partition_other_seed_other_split() -> None:
    dataset = numbered_dataset(60, 30)
    first = data.partition(dataset, num_clients=3, seed=11)
    second = data.partition(dataset, num_clients=3, seed=12)

    assert image_ids(first[0].x_train) != image_ids(second[0].x_train)
    assert image_ids(first[0].x_test) != image_ids(second[0].x_test)


def test_partition_too_many_clients_raises() -> None:
    with pytest.raises(DataError, match=r"5 train and 3 test examples across 4 clients"):
        data.partition(numbered_dataset(5, 3), num_clients=4, seed=0)


def test_partition_zero_clients_raises() -> None:
    with pytest.raises(DataError, match="must be >= 1, got 0"):
        data.partition(numbered_dataset(5, 3), num_clients=0, seed=0)


def test_write_partitions_roundtrip(tmp_path: Path) -> None:
    dataset = numbered_dataset(40, 20)
    out_dir = tmp_path / "parts"

    manifest = data.write_partitions(dataset, num_clients=2, seed=7, out_dir=out_dir)

    assert manifest["dataset"] == "synthetic"
    assert manifest["origin"] == "generated"
    assert manifest["location"] is None
    assert manifest["seed"] == 7
    assert manifest["num_clients"] == 2
    assert manifest["train_per_client"] == 20
    assert manifest["test_per_client"] == 10
    assert manifest["partitions"] == [str((out_dir / f"partition-{i}.npz").resolve()) for i in range(2)]
    assert json.loads((out_dir / "dataset.json").read_text()) == manifest

    expected = data.partition(dataset, num_clients=2, seed=7)
    for path, part in zip(manifest["partitions"], expected, strict=True):
        loaded = data.load_partition(Path(path))
        for key in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(loaded, key), getattr(part, key))
    assert not list(out_dir.glob(".*.tmp"))


def test_load_partition_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "partition-9.npz"
    with pytest.raises(DataError, match=f"{missing} not found"):
        data.load_partition(missing)


def test_load_partition_corrupt_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "partition-0.npz"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="cannot read partition file"):
        data.load_partition(corrupt)


def test_load_partition_missing_array(tmp_path: Path) -> None:
    path = tmp_path / "partition-0.npz"
    with path.open("wb") as stream:
        np.savez(stream, x_train=np.zeros((1, 32, 32, 3), np.uint8), y_train=np.zeros(1, np.int64))
    with pytest.raises(DataError, match="lacks x_test, y_test"):
        data.load_partition(path)


def test_load_partition_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "partition-0.npz"
    with path.open("wb") as stream:
        np.savez(
            stream,
            x_train=np.zeros((2, 28, 28), np.uint8),
            y_train=np.zeros(2, np.int64),
            x_test=np.zeros((1, 32, 32, 3), np.uint8),
            y_test=np.zeros(1, np.int64),
        )
    with pytest.raises(DataError, match=r"x_train must be uint8 \(N, 32, 32, 3\)"):
        data.load_partition(path)


def test_cli_writes_synthetic_partitions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    status = data.main(
        [
            "--dataset",
            "synthetic",
            "--clients",
            "3",
            "--seed",
            "4",
            "--out",
            str(out_dir),
            "--synthetic-train",
            "300",
            "--synthetic-test",
            "60",
        ]
    )

    assert status == 0
    manifest = json.loads((out_dir / "dataset.json").read_text())
    assert manifest["train_per_client"] == 100
    assert manifest["test_per_client"] == 20
    assert all(Path(p).is_file() for p in manifest["partitions"])
    assert "partitions: 3 x 100 train / 20 test examples" in capsys.readouterr().out


def test_cli_data_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    status = data.main(["--dataset", "cifar10", "--data-dir", str(missing), "--clients", "2", "--out", str(tmp_path)])

    assert status == 2
    err = capsys.readouterr().err
    assert f"data directory {missing} does not exist" in err
    assert "--dataset synthetic" in err
