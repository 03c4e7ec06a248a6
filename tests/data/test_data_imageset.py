"""ImageSet: shape properties, batch conversion, subset and validation."""

from __future__ import annotations

import pytest
import torch

from ephw.data import ImageSet
from ephw.errors import InputError


def make_set(dtype: torch.dtype = torch.uint8, n: int = 5) -> ImageSet:
    if dtype == torch.uint8:
        images = torch.arange(n * 3 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8)
    else:
        images = torch.rand(n * 3 * 4 * 4)
    return ImageSet(
        name="toy",
        split="train",
        images=images.reshape(n, 3, 4, 4),
        labels=torch.arange(n, dtype=torch.int64) % 2,
        classes=("a", "b"),
    )


def test_len_and_image_shape() -> None:
    s = make_set()
    assert len(s) == 5
    assert s.image_shape == (3, 4, 4)


def test_batch_converts_uint8_to_unit_float() -> None:
    s = make_set()
    images, labels = s.batch(slice(1, 3))
    assert images.dtype == torch.float32 and images.shape == (2, 3, 4, 4)
    assert torch.equal(images, s.images[1:3].float() / 255)
    assert labels.dtype == torch.int64 and labels.tolist() == [1, 0]
    images, labels = s.batch(torch.tensor([4, 0]))
    assert torch.equal(images[0], s.images[4].float() / 255)
    assert labels.tolist() == [0, 0]


def test_batch_keeps_float_images() -> None:
    s = make_set(torch.float32)
    images, _ = s.batch(slice(None))
    assert images.dtype == torch.float32
    assert torch.equal(images, s.images)


def test_subset_takes_first_n() -> None:
    s = make_set()
    sub = s.subset(2)
    assert len(sub) == 2 and sub.classes == s.classes and sub.split == "train"
    assert torch.equal(sub.images, s.images[:2])
    assert len(s.subset(5)) == 5
    for bad in (0, -1, 1.5, 6):
        with pytest.raises(InputError):
            s.subset(bad)  # type: ignore[arg-type]


def test_rejects_inconsistent_tensors() -> None:
    with pytest.raises(InputError):
        ImageSet("x", "test", torch.zeros(2, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), ())
    with pytest.raises(InputError):
        ImageSet("x", "test", torch.zeros(2, 1, 4, 4), torch.zeros(3, dtype=torch.int64), ())
    with pytest.raises(InputError):
        ImageSet("x", "test", torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int32), ())
