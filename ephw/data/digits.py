"""The scikit-learn 8x8 handwritten digits (1,797 images shipped with scikit-learn; offline)."""

from __future__ import annotations

import numpy as np
import torch

from ephw.data.imageset import ImageSet

DIGITS_TEST_SIZE = 540
"""Images in the test split (30 % of 1,797); the other 1,257 form the train split."""

DIGITS_SPLIT_SEED = 0
"""Seed of the fixed ``numpy.random.default_rng`` permutation that assigns images to splits."""

DIGITS_CLASSES: tuple[str, ...] = tuple(str(k) for k in range(10))


def load_digits_split(split: str) -> ImageSet:
    """One split of the digits as ``(N, 1, 8, 8)`` ``float32`` images in [0, 1].

    The raw pixel values 0..16 are divided by 16. The split is a fixed permutation drawn with
    ``numpy.random.default_rng(0)``: its first 540 indices are the test split, the remaining
    1,257 the train split (both in permutation order), so every call returns the same images.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    index = order[:DIGITS_TEST_SIZE] if split == "test" else order[DIGITS_TEST_SIZE:]
    return ImageSet(
        name="digits",
        split=split,
        images=torch.from_numpy(np.ascontiguousarray(images[index][:, None, :, :])),
        labels=torch.from_numpy(labels[index]),
        classes=DIGITS_CLASSES,
    )
