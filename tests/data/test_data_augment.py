"""random_crop_flip: shape, determinism, and that crops and flips really happen."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ephw.data import random_crop_flip
from ephw.errors import InputError


def distinct_batch(b: int = 64, c: int = 2, h: int = 6, w: int = 5) -> torch.Tensor:
    """Every pixel value distinct and > 0 (so zero padding is recognisable)."""
    return torch.arange(1, b * c * h * w + 1, dtype=torch.float32).reshape(b, c, h, w)


def explain(x: torch.Tensor, y: torch.Tensor, padding: int) -> tuple[int, int, bool]:
    """The (dy, dx, flipped) under which y is a window of zero-padded x."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (padding,) * 4)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[:, dy : dy + h, dx : dx + w]
            for flipped in (False, True):
                if torch.equal(torch.flip(window, [-1]) if flipped else window, y):
                    return dy, dx, flipped
    raise AssertionError("output is not a padded crop (+flip) of the input")


def test_shape_dtype_and_determinism() -> None:
    x = torch.rand(16, 3, 32, 32)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert random_crop_flip(x).shape == x.shape  # global RNG


def test_every_output_is_a_shifted_window_and_both_cases_occur() -> None:
    x = distinct_batch()
    padding = 2
    y = random_crop_flip(x, padding=padding, generator=torch.Generator().manual_seed(0))
    found = [explain(x[i], y[i], padding) for i in range(len(x))]
    flips = {f for _, _, f in found}
    shifts = {(dy, dx) for dy, dx, _ in found}
    assert flips == {False, True}
    assert len(shifts) > 5  # offsets vary per image (centre = (padding, padding) = no shift)
    assert all(0 <= dy <= 2 * padding and 0 <= dx <= 2 * padding for dy, dx in shifts)


def test_flip_equals_torch_flip() -> None:
    x = distinct_batch()
    y = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1))
    flipped = [torch.equal(y[i], torch.flip(x[i], [-1])) for i in range(len(x))]
    kept = [torch.equal(y[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54  # p = 0.5 of 64


def test_known_shift_of_single_image() -> None:
    x = distinct_batch(b=1, c=1, h=4, w=4)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = random_crop_flip(x, padding=1, generator=g)
        dy, dx, flipped = explain(x[0], y[0], 1)
        window = F.pad(x[0], (1, 1, 1, 1))[:, dy : dy + 4, dx : dx + 4]
        assert torch.equal(y[0], torch.flip(window, [-1]) if flipped else window)


def test_uint8_images() -> None:
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    y = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.uint8 and y.shape == x.shape


def test_bad_arguments() -> None:
    with pytest.raises(InputError):
        random_crop_flip(torch.zeros(3, 8, 8))
    with pytest.raises(InputError):
        random_crop_flip(torch.zeros(1, 3, 8, 8), padding=-1)
