"""The linear maps of an EP-CNN in plain numpy, for lava process models.

Lava process models must not call torch (lava's docs note it hangs in forked
children), so the convolutions, the max pooling with its switches and the
switch-routed unpooling ``P^-1`` live here as pure numpy functions.

Shapes: images/maps ``(B, C, H, W)``; conv weights ``(C_out, C_in, k, k)`` (stride 1,
symmetric zero padding ``p``); pooling windows ``pool x pool`` with floor cropping as
``torch.nn.functional.max_pool2d``. Integer inputs (the fixed-point models) are
convolved in float32 where every partial sum provably stays below ``2**24`` in magnitude,
else in float64, exact below ``2**53`` (8-bit weight mantissas times 24-bit payloads over up
to ``2**21`` terms); :meth:`ephw.lava.numerics.Numerics.sum_dtype` decides.
"""

from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, w: np.ndarray, padding: int) -> np.ndarray:
    """Cross-correlation ``w * x`` (no bias): ``(B, C_in, H, W) -> (B, C_out, H', W')``.

    im2col by ``k * k`` slice copies out of a padded channels-last buffer, then one matmul: on
    the small maps of a settle this is 2-3x faster than ``sliding_window_view`` + ``tensordot``.
    """
    b, c, h, w_in = x.shape
    c_out, k = w.shape[0], w.shape[-1]
    ho, wo = h + 2 * padding - k + 1, w_in + 2 * padding - k + 1
    xt = np.zeros((b, h + 2 * padding, w_in + 2 * padding, c), dtype=x.dtype)  # padded, channels last
    xt[:, padding : padding + h, padding : padding + w_in, :] = x.transpose(0, 2, 3, 1)
    cols = np.empty((b, ho, wo, k, k, c), dtype=np.result_type(x, w))
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j, :] = xt[:, i : i + ho, j : j + wo, :]
    out = cols.reshape(b * ho * wo, k * k * c) @ w.transpose(2, 3, 1, 0).reshape(k * k * c, c_out)
    return np.ascontiguousarray(out.reshape(b, ho, wo, c_out).transpose(0, 3, 1, 2))


def conv2d_transpose(v: np.ndarray, w: np.ndarray, padding: int) -> np.ndarray:
    """The transpose ``w~ * v`` of :func:`conv2d` (its input-gradient): ``(B, C_out, H', W') -> (B, C_in, H, W)``."""
    flipped = transposed_kernel(w)
    return conv2d(v, flipped, transposed_padding(flipped, padding))


def transposed_kernel(w: np.ndarray) -> np.ndarray:
    """``(C_out, C_in, k, k) -> (C_in, C_out, k, k)``, spatially flipped: for stride 1 the transposed
    conv is the cross-correlation with this kernel and padding :func:`transposed_padding`."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def transposed_padding(kernel: np.ndarray, padding: int) -> int:
    """The padding ``k - 1 - p`` that goes with :func:`transposed_kernel` for a conv of padding ``p``."""
    return kernel.shape[-1] - 1 - padding


def max_pool(a: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """``pool x pool`` max pooling and its switches.

    Returns ``(pooled, switch)``, both ``(B, C, H // pool, W // pool)``; ``switch`` (int32) is
    the row-major index (``0 .. pool**2 - 1``) of the first maximum in each window, the
    position torch's ``max_pool2d`` reports on ties (a later element wins only if strictly larger).
    """
    b, c, h, w = a.shape
    ho, wo = h // pool, w // pool
    win = a[:, :, : ho * pool, : wo * pool].reshape(b, c, ho, pool, wo, pool)
    pooled = win[:, :, :, 0, :, 0].copy()
    switch = np.zeros(pooled.shape, dtype=np.int32)
    for k in range(1, pool * pool):
        cand = win[:, :, :, k // pool, :, k % pool]
        larger = cand > pooled
        np.maximum(pooled, cand, out=pooled)
        switch += larger * (k - switch).astype(np.int32)
    return pooled, switch


def unpool(v: np.ndarray, switch: np.ndarray, pool: int, size: tuple[int, int]) -> np.ndarray:
    """``P^-1``: each pooled value back at its window's switch position, zeros elsewhere.

    ``v`` and ``switch`` are ``(B, C, h, w)``; the result is ``(B, C, *size)`` (``size``
    = the pre-pooling map, which may have rows/columns the pooling cropped).
    """
    b, c, ho, wo = v.shape
    full = np.zeros((b, c, *size), dtype=v.dtype)
    win = full[:, :, : ho * pool, : wo * pool]
    for k in range(pool * pool):
        win[:, :, k // pool :: pool, k % pool :: pool] = np.where(switch == k, v, 0)
    return full
