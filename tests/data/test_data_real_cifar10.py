"""The real CIFAR-10 from ../shared/data (decoded once, then read from the default cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ephw.data.sources as sources
from ephw.data import load_dataset

SHARED_TARBALLS = [
    Path(sources.__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.gz",
    Path.cwd().parent / "shared" / "data" / "cifar10-jpeg.tar.gz",
]


@pytest.mark.slow
@pytest.mark.skipif(
    not any(p.is_file() for p in SHARED_TARBALLS),
    reason="shared CIFAR-10 tarball ../shared/data/cifar10-jpeg.tar.gz is absent",
)
def test_real_cifar10(user_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(sources.__file__).resolve().parents[2])  # the repository root
    train = load_dataset("cifar10", "train")  # found by the default search
    test = load_dataset("cifar10", "test")
    assert (len(train), len(test)) == (50_000, 10_000)
    assert train.image_shape == test.image_shape == (3, 32, 32)
    assert train.images.dtype == torch.uint8
    assert train.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert torch.bincount(train.labels, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(test.labels, minlength=10).tolist() == [1000] * 10
    mean = train.images.float().mean(dim=(0, 2, 3)) / 255
    assert mean.tolist() == pytest.approx([0.489, 0.481, 0.447], abs=0.01)
    images, labels = test.batch(slice(0, 8))
    assert images.dtype == torch.float32 and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
