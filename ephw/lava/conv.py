"""The linear maps of an EP-CNN in plain numpy, for lava process models.

Lava process models must not call torch (lava's docs note it hangs in forked
children), so the convolutions, the max pooling with its switches and the
switch-routed unpooling ``P^-1`` live here as pure numpy functions.

Shapes: images/maps ``(B, C, H, W)``; conv weights ``(C_out, C_in, k, k)`` (stride 1,
symmetric zero padding ``p``); pooling windows ``pool x pool`` with floor cropping as
``torch.nn.functional.max_pool2d``. Integer inputs (the fixed-point models) are
convolved in float64, which is exact while every partial sum stays below ``2**53``
(true for 8-bit weight mantissas times 24-bit payloads over up to ``2**21`` terms).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv2d(x: np.ndarray, w: np.ndarray, padding: int) -> np.ndarray:
    """Cross-correlation ``w * x`` (no bias): ``(B, C_in, H, W) -> (B, C_out, H', W')``."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    win = sliding_window_view(xp, (k, k), axis=(2, 3))  # (B, C_in, H', W', k, k)
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # (B, H', W', C_out)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def conv2d_transpose(v: np.ndarray, w: np.ndarray, padding: int) -> np.ndarray:
    """The transpose ``w~ * v`` of :func:`conv2d` (its input-gradient): ``(B, C_out, H', W') -> (B, C_in, H, W)``.

    For stride 1 this is a cross-correlation with the spatially flipped, in/out-swapped
    kernel and padding ``k - 1 - p``.
    """
    k = w.shape[-1]
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return conv2d(v, flipped, k - 1 - padding)


def max_pool(a: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """``pool x pool`` max pooling and its switches.

    Returns ``(pooled, switch)``, both ``(B, C, H // pool, W // pool)``; ``switch`` is the
    row-major index (``0 .. pool**2 - 1``) of the first maximum in each window, the
    position torch's ``max_pool2d`` reports on ties.
    """
    b, c, h, w = a.shape
    ho, wo = h // pool, w // pool
    win = a[:, :, : ho * pool, : wo * pool].reshape(b, c, ho, pool, wo, pool).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(b, c, ho, wo, pool * pool)
    switch = win.argmax(-1)
    pooled = np.take_along_axis(win, switch[..., None], -1)[..., 0]
    return pooled, switch


def unpool(v: np.ndarray, switch: np.ndarray, pool: int, size: tuple[int, int]) -> np.ndarray:
    """``P^-1``: each pooled value back at its window's switch position, zeros elsewhere.

    ``v`` and ``switch`` are ``(B, C, h, w)``; the result is ``(B, C, *size)`` (``size``
    = the pre-pooling map, which may have rows/columns the pooling cropped).
    """
    b, c, ho, wo = v.shape
    win = np.zeros((b, c, ho, wo, pool * pool), dtype=v.dtype)
    np.put_along_axis(win, switch[..., None], v[..., None], -1)
    full = win.reshape(b, c, ho, wo, pool, pool).transpose(0, 1, 2, 4, 3, 5).reshape(b, c, ho * pool, wo * pool)
    if full.shape[2:] != tuple(size):
        full = np.pad(full, ((0, 0), (0, 0), (0, size[0] - ho * pool), (0, size[1] - wo * pool)))
    return full
