"""Load CIFAR-10 (or synthetic stand-in data), split it across clients and store the splits.

Imports numpy and the standard library only, never TensorFlow or Keras, because
the supervisor imports this module in-process.

Run `python -m workloads.data --help` to prepare partitions from the command line.
"""

from __future__ import annotations

import argparse
import functools
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from workloads import cifar10, synthetic
from workloads.errors import DataError
from workloads.files import write_atomically, write_json_atomically

__all__ = [
    "DataError",
    "Dataset",
    "Partition",
    "load_dataset",
    "load_partition",
    "main",
    "partition",
    "write_partitions",
]

DATASET_CHOICES = ("auto", "cifar10", "synthetic")
DEFAULT_DOWNLOAD_TIMEOUT_S = 300.0
PARTITION_KEYS = ("x_train", "y_train", "x_test", "y_test")
MANIFEST_NAME = "dataset.json"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits: uint8 images (N, 32, 32, 3) and int64 labels (N,) in 0-9.

    `name` is "cifar10" or "synthetic". `origin` is where the data came from:
    "data-dir", "keras-cache", "download" or "generated". `location` is the file
    or folder read, or None for generated data.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    origin: str
    location: str | None


@dataclass(frozen=True, eq=False)
class Partition:
    """One client's share of a Dataset, with the same array layout."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(
    dataset: str,
    data_dir: Path | None,
    *,
    seed: int,
    download_timeout_s: float,
    warn: Callable[[str], None],
    synthetic_train: int = 50000,
    synthetic_test: int = 10000,
) -> Dataset:
    """Load `dataset` ("auto", "cifar10" or "synthetic") and return it.

    "cifar10" reads `data_dir` when given, else Keras's dataset cache, else
    downloads into that cache within `download_timeout_s` seconds. Any failure
    raises DataError. "auto" behaves the same, except that a failed download calls
    `warn` with the reason and returns synthetic data. A `data_dir` that is invalid
    is an error for "auto" too. "synthetic" data is generated from `seed` with
    `synthetic_train` and `synthetic_test` examples.
    """
    if dataset not in DATASET_CHOICES:
        raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASET_CHOICES)}")

    if dataset == "synthetic":
        return _generate_synthetic(seed, synthetic_train, synthetic_test)

    if data_dir is not None:
        arrays, location = cifar10.read_data_dir(data_dir)
        return _cifar10_dataset(arrays, "data-dir", location)

    cache_dir = cifar10.keras_cache_dir()
    cached = cifar10.find_in_keras_cache(cache_dir)
    if cached is not None:
        try:
            arrays = cifar10.read_batches_dir(cached)
        except DataError as error:
            raise DataError(
                f"{error}. The Keras cache copy is damaged: delete {cached.parent} so it is "
                "downloaded again, or use --data-dir PATH"
            ) from error
        return _cifar10_dataset(arrays, "keras-cache", cached)

    try:
        downloaded = cifar10.download_to_keras_cache(
            cache_dir,
            url=cifar10.CIFAR10_URL,
            sha256=cifar10.CIFAR10_SHA256,
            timeout_s=download_timeout_s,
        )
        arrays = cifar10.read_batches_dir(downloaded)
    except DataError as error:
        if dataset == "cifar10":
            raise DataError(
                f"CIFAR-10 is not in the Keras cache {cache_dir} and {error}; use --data-dir PATH "
                f"pointing at a folder with {cifar10.BATCHES_DIR}/ or {cifar10.ARCHIVE_NAME}, "
                "or --dataset synthetic"
            ) from error
        warn(
            f"using synthetic data because CIFAR-10 is not in the Keras cache {cache_dir} and "
            f"{error}. To train on the real data, pass --data-dir PATH pointing at a folder with "
            f"{cifar10.BATCHES_DIR}/ or {cifar10.ARCHIVE_NAME}, or run with --dataset cifar10 "
            "once on a machine with internet access."
        )
        return _generate_synthetic(seed, synthetic_train, synthetic_test)
    return _cifar10_dataset(arrays, "download", downloaded)


def _cifar10_dataset(arrays: cifar10.SplitArrays, origin: str, location: Path) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    return Dataset(x_train, y_train, x_test, y_test, name="cifar10", origin=origin, location=str(location))


def _generate_synthetic(seed: int, num_train: int, num_test: int) -> Dataset:
    x_train, y_train, x_test, y_test = synthetic.generate(seed, num_train, num_test)
    return Dataset(x_train, y_train, x_test, y_test, name="synthetic", origin="generated", location=None)


def partition(dataset: Dataset, num_clients: int, seed: int) -> list[Partition]:
    """Shuffle train and test with `seed` and split each into `num_clients` equal parts.

    The remainder of each split (fewer than `num_clients` examples) is dropped.
    Raises DataError when a client would get no train or no test examples.
    """
    if num_clients < 1:
        raise DataError(f"number of clients must be >= 1, got {num_clients}")
    train_size, test_size = len(dataset.y_train), len(dataset.y_test)
    train_per_client = train_size // num_clients
    test_per_client = test_size // num_clients
    if train_per_client == 0 or test_per_client == 0:
        raise DataError(
            f"cannot split {train_size} train and {test_size} test examples across "
            f"{num_clients} clients: each client needs at least one of each; "
            "use fewer clients or more data"
        )

    rng = np.random.default_rng(seed)
    train_order = rng.permutation(train_size)
    test_order = rng.permutation(test_size)
    partitions = []
    for client in range(num_clients):
        train_index = train_order[client * train_per_client : (client + 1) * train_per_client]
        test_index = test_order[client * test_per_client : (client + 1) * test_per_client]
        partitions.append(
            Partition(
                x_train=dataset.x_train[train_index],
                y_train=dataset.y_train[train_index],
                x_test=dataset.x_test[test_index],
                y_test=dataset.y_test[test_index],
            )
        )
    return partitions


def write_partitions(dataset: Dataset, num_clients: int, seed: int, out_dir: Path) -> dict[str, Any]:
    """Write out_dir/partition-{i}.npz for each client and out_dir/dataset.json, and return the manifest.

    Each .npz (uncompressed) has the arrays x_train, y_train, x_test and y_test.
    The manifest has the keys dataset, origin, location, seed, num_clients,
    train_per_client, test_per_client and partitions (absolute .npz paths).
    Every file is written to a temporary name first and renamed into place.
    """
    parts = partition(dataset, num_clients, seed)
    out_dir = out_dir.resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, part in enumerate(parts):
            path = out_dir / f"partition-{index}.npz"
            write_atomically(path, functools.partial(_save_partition, part=part))
            paths.append(str(path))

        manifest: dict[str, Any] = {
            "dataset": dataset.name,
            "origin": dataset.origin,
            "location": dataset.location,
            "seed": seed,
            "num_clients": num_clients,
            "train_per_client": len(parts[0].y_train),
            "test_per_client": len(parts[0].y_test),
            "partitions": paths,
        }
        write_json_atomically(out_dir / MANIFEST_NAME, manifest)
    except OSError as error:
        raise DataError(f"cannot write partitions to {out_dir}: {error}") from error
    return manifest


def _save_partition(stream: IO[bytes], part: Partition) -> None:
    np.savez(stream, x_train=part.x_train, y_train=part.y_train, x_test=part.x_test, y_test=part.y_test)


def load_partition(path: Path) -> Partition:
    """Load a partition-{i}.npz written by write_partitions.

    Raises DataError when the file is missing, is not a valid .npz, lacks one of
    the arrays or contains arrays of the wrong shape or dtype.
    """
    remedy = "run `python -m workloads.data` again to rewrite the partitions"
    if not path.is_file():
        raise DataError(f"partition file {path} not found; {remedy}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in PARTITION_KEYS if key not in npz.files]
            if missing:
                raise DataError(f"partition file {path} lacks {', '.join(missing)}; {remedy}")
            arrays = {key: npz[key] for key in PARTITION_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read partition file {path}: {error}; {remedy}") from error

    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != cifar10.IMAGE_SHAPE:
            raise DataError(
                f"invalid partition file {path}: x_{split} must be uint8 (N, 32, 32, 3), "
                f"got {images.dtype} {images.shape}; {remedy}"
            )
        if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"invalid partition file {path}: y_{split} must be integers of shape "
                f"({images.shape[0]},), got {labels.dtype} {labels.shape}; {remedy}"
            )
    return Partition(**arrays)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.data",
        description="Split CIFAR-10 (or synthetic data) into one .npz partition per client "
        "and write a dataset.json manifest.",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        default="auto",
        help="data to use; auto tries CIFAR-10 and falls back to synthetic data with a warning "
        "when it cannot be downloaded (default: auto)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder that is cifar-10-batches-py/, contains it, or contains cifar-10-python.tar.gz",
    )
    parser.add_argument("--clients", type=int, required=True, help="number of partitions to write")
    parser.add_argument("--seed", type=int, default=0, help="seed for shuffling and synthetic data (default: 0)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the partitions and manifest to")
    parser.add_argument(
        "--download-timeout",
        type=float,
        default=DEFAULT_DOWNLOAD_TIMEOUT_S,
        help=f"total time limit for downloading CIFAR-10, in seconds (default: {DEFAULT_DOWNLOAD_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--synthetic-train",
        type=int,
        default=50000,
        help="number of synthetic train examples (default: 50000)",
    )
    parser.add_argument(
        "--synthetic-test",
        type=int,
        default=10000,
        help="number of synthetic test examples (default: 10000)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare partitions from the command line; return 0, or 2 on DataError."""
    args = _parse_args(argv)

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    try:
        dataset = load_dataset(
            args.dataset,
            args.data_dir,
            seed=args.seed,
            download_timeout_s=args.download_timeout,
            warn=warn,
            synthetic_train=args.synthetic_train,
            synthetic_test=args.synthetic_test,
        )
        manifest = write_partitions(dataset, args.clients, args.seed, args.out)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2

    location = manifest["location"] or "generated"
    print(f"dataset: {manifest['dataset']} (origin: {manifest['origin']}, location: {location})")
    print(
        f"partitions: {manifest['num_clients']} x {manifest['train_per_client']} train / "
        f"{manifest['test_per_client']} test examples"
    )
    print(f"manifest: {args.out.resolve() / MANIFEST_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
