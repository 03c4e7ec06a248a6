"""A tiny class-sorted CIFAR-like image tree for the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("ephw-cache")
    monkeypatch.setenv("EPHW_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{train,test}/c0..c9/NNNN.png: 4 train and 2 test images per class, class-coloured noise."""
    root = tmp_path_factory.mktemp("tiny-cifar")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for k in range(10):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(n):
                base = np.full((32, 32, 3), 25 * k, dtype=np.int16)
                img = np.clip(base + rng.integers(-20, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:04d}.png")
    return root
