"""Tests for the Keras model, the Flower client and its bounded connection retries."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar

from workloads import client as client_module
from workloads.data import Partition
from workloads.model import build_model

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> object:
    return build_model()


def tiny_partition(num_train: int = 40, num_test: int = 16) -> Partition:
    rng = np.random.default_rng(0)
    return Partition(
        x_train=rng.integers(0, 256, size=(num_train, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(num_train, dtype=np.int64) % 10,
        x_test=rng.integers(0, 256, size=(num_test, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(num_test, dtype=np.int64) % 10,
    )


def make_client(model: object, part: Partition, steps_per_epoch: int, batch_size: int) -> client_module.PartitionClient:
    return client_module.PartitionClient(
        model,  # type: ignore[arg-type]
        part,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        logger=logging.getLogger("test-client"),
    )


def test_model_shapes(model: object) -> None:
    assert model.input_shape == (None, 32, 32, 3)  # type: ignore[attr-defined]
    assert model.output_shape == (None, 10)  # type: ignore[attr-defined]


def test_client_fit_changes_weights(model: object) -> None:
    partition_client = make_client(model, tiny_partition(), steps_per_epoch=2, batch_size=8)
    initial = partition_client.get_parameters({})

    trained, num_examples, metrics = partition_client.fit([w.copy() for w in initial], {})

    assert num_examples == 16
    assert metrics == {}
    assert len(trained) == len(initial)
    changed = sum(not np.array_equal(before, after) for before, after in zip(initial, trained, strict=True))
    assert changed > 0
    assert partition_client.instructions_received == 2


def test_client_fit_steps_capped_by_data(model: object) -> None:
    partition_client = make_client(model, tiny_partition(num_train=24), steps_per_epoch=100, batch_size=8)

    _, num_examples, _ = partition_client.fit(partition_client.get_parameters({}), {})

    assert num_examples == 24


def test_client_evaluate(model: object) -> None:
    partition_client = make_client(model, tiny_partition(num_test=12), steps_per_epoch=1, batch_size=8)

    loss, num_examples, metrics = partition_client.evaluate(partition_client.get_parameters({}), {})

    assert num_examples == 12
    assert np.isfinite(loss)
    assert set(metrics) == {"accuracy"}
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_client_rejects_wrong_weight_count(model: object) -> None:
    partition_client = make_client(model, tiny_partition(), steps_per_epoch=1, batch_size=8)

    with pytest.raises(ValueError, match="server sent 1 weight arrays but the model has"):
        partition_client.fit([np.zeros(3, np.float32)], {})


def test_client_main_missing_partition(tmp_path: Path) -> None:
    missing = tmp_path / "partition-0.npz"

    status = client_module.main(["--server", "127.0.0.1:1", "--partition", str(missing), "--connect-timeout", "0"])

    assert status == 2


class CountingStub(NumPyClient):
    """Stand-in for PartitionClient without TensorFlow: one weight array, no training."""

    def __init__(self) -> None:
        self.instructions_received = 0

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        self.instructions_received += 1
        return [np.zeros(2, np.float32)]

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        self.instructions_received += 1
        return parameters, 1, {}

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        self.instructions_received += 1
        return 0.5, 1, {"accuracy": 1.0}


class RetryWatcher(logging.Handler):
    """Count "not reachable" warnings and signal the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.retries = 0
        self.first_retry = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "not reachable" in record.getMessage():
            self.retries += 1
            self.first_retry.set()


@pytest.fixture
def retry_logger() -> Iterator[tuple[logging.Logger, RetryWatcher]]:
    logger = logging.getLogger("test-client-retry")
    watcher = RetryWatcher()
    logger.addHandler(watcher)
    yield logger, watcher
    logger.removeHandler(watcher)


def closed_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_session_no_retry_when_timeout_zero(retry_logger: tuple[logging.Logger, RetryWatcher]) -> None:
    logger, watcher = retry_logger
    started = time.monotonic()

    status = client_module.run_session(CountingStub(), closed_address(), 0.0, logger)

    assert status == 1
    assert watcher.retries == 0
    assert time.monotonic() - started < 10


def test_session_retries_stop_at_deadline(retry_logger: tuple[logging.Logger, RetryWatcher]) -> None:
    logger, watcher = retry_logger
    started = time.monotonic()

    status = client_module.run_session(CountingStub(), closed_address(), 2.5, logger)

    elapsed = time.monotonic() - started
    assert status == 1
    assert watcher.retries >= 1
    assert elapsed < 2.5 + 5


def test_session_connects_to_late_server(tmp_path: Path, retry_logger: tuple[logging.Logger, RetryWatcher]) -> None:
    logger, watcher = retry_logger
    address = closed_address()
    stub = CountingStub()
    statuses: list[int] = []
    session = threading.Thread(
        target=lambda: statuses.append(client_module.run_session(stub, address, 60.0, logger)), daemon=True
    )
    session.start()
    assert watcher.first_retry.wait(timeout=30)

    server = subprocess.Popen(
        [sys.executable, "-m", "workloads.server", "--address", address, "--clients", "1", "--rounds", "1"],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        session.join(timeout=60)
        assert not session.is_alive()
        assert statuses == [0]
        # get_parameters for the initial weights, then one fit and one evaluate.
        assert stub.instructions_received == 3
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
