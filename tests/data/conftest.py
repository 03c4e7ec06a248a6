"""Fixtures writing tiny synthetic CIFAR-like datasets to a temporary folder."""

from __future__ import annotations

import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

# Written in this (non-alphabetical) order on purpose: labels must follow sorted names.
TREE_CLASSES = ("cat", "ant", "bee")
SORTED_CLASSES = ("ant", "bee", "cat")
PER_CLASS = {"train": 3, "test": 2}

# $EPHW_CACHE as the user had it before the autouse fixture below isolates each test.
USER_EPHW_CACHE = os.environ.get("EPHW_CACHE")


def class_colour(cls: str, index: int) -> tuple[int, int, int]:
    """A solid colour identifying (class, image index); survives JPEG nearly exactly."""
    k = SORTED_CLASSES.index(cls)
    return (40 + 80 * k, 30 + 20 * index, 200 - 60 * k)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every unit test gets its own empty $EPHW_CACHE (the real-data test overrides this)."""
    cache = tmp_path_factory.mktemp("ephw-cache")
    monkeypatch.setenv("EPHW_CACHE", str(cache))
    monkeypatch.delenv("EPHW_DATA", raising=False)
    return cache


@pytest.fixture
def user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the cache isolation: use the user's $EPHW_CACHE or the default ~/.cache/ephw."""
    if USER_EPHW_CACHE:
        monkeypatch.setenv("EPHW_CACHE", USER_EPHW_CACHE)
    else:
        monkeypatch.delenv("EPHW_CACHE", raising=False)


@pytest.fixture
def tree_spec() -> SimpleNamespace:
    """What :func:`make_tree` writes: ``classes`` (sorted), ``per_class`` and ``colour(cls, i)``."""
    return SimpleNamespace(classes=SORTED_CLASSES, per_class=dict(PER_CLASS), colour=class_colour)


@pytest.fixture
def make_tree() -> Callable[..., Path]:
    """``make_tree(root, fmt="png", size=32)`` writes root/{train,test}/<class>/NNNN.<fmt>."""

    def make(root: Path, fmt: str = "png", size: int = 32) -> Path:
        for split, n in PER_CLASS.items():
            for cls in TREE_CLASSES:
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    img = Image.new("RGB", (size, size), class_colour(cls, i))
                    # one distinct pixel so images are not all flat
                    img.putpixel((i, 0), (255, 255, 255))
                    img.save(folder / f"{i:04d}.{fmt}")
        return root

    return make


@pytest.fixture
def make_tar() -> Callable[..., Path]:
    """``make_tar(tree, tar_path, top=None)`` packs tree's train/ and test/ (under ``top/``)."""

    def make(tree: Path, tar_path: Path, top: str | None = None) -> Path:
        with tarfile.open(tar_path, "w:gz") as tar:
            for split in ("train", "test"):
                arcname = f"{top}/{split}" if top else split
                tar.add(tree / split, arcname=arcname)
        return tar_path

    return make


def fake_cifar10_batches() -> dict[str, dict]:
    """Contents of a tiny cifar-10-batches-py folder in the real (Python 2, bytes keys) format."""
    rng = np.random.default_rng(1)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    files: dict[str, dict] = {"batches.meta": {b"label_names": names, b"num_cases_per_batch": 4}}
    for k, n in [(f"data_batch_{b}", 4) for b in range(1, 6)] + [("test_batch", 3)]:
        files[k] = {
            b"batch_label": k.encode(),
            b"labels": [int(x) for x in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
    return files


@pytest.fixture
def make_cifar10_pickles() -> Callable[[Path], tuple[Path, dict[str, dict]]]:
    """``make(root)`` writes root/cifar-10-batches-py/ and returns (folder, contents)."""

    def make(root: Path) -> tuple[Path, dict[str, dict]]:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        files = fake_cifar10_batches()
        for file_name, content in files.items():
            with open(folder / file_name, "wb") as f:
                pickle.dump(content, f, protocol=2)
        return folder, files

    return make
