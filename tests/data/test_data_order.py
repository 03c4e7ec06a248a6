"""Every split comes in a fixed class-stratified order: first-N subsets are class-balanced."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ephw.data import load_dataset
from ephw.data.cifar import load_cifar
from ephw.data.order import stratified_order

CLASSES = [f"c{k}" for k in range(10)]


def write_sorted_tree(root: Path, per_class: dict[str, int]) -> Path:
    """A class-sorted image tree (as the shared CIFAR-10 tarball is): ``per_class[split]`` images each."""
    for split, n in per_class.items():
        for k, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (20 * k, 5 * i, 0)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def sorted_tree(tmp_path: Path) -> Path:
    return write_sorted_tree(tmp_path / "tree", {"train": 6, "test": 5})


def test_raw_reader_order_is_class_sorted(sorted_tree: Path) -> None:
    raw = load_cifar("cifar10", "test", root=sorted_tree)
    assert raw.labels[:5].tolist() == [0] * 5  # what "the first 5 images" used to be


@pytest.mark.parametrize("n", [1, 7, 10, 23, 50])
def test_first_n_test_images_are_class_balanced(sorted_tree: Path, n: int) -> None:
    counts = load_dataset("cifar10", "test", root=sorted_tree).subset(n).class_counts()
    assert sum(counts) == n and max(counts) - min(counts) <= 1


def test_train_split_is_interleaved_not_sorted(sorted_tree: Path) -> None:
    train = load_dataset("cifar10", "train", root=sorted_tree)
    assert sorted(train.labels[:10].tolist()) == list(range(10))
    assert train.class_counts() == [6] * 10


def test_order_is_deterministic_and_a_permutation(sorted_tree: Path) -> None:
    a = load_dataset("cifar10", "test", root=sorted_tree)
    b = load_dataset("cifar10", "test", root=sorted_tree)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    raw = load_cifar("cifar10", "test", root=sorted_tree)
    assert sorted(map(bytes, a.images.flatten(1).numpy())) == sorted(map(bytes, raw.images.flatten(1).numpy()))


def test_pickle_source_gets_the_same_kind_of_order(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    meta = {b"label_names": [c.encode() for c in CLASSES]}
    sorted_labels = np.repeat(np.arange(10), 4)  # a class-sorted pickle too
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    for name in [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]:
        batch = {b"labels": sorted_labels.tolist(), b"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    counts = load_dataset("cifar10", "test", root=folder).subset(20).class_counts()
    assert counts == [2] * 10


def test_digits_subsets_follow_class_shares() -> None:
    test = load_dataset("digits", "test")
    share = np.array(test.class_counts()) / len(test)
    counts = np.array(test.subset(100).class_counts())
    assert np.all(np.abs(counts - 100 * share) <= 1), counts


def test_stratified_order_prefixes_follow_class_shares() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)  # unbalanced, sorted
    order = stratified_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(100))
    for n in (10, 33, 50, 99):
        counts = np.bincount(labels[order[:n]], minlength=3)
        assert np.all(np.abs(counts - n * np.array([0.6, 0.3, 0.1])) <= 1), (n, counts)
    assert not np.array_equal(order, stratified_order(labels, seed=4))
    assert np.array_equal(order, stratified_order(labels, seed=3))


def test_subset_larger_than_split_is_an_error(sorted_tree: Path) -> None:
    from ephw.errors import InputError

    with pytest.raises(InputError, match="has 50"):
        load_dataset("cifar10", "test", root=sorted_tree).subset(10**9)
