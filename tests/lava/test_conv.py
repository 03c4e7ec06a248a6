"""The numpy kernels of the lava process models against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ephw.lava.conv import conv2d, conv2d_transpose, max_pool, unpool
from ephw.model.synapses import conv_input_grad


@pytest.mark.parametrize("padding", [0, 1])
def test_conv_and_its_transpose_match_torch(padding):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 7, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    out = conv2d(x.numpy(), w.numpy(), padding)
    assert np.allclose(out, F.conv2d(x, w, padding=padding).numpy(), atol=1e-12)
    v = torch.randn(*out.shape, generator=g, dtype=torch.float64)
    back = conv2d_transpose(v.numpy(), w.numpy(), padding)
    assert np.allclose(back, conv_input_grad(v, x, w, padding).numpy(), atol=1e-12)


def test_pool_switches_and_unpool_match_torch_including_cropped_borders():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)  # odd sizes: torch crops the last row/column
    pooled, idx = F.max_pool2d(a, 2, 2, return_indices=True)
    p, switch = max_pool(a.numpy(), 2)
    assert np.array_equal(p, pooled.numpy())
    v = torch.randn(*pooled.shape, generator=g, dtype=torch.float64)
    ref = F.max_unpool2d(v, idx, 2, 2, output_size=a.shape[-2:])
    assert np.array_equal(unpool(v.numpy(), switch, 2, a.shape[-2:]), ref.numpy())


def test_ties_route_to_the_first_maximum_like_torch():
    a = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    _, idx = F.max_pool2d(a, 2, 2, return_indices=True)
    _, switch = max_pool(a.numpy(), 2)
    assert idx.item() == 0 and switch.item() == 0
