"""Batch data augmentation on tensors (vectorised: one gather per batch, no per-image loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ephw.errors import InputError


def random_crop_flip(
    images: torch.Tensor,
    padding: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-padded random crop back to ``H x W`` plus a random horizontal flip (p = 0.5).

    Each image is padded with ``padding`` zero pixels on every side, a window of the original
    size is cut at an independent uniformly random offset in ``0..2*padding`` (both axes), and
    the window is mirrored left-right with probability 0.5.

    Args:
        images: ``(B, C, H, W)`` batch (any dtype; float images in [0, 1] typically).
        padding: pixels of zero padding per side, >= 0 (0 gives flips only).
        generator: source of randomness; the same generator state gives the same result.
            Random numbers are drawn on the generator's device.

    Returns:
        ``(B, C, H, W)`` tensor, same dtype and device as ``images``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"random_crop_flip expects a (B, C, H, W) tensor; got {shape}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise InputError(f"random_crop_flip padding must be an integer >= 0; got {padding!r}")
    b, c, h, w = images.shape
    device = images.device
    rand_device = generator.device if generator is not None else device
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=rand_device)
    flip = torch.rand(b, generator=generator, device=rand_device) < 0.5
    offsets, flip = offsets.to(device), flip.to(device)

    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_idx = torch.arange(b, device=device)[:, None, None, None]
    chan_idx = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]
