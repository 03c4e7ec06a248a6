"""Corruptions: seeded, the published strength per severity, and size handling."""

from __future__ import annotations

import pytest
import torch

from ephw.errors import ConfigError, InputError
from ephw.robustness.corruptions import CIFAR_CONSTANTS, CORRUPTIONS, corrupt_images

IMAGENET_GAUSSIAN = [0.08, 0.12, 0.18, 0.26, 0.38]  # imagecorruptions' (ImageNet-C) constants


def _gray(n=8, size=32, value=0.5):
    return torch.full((n, 3, size, size), value)


@pytest.mark.parametrize("table", ["cifar", "imagenet"])
def test_deterministic_for_a_seed(digits_test, table):
    x, _ = digits_test.batch(slice(0, 6))
    for name in ("gaussian_noise", "glass_blur", "impulse_noise", "frost", "fog", "elastic_transform", "snow"):
        a = corrupt_images(x, name, 3, seed=1, table=table)
        assert torch.equal(a, corrupt_images(x, name, 3, seed=1, table=table)), name
        assert not torch.equal(a, corrupt_images(x, name, 3, seed=2, table=table)), name
        assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_draws_follow_the_image_key_not_the_batch(digits_test):
    x, _ = digits_test.batch(slice(0, 6))
    full = corrupt_images(x, "shot_noise", 2, seed=0, keys=range(10, 16))
    part = corrupt_images(x[3:], "shot_noise", 2, seed=0, keys=range(13, 16))
    assert torch.equal(full[3:], part)


@pytest.mark.parametrize(
    "table,constants", [("cifar", CIFAR_CONSTANTS["gaussian_noise"]), ("imagenet", IMAGENET_GAUSSIAN)]
)
def test_gaussian_noise_has_the_published_std_per_severity(table, constants):
    x = _gray()  # mid grey: clipping at 0 / 1 is negligible up to std 0.12 and mild above
    for sev, c in enumerate(constants, 1):
        d = corrupt_images(x, "gaussian_noise", sev, seed=0, table=table) - x
        assert float(d.std()) == pytest.approx(c, rel=0.08 if c < 0.2 else 0.2), (sev, c)


def test_contrast_and_brightness_scale_as_the_constants():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    for sev, c in enumerate(CIFAR_CONSTANTS["contrast"], 1):
        out = corrupt_images(x, "contrast", sev, seed=0)
        ratio = (out - out.mean((2, 3), keepdim=True)).std() / (x - x.mean((2, 3), keepdim=True)).std()
        assert float(ratio) == pytest.approx(c, abs=0.03)
    grey = _gray(value=0.4)
    for sev, c in enumerate(CIFAR_CONSTANTS["brightness"], 1):
        shift = float((corrupt_images(grey, "brightness", sev, seed=0) - grey).mean())
        assert shift == pytest.approx(c, abs=2 / 255)


def test_every_corruption_runs_and_grows_with_severity_on_average(digits_test):
    x, _ = digits_test.batch(slice(0, 4))
    low = high = 0.0
    for name in CORRUPTIONS:
        d1 = float((corrupt_images(x, name, 1, seed=0) - x).abs().mean())
        d5 = float((corrupt_images(x, name, 5, seed=0) - x).abs().mean())
        low, high = low + d1, high + d5
    assert high > 2 * low > 0


def test_cifar_table_is_milder_than_imagenet():
    y = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2
    for name in ("gaussian_noise", "impulse_noise", "defocus_blur", "contrast"):
        c = float((corrupt_images(y, name, 5, seed=0, table="cifar") - y).abs().mean())
        i = float((corrupt_images(y, name, 5, seed=0, table="imagenet") - y).abs().mean())
        assert c < i, name


def test_bad_arguments():
    x = _gray(1)
    with pytest.raises(ConfigError):
        corrupt_images(x, "rain", 1, 0)
    with pytest.raises(ConfigError):
        corrupt_images(x, "fog", 6, 0)
    with pytest.raises(ConfigError):
        corrupt_images(x, "fog", 1, 0, table="mnist")
    with pytest.raises(InputError):
        corrupt_images(torch.rand(1, 2, 32, 32), "fog", 1, 0)
