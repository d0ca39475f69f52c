"""Build the MobileNetV2 classifier for CIFAR-10 and set up TensorFlow for shared-GPU use."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def configure_tensorflow() -> None:
    """Turn on memory growth for every GPU that TensorFlow lists, so several client processes can share one GPU.

    Call it before building a model: TensorFlow rejects the setting once a GPU is
    initialised, and this function then logs a warning and carries on. Does
    nothing on a machine without GPUs.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as error:
            logger.warning("cannot enable memory growth on %s: %s", gpu.name, error)


def build_model(learning_rate: float = 1e-3) -> keras.Model:
    """Build MobileNetV2 (random init, 10 classes) for 32x32x3 images, compiled with Adam.

    The model takes raw pixel values in 0-255 (uint8 or float) and rescales them to
    [-1, 1], the range MobileNetV2 is designed for, so callers keep images as uint8.
    The Rescaling layer has no weights, so get_weights() returns exactly
    MobileNetV2's weights. Loss: sparse categorical cross-entropy on integer
    labels; metric: "accuracy".
    """
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    scaled = keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    backbone = keras.applications.MobileNetV2(input_shape=INPUT_SHAPE, classes=NUM_CLASSES, weights=None)
    outputs = backbone(scaled)
    model = keras.Model(inputs=inputs, outputs=outputs, name="cifar10_mobilenetv2")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model
