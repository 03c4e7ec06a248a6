"""The decoded-dataset cache: hits, invalidation, corruption recovery, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import ephw.data.cache as cache_mod
import ephw.data.cifar as cifar_mod
from ephw.data import load_dataset
from ephw.data.cache import cache_dir, cache_entry


@pytest.fixture
def counted_decoder(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts calls of the real decoder (one entry per decode)."""
    calls: list[str] = []
    real = cifar_mod.decode_source

    def counting(name, source):
        calls.append(name)
        return real(name, source)

    monkeypatch.setattr(cifar_mod, "decode_source", counting)
    return calls


@pytest.fixture
def tar_source(tmp_path: Path, make_tree, make_tar) -> Path:
    return make_tar(make_tree(tmp_path / "tree", fmt="jpg"), tmp_path / "cifar10-jpeg.tar.gz")


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EPHW_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EPHW_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "ephw"


def test_second_load_hits_cache(tar_source: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    first = load_dataset("cifar10", "train", root=tar_source)
    entry = cache_entry("cifar10", tar_source)
    assert entry.parent == isolated_cache
    assert sorted(p.name for p in entry.iterdir()) == [
        "meta.json",
        "test_images.npy",
        "test_labels.npy",
        "train_images.npy",
        "train_labels.npy",
    ]

    def fail(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(cifar_mod, "decode_source", fail)
    for split in ("train", "test"):  # both splits were cached by the first decode
        again = load_dataset("cifar10", split, root=tar_source)
        assert again.classes == first.classes
    again = load_dataset("cifar10", "train", root=tar_source)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


def test_changed_source_is_decoded_again(tar_source: Path, counted_decoder: list[str]) -> None:
    load_dataset("cifar10", "test", root=tar_source)
    old_entry = cache_entry("cifar10", tar_source)
    st = tar_source.stat()
    os.utime(tar_source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_dataset("cifar10", "test", root=tar_source)
    assert len(counted_decoder) == 2
    assert cache_entry("cifar10", tar_source) != old_entry
    assert not old_entry.exists()  # the stale entry of the same source was removed


@pytest.mark.parametrize(
    "damage",
    ["truncate_images", "garbage_images", "garbage_meta", "delete_labels", "wrong_shape"],
)
def test_corrupt_cache_is_rebuilt(tar_source: Path, counted_decoder: list[str], damage: str) -> None:
    first = load_dataset("cifar10", "train", root=tar_source)
    entry = cache_entry("cifar10", tar_source)
    images_file = entry / "train_images.npy"
    if damage == "truncate_images":
        data = images_file.read_bytes()
        images_file.write_bytes(data[: len(data) // 2])
    elif damage == "garbage_images":
        images_file.write_bytes(b"\x00" * images_file.stat().st_size)
    elif damage == "garbage_meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "delete_labels":
        (entry / "train_labels.npy").unlink()
    elif damage == "wrong_shape":
        np.save(images_file, np.zeros((1, 3, 32, 32), dtype=np.uint8))
        meta = json.loads((entry / "meta.json").read_text())
        meta["splits"]["train"]["images_bytes"] = images_file.stat().st_size
        (entry / "meta.json").write_text(json.dumps(meta))
    again = load_dataset("cifar10", "train", root=tar_source)
    assert len(counted_decoder) == 2
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    # and the rebuilt cache is good again
    load_dataset("cifar10", "train", root=tar_source)
    assert len(counted_decoder) == 2


def test_interrupted_write_leaves_no_complete_looking_entry(
    tar_source: Path, counted_decoder: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = np.save
    saves: list[int] = []

    def dying_save(f, arr, *args, **kwargs):
        saves.append(1)
        if len(saves) == 3:
            raise KeyboardInterrupt  # like a killed process, mid-way through the entry
        real_save(f, arr, *args, **kwargs)

    monkeypatch.setattr(cache_mod.np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("cifar10", "train", root=tar_source)
    monkeypatch.setattr(cache_mod.np, "save", real_save)
    entry = cache_entry("cifar10", tar_source)
    assert not (entry / "meta.json").exists()
    assert not [p for p in entry.iterdir() if ".tmp-" in p.name]  # temp file cleaned up
    s = load_dataset("cifar10", "train", root=tar_source)
    assert len(counted_decoder) == 2 and len(s) == 9
    assert (entry / "meta.json").exists()


def test_unwritable_cache_still_returns_data(tar_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("EPHW_CACHE", str(blocker))
    s = load_dataset("cifar10", "test", root=tar_source)
    assert len(s) == 6


def test_tree_source_fingerprint_sees_new_files(tmp_path: Path, make_tree, counted_decoder: list[str]) -> None:
    tree = make_tree(tmp_path / "tree")
    assert len(load_dataset("cifar10", "train", root=tree)) == 9
    make_tree(tmp_path / "tree", fmt="jpg")
    assert len(load_dataset("cifar10", "train", root=tree)) == 18
    assert len(counted_decoder) == 2
