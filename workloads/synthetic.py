"""Generate a synthetic, learnable stand-in for CIFAR-10 when the real data is unavailable."""

from __future__ import annotations

import numpy as np

from workloads.errors import DataError

NUM_CLASSES = 10
# Each class template is a grid of BLOCKS x BLOCKS random colours upscaled to 32x32,
# so the classes differ in coarse structure that a CNN picks up quickly.
BLOCKS = 4
TEMPLATE_MAX = 191
NOISE_MAX = 64  # Exclusive bound, so the brightest pixel is TEMPLATE_MAX + NOISE_MAX - 1 = 254.


def generate(seed: int, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test): uint8 images (N, 32, 32, 3) and int64 labels 0-9.

    Each image is its class template plus independent uniform noise. The output
    depends only on the arguments, and each split is class balanced to within
    one example per class.
    """
    if num_train < 0 or num_test < 0:
        raise DataError(f"synthetic split sizes must be >= 0, got train={num_train} test={num_test}")
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, TEMPLATE_MAX + 1, size=(NUM_CLASSES, BLOCKS, BLOCKS, 3), dtype=np.uint8)
    scale = 32 // BLOCKS
    templates = blocks.repeat(scale, axis=1).repeat(scale, axis=2)

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(count, dtype=np.int64) % NUM_CLASSES)
        images = rng.integers(0, NOISE_MAX, size=(count, 32, 32, 3), dtype=np.uint8)
        images += templates[labels]
        return images, labels

    x_train, y_train = split(num_train)
    x_test, y_test = split(num_test)
    return x_train, y_train, x_test, y_test
