"""CIFAR readers: image-folder tree, .tar.gz of a tree, standard pickle folder."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ephw.data import load_dataset
from ephw.data.cifar import load_cifar
from ephw.errors import DataError


def assert_same(a, b) -> None:  # two ImageSets
    assert a.classes == b.classes
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_image_tree_labels_follow_sorted_class_names(tmp_path: Path, make_tree, tree_spec, fmt: str) -> None:
    root = make_tree(tmp_path / "tree", fmt=fmt)
    assert tree_spec.classes == ("ant", "bee", "cat")
    for split, n in tree_spec.per_class.items():
        s = load_cifar("cifar10", split, root=root)  # the reader's own (path) order
        assert s.classes == tree_spec.classes
        assert s.images.dtype == torch.uint8 and s.images.shape == (3 * n, 3, 32, 32)
        assert s.labels.tolist() == [k for k in range(3) for _ in range(n)]
        for j, label in enumerate(s.labels.tolist()):
            expected = torch.tensor(tree_spec.colour(tree_spec.classes[label], j % n), dtype=torch.float32)
            got = s.images[j, :, 16, 16].float()  # a pixel away from the marker
            tol = 0 if fmt == "png" else 6
            assert torch.all((got - expected).abs() <= tol), (j, got, expected)


@pytest.mark.parametrize("top", [None, "cifar10"])
def test_tarball_matches_tree(tmp_path: Path, make_tree, make_tar, top: str | None) -> None:
    tree = make_tree(tmp_path / "tree", fmt="jpg")
    tar = make_tar(tree, tmp_path / "cifar10-jpeg.tar.gz", top=top)
    for split in ("train", "test"):
        assert_same(load_dataset("cifar10", split, root=tar), load_dataset("cifar10", split, root=tree))


def test_tarball_of_mixed_png_and_jpg(tmp_path: Path, make_tree, make_tar, tree_spec) -> None:
    tree = make_tree(tmp_path / "tree", fmt="png")
    make_tree(tmp_path / "tree", fmt="jpg")  # every class now has both
    tar = make_tar(tree, tmp_path / "mine.tar.gz", top="data")
    s = load_dataset("cifar10", "train", root=tar)
    assert len(s) == 2 * 3 * tree_spec.per_class["train"]
    assert_same(s, load_dataset("cifar10", "train", root=tree))


def test_wrong_image_size_is_a_clear_error(tmp_path: Path, make_tree) -> None:
    root = make_tree(tmp_path / "tree")
    Image.new("RGB", (28, 28)).save(root / "train" / "ant" / "big.png")
    with pytest.raises(DataError, match=r"28x28.*32x32") as err:
        load_dataset("cifar10", "train", root=root)
    assert "big.png" in str(err.value) and "\n" not in str(err.value)


def test_grayscale_images_become_rgb(tmp_path: Path, make_tree) -> None:
    root = make_tree(tmp_path / "tree")
    Image.new("L", (32, 32), 77).save(root / "test" / "bee" / "zzzz.png")
    s = load_cifar("cifar10", "test", root=root)
    last_bee = int((s.labels == 1).nonzero().max())
    assert s.images[last_bee].unique().tolist() == [77]


def test_unreadable_image(tmp_path: Path, make_tree) -> None:
    root = make_tree(tmp_path / "tree")
    (root / "train" / "ant" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        load_dataset("cifar10", "train", root=root)


def test_corrupt_tarball(tmp_path: Path) -> None:
    bad = tmp_path / "cifar10-jpeg.tar.gz"
    bad.write_bytes(b"\x1f\x8b garbage" * 10)
    with pytest.raises(DataError, match="cannot read cifar10 tarball"):
        load_dataset("cifar10", "test", root=bad)


def test_pickle_folder(tmp_path: Path, make_cifar10_pickles) -> None:
    folder, files = make_cifar10_pickles(tmp_path)
    train = load_cifar("cifar10", "train", root=tmp_path)
    test = load_cifar("cifar10", "test", root=folder)  # the folder itself also works
    assert train.classes[0] == "airplane" and train.classes[9] == "truck"
    assert (len(train), len(test)) == (20, 3)
    expected = np.concatenate([files[f"data_batch_{b}"][b"data"] for b in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(expected.reshape(-1, 3, 32, 32)))
    assert test.labels.tolist() == files["test_batch"][b"labels"]
    # channel-major layout: the first 1024 values are the red plane
    assert torch.equal(test.images[0, 0].flatten(), torch.from_numpy(files["test_batch"][b"data"][0, :1024]))


def test_pickle_folder_inside_tarball(tmp_path: Path, make_cifar10_pickles) -> None:
    folder, _ = make_cifar10_pickles(tmp_path / "src")
    tar = tmp_path / "cifar-10-python.tar.gz"  # the official download's layout
    with tarfile.open(tar, "w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    assert_same(load_dataset("cifar10", "train", root=tar), load_dataset("cifar10", "train", root=folder))


def test_cifar100_pickle_folder_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"class{k:03d}".encode() for k in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": names, b"coarse_label_names": names[:20]}, f, protocol=2)
    for split, n in (("train", 6), ("test", 4)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": list(range(90, 90 + n)),
            b"coarse_labels": [0] * n,
        }
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    s = load_dataset("cifar100", "test", root=tmp_path)
    assert len(s.classes) == 100 and s.classes[90] == "class090"
    assert sorted(s.labels.tolist()) == [90, 91, 92, 93]


def test_corrupt_pickle_batch(tmp_path: Path, make_cifar10_pickles) -> None:
    folder, _ = make_cifar10_pickles(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", "train", root=folder)
