"""The client's warm-up must not change what the rounds compute.

The tests use a small Keras model in place of MobileNetV2, whose first fit
takes 25 s or more on 2 cores. It has the layer kinds that matter (Rescaling
on uint8 input, Conv2D, BatchNormalization with moving statistics, Dense) and
the compile settings of workloads.model.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from workloads.client import PartitionClient
from workloads.data import Partition

SEED = 7
ROUNDS = 2


def small_model() -> keras.Model:
    inputs = keras.Input(shape=(32, 32, 3))
    x = keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def tiny_partition() -> Partition:
    rng = np.random.default_rng(SEED)
    return Partition(
        x_train=rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, 100).astype(np.int64),
        # 45 test examples: one full batch of 32 and a partial batch of 13.
        x_test=rng.integers(0, 256, (45, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, 45).astype(np.int64),
    )


def run_rounds(warm_up: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[float, float]], PartitionClient]:
    """Seed, build, optionally warm up, then run ROUNDS of fit and evaluate; return weights, optimizer, evaluations."""
    keras.utils.set_random_seed(SEED)
    model = small_model()
    # steps_per_epoch 3 with batch 16 reads 48 of 100 examples, so the shuffle decides which ones.
    client = PartitionClient(
        model, tiny_partition(), steps_per_epoch=3, batch_size=16, logger=logging.getLogger("test")
    )
    if warm_up:
        client.warm_up()
    weights = model.get_weights()
    evaluations = []
    for _ in range(ROUNDS):
        weights, _count, _metrics = client.fit(weights, {})
        loss, _count, metrics = client.evaluate(weights, {})
        evaluations.append((loss, float(metrics["accuracy"])))
    optimizer_state = [variable.numpy() for variable in model.optimizer.variables]
    return weights, optimizer_state, evaluations, client


@pytest.fixture(scope="module")
def both_runs() -> dict[bool, tuple]:
    return {warm_up: run_rounds(warm_up) for warm_up in (False, True)}


def test_warm_up_same_weights(both_runs: dict[bool, tuple]) -> None:
    cold, warm = both_runs[False][0], both_runs[True][0]
    assert len(cold) == len(warm)
    for index, (expected, actual) in enumerate(zip(cold, warm, strict=True)):
        assert np.array_equal(expected, actual), f"weight array {index} differs after warm-up"


def test_warm_up_same_optimizer_state(both_runs: dict[bool, tuple]) -> None:
    cold, warm = both_runs[False][1], both_runs[True][1]
    assert len(cold) == len(warm)
    for index, (expected, actual) in enumerate(zip(cold, warm, strict=True)):
        assert np.array_equal(expected, actual), f"optimizer variable {index} differs after warm-up"


def test_warm_up_same_evaluations(both_runs: dict[bool, tuple]) -> None:
    assert both_runs[False][2] == both_runs[True][2]


def test_warm_up_training_changes_weights(both_runs: dict[bool, tuple]) -> None:
    # Guards the comparisons above against a fit that silently trains nothing.
    keras.utils.set_random_seed(SEED)
    initial = small_model().get_weights()
    trained = both_runs[False][0]
    assert any(not np.array_equal(a, b) for a, b in zip(initial, trained, strict=True))


def test_warm_up_leaves_counter_alone(both_runs: dict[bool, tuple]) -> None:
    client = both_runs[True][3]
    assert client.instructions_received == 2 * ROUNDS
