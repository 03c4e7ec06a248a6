"""Fixtures of the robustness tests: the digits test split and a tiny CNN trained for a second."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from robust_models import TinyCNN

from ephw.data import load_dataset
from ephw.robustness.models import Classifier


@pytest.fixture(scope="session")
def digits_test():
    return load_dataset("digits", "test")


@pytest.fixture(scope="session")
def tiny_cnn() -> TinyCNN:
    """~97% on digits after 30 full-batch Adam epochs on the training split (~1 s)."""
    train = load_dataset("digits", "train")
    x, y = train.batch(slice(None))
    torch.manual_seed(0)
    net = TinyCNN()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def cnn(tiny_cnn) -> Classifier:
    """The tiny CNN as an attackable classifier."""
    return Classifier("tiny", tiny_cnn)


@pytest.fixture(scope="module")
def images(digits_test) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 64 digits test images and labels."""
    return digits_test.batch(slice(0, 64))
