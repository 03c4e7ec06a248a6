"""The scikit-learn digits: split sizes, value range, determinism."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from ephw.data import load_dataset


def test_split_sizes_shapes_and_range() -> None:
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert (len(train), len(test)) == (1257, 540)
    for s in (train, test):
        assert s.name == "digits"
        assert s.image_shape == (1, 8, 8)
        assert s.images.dtype == torch.float32 and s.labels.dtype == torch.int64
        assert float(s.images.min()) == 0.0 and float(s.images.max()) == 1.0
        assert s.classes == tuple(str(k) for k in range(10))
        assert set(s.labels.tolist()) == set(range(10))


def test_splits_partition_the_dataset() -> None:
    bunch = load_digits()
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    both = torch.cat([train.images, test.images]).reshape(-1, 64).numpy() * 16
    all_rows = {tuple(r) for r in np.asarray(bunch.data)}
    assert {tuple(r) for r in both} <= all_rows
    counts = np.bincount(np.concatenate([train.labels.numpy(), test.labels.numpy()]), minlength=10)
    assert counts.tolist() == np.bincount(bunch.target, minlength=10).tolist()


def test_deterministic() -> None:
    a = load_dataset("digits", "test")
    b = load_dataset("digits", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    images, labels = a.batch(slice(0, 16))
    assert images.shape == (16, 1, 8, 8) and labels.shape == (16,)
