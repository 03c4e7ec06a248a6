"""The weight layers and input statistics of an EP-CNN topology (the energy model and its feed-forward twin)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ephw.model.config import ModelConfig


def synapse_layers(cfg: ModelConfig) -> tuple[nn.ModuleList, nn.ModuleList]:
    """``(convs, dense)`` of ``cfg``: PyTorch's default init times ``cfg.scales()`` per layer.

    Conv weights are channels-last: every conv output, pooling and state is then
    channels-last too, which oneDNN pools ~10x and convolves ~1.4x faster. The dense list
    ends with the output layer (readout).
    """
    c = cfg.in_shape[0]
    convs = nn.ModuleList()
    for spec in cfg.convs:
        convs.append(nn.Conv2d(c, spec.channels, spec.kernel, padding=spec.padding))
        c = spec.channels
    feats = cfg.feature_shapes()
    widths = [math.prod(feats[len(cfg.convs) - 1]) if cfg.convs else math.prod(cfg.in_shape)]
    widths += [*cfg.dense, cfg.classes]
    dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
    with torch.no_grad():
        for layer, scale in zip([*convs, *dense], cfg.scales()):
            layer.weight.mul_(scale)
            layer.bias.mul_(scale)
    convs.to(memory_format=torch.channels_last)
    return convs, dense


def input_stats(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """Per-channel input mean and std, ``(1, C, 1, 1)`` float32 (for ``register_buffer``)."""
    mean = torch.tensor(cfg.input_mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(cfg.input_std, dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std
