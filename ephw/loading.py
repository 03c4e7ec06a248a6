"""``load_model``: any ephw model file (EP checkpoint or feed-forward) or shipped name, as a module.

It sits above both formats (:mod:`ephw.checkpoint`, :mod:`ephw.feedforward.checkpoint`), which
know nothing of each other.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ephw.checkpoint import BUNDLED_MODEL, checkpoint_format, load_checkpoint
from ephw.feedforward.checkpoint import load_feedforward


def load_model(
    path: str | Path | None = None, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> nn.Module:
    """Load a model in eval mode: a checkpoint path or a shipped name (``ephw models``).

    ``None`` is the bundled digits EP-CNN. EP checkpoints give an :class:`EnergyModel`;
    feed-forward ones (students, BP-/Adv-CNNs, ResNet-18) the feed-forward module, which maps
    ``(B, C, H, W)`` images in [0, 1] to ``(B, classes)`` logits.
    """
    if path is not None and checkpoint_format(path).startswith("ephw.feedforward"):
        return load_feedforward(path, dtype, device)[0]
    return load_checkpoint(BUNDLED_MODEL if path is None else path).model(dtype, device)
