"""Tests for the synthetic CIFAR-10 stand-in."""

from __future__ import annotations

import numpy as np
import pytest

from workloads import data
from workloads.data import DataError


def synthetic(seed: int, num_train: int = 5000, num_test: int = 1000) -> data.Dataset:
    return data.load_dataset(
        "synthetic",
        None,
        seed=seed,
        download_timeout_s=1.0,
        warn=lambda message: pytest.fail(f"unexpected warning: {message}"),
        synthetic_train=num_train,
        synthetic_test=num_test,
    )


def test_synthetic_layout() -> None:
    dataset = synthetic(seed=1, num_train=1003, num_test=200)

    assert dataset.name == "synthetic"
    assert dataset.origin == "generated"
    assert dataset.location is None
    assert dataset.x_train.shape == (1003, 32, 32, 3)
    assert dataset.x_train.dtype == np.uint8
    assert dataset.y_train.dtype == np.int64
    assert dataset.x_test.shape == (200, 32, 32, 3)
    assert set(np.unique(dataset.y_train).tolist()) == set(range(10))
    counts = np.bincount(dataset.y_train, minlength=10)
    assert counts.max() - counts.min() <= 1


def test_synthetic_default_size() -> None:
    dataset = data.load_dataset("synthetic", None, seed=0, download_timeout_s=1.0, warn=pytest.fail)

    assert len(dataset.y_train) == 50000
    assert len(dataset.y_test) == 10000


def test_synthetic_deterministic_per_seed() -> None:
    first, second, other = synthetic(seed=5), synthetic(seed=5), synthetic(seed=6)

    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert not np.array_equal(first.x_train, other.x_train)


def test_synthetic_learnable_by_nearest_centroid() -> None:
    dataset = synthetic(seed=2)
    x_train = dataset.x_train.reshape(len(dataset.x_train), -1).astype(np.float32)
    x_test = dataset.x_test.reshape(len(dataset.x_test), -1).astype(np.float32)
    centroids = np.stack([x_train[dataset.y_train == c].mean(axis=0) for c in range(10)])

    distances = ((x_test[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    accuracy = float((distances.argmin(axis=1) == dataset.y_test).mean())

    assert accuracy > 0.8


def test_synthetic_negative_size_raises() -> None:
    with pytest.raises(DataError, match="train=-1"):
        synthetic(seed=0, num_train=-1)
