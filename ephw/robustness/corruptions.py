"""Natural corruptions: the 15 CIFAR-10-C / ImageNet-C corruptions x 5 severities, on the fly.

Two severity tables:

* ``imagenet`` -- the ``imagecorruptions`` package (``imagecorruptions-imaug``), i.e. the
  ImageNet-C constants of Hendrycks & Dietterich (2019), run on 32-pixel images.
* ``cifar`` -- the milder 32-pixel constants with which Hendrycks & Dietterich generated
  CIFAR-10-C (``make_cifar_c.py`` in github.com/hendrycks/robustness). The corruption code
  here is ephw's own; it calls ``imagecorruptions`` helpers where those are the same
  operation (the defocus disk kernel, the diamond-square fog map, the motion-blur kernel,
  the frost photographs). Two unavoidable differences from the published files: motion
  blur (and the snow streaks) use ``imagecorruptions``' numpy motion blur instead of
  ImageMagick's, and every random draw is seeded (the originals were not).

Images smaller than 32 pixels (8x8 digits) are enlarged to 32 pixels by pixel repetition,
corrupted, and reduced back by block averaging, so the constants act at the scale they
were made for. Grey images are corrupted as three equal channels and averaged back.

Every draw is seeded from ``(seed, corruption, severity, image index)``: the same seed
gives the same corrupted images, whatever the batch.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import io
import math
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scizoom
from skimage import color as skcolor
from skimage import util as skutil
from skimage.filters import gaussian
from torch import Tensor

from ephw.errors import ConfigError, InputError

#: The 15 corruptions of CIFAR-10-C / ImageNet-C, in the published order.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
TABLES: tuple[str, ...] = ("cifar", "imagenet")
MIN_SIZE = 32  # imagecorruptions refuses smaller images; the CIFAR constants are for 32 pixels

# ---------------------------------------------------------------- CIFAR-10-C constants
# Hendrycks & Dietterich (2019), make_cifar_c.py: one entry per severity 1..5.
CIFAR_CONSTANTS: dict[str, list] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],  # sigma, max_delta, iters
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],  # radius, sigma
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],  # zooms arange(1, z, 0.01)
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    # (alpha, sigma, affine) in units of the image size
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}


def _clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of ``img`` (H, W, C) by ``factor`` and crop back to H x W."""
    h, w = img.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    out = scizoom(img[top : top + ch, left : left + cw], (factor, factor, 1), order=1)
    th, tw = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[th : th + h, tw : tw + w]


def _gray(x: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2GRAY)[..., None]


def _glass(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    sigma, delta, iters = c
    img = np.uint8(gaussian(x, sigma=sigma, channel_axis=-1) * 255)
    h, w = img.shape[:2]
    for _ in range(iters):  # locally shuffle pixels, bottom-right to top-left as the original
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=2)
                i2, j2 = i + dy, j + dx
                img[i, j], img[i2, j2] = img[i2, j2].copy(), img[i, j].copy()
    return gaussian(img / 255.0, sigma=sigma, channel_axis=-1)


def _snow(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    from imagecorruptions.corruptions import _motion_blur

    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer[..., None], c[2])[..., 0]
    layer[layer < c[3]] = 0
    layer = _motion_blur(np.clip(layer, 0, 1), radius=c[4], sigma=c[5], angle=rng.uniform(-135, -45))
    layer = (np.round(layer * 255) / 255.0)[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2)


def _frost(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    idx = int(rng.integers(5))  # make_cifar_c.py draws among the first five pictures
    name = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"][idx]
    with importlib.resources.as_file(importlib.resources.files("imagecorruptions") / "frost" / name) as path:
        frost = cv2.imread(str(path))
    frost = cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)
    h, w = x.shape[:2]
    top, left = int(rng.integers(0, frost.shape[0] - h)), int(rng.integers(0, frost.shape[1] - w))
    frost = frost[top : top + h, left : left + w][..., [2, 1, 0]] / 255.0
    return c[0] * x + c[1] * frost


def _fog(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    from imagecorruptions.corruptions import plasma_fractal  # draws from np.random (seeded by the caller)

    h, w = x.shape[:2]
    size = 1 << max(h, w, 2).bit_length() - (max(h, w) & (max(h, w) - 1) == 0)
    peak = x.max()
    x = x + c[0] * plasma_fractal(mapsize=size, wibbledecay=c[1])[:h, :w, None]
    return x * peak / (peak + c[0])


def _elastic(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    alpha, sigma, affine = (v * h for v in c)
    x = x.astype(np.float32)
    centre = np.float32([h, w]) // 2
    half = min(h, w) // 3
    pts1 = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
    x = cv2.warpAffine(x, cv2.getAffineTransform(pts1, pts2), (w, h), borderMode=cv2.BORDER_REFLECT_101)
    if alpha == 0:  # severity 1 is a pure random affine map
        return x
    dx = gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    yy, xx, zz = np.meshgrid(np.arange(h), np.arange(w), np.arange(x.shape[2]), indexing="ij")
    coords = (yy + dy[..., None]).ravel(), (xx + dx[..., None]).ravel(), zz.ravel()
    return map_coordinates(x, coords, order=1, mode="reflect").reshape(x.shape)


def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.uint8(np.clip(x, 0, 1) * 255 + 0.5))


def _pixelate(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    img = _pil(x).resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(img) / 255.0


def _jpeg(x: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    _pil(x).save(buf, "JPEG", quality=c)
    return np.asarray(Image.open(buf)) / 255.0


def _defocus(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    from imagecorruptions.corruptions import disk

    kernel = disk(radius=c[0], alias_blur=c[1])
    return np.stack([cv2.filter2D(x[..., d].astype(np.float32), -1, kernel) for d in range(3)], -1)


def _motion(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    from imagecorruptions.corruptions import _motion_blur

    return _motion_blur(x, radius=c[0], sigma=c[1], angle=rng.uniform(-45, 45))


def _zoom(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = x.astype(np.float32)
    zooms = np.arange(1, c, 0.01)
    return (x + sum(_clipped_zoom(x, z) for z in zooms)) / (len(zooms) + 1)


def _hsv_value(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    hsv = skcolor.rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return skcolor.hsv2rgb(hsv)


_CIFAR: dict[str, Callable[[np.ndarray, object, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": lambda x, c, rng: x + rng.normal(size=x.shape, scale=c),
    "shot_noise": lambda x, c, rng: rng.poisson(x * c) / c,
    "impulse_noise": lambda x, c, rng: skutil.random_noise(x, mode="s&p", rng=int(rng.integers(2**31)), amount=c),
    "defocus_blur": _defocus,
    "glass_blur": _glass,
    "motion_blur": _motion,
    "zoom_blur": _zoom,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _hsv_value,
    "contrast": lambda x, c, rng: (x - x.mean(axis=(0, 1), keepdims=True)) * c + x.mean(axis=(0, 1), keepdims=True),
    "elastic_transform": _elastic,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg,
}


def corrupt_cifar(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 image corrupted with CIFAR-10-C's constants; uint8 as the published files."""
    x = image.astype(np.float64) / 255.0
    out = _CIFAR[name](x, CIFAR_CONSTANTS[name][severity - 1], rng)
    return np.uint8(np.clip(out, 0, 1) * 255)  # truncation, as make_cifar_c.py's np.uint8(...)


def corrupt_imagenet(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 image corrupted by ``imagecorruptions`` (ImageNet-C constants)."""
    from imagecorruptions import corrupt

    kwargs = {"seed": seed} if name in ("glass_blur", "impulse_noise") else {}
    return corrupt(image, severity=severity, corruption_name=name, **kwargs)


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (which library helpers draw from), restoring it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def corrupt_images(
    images: Tensor, name: str, severity: int, seed: int, table: str = "cifar", keys: Sequence[int] | None = None
) -> Tensor:
    """Corrupt a batch.

    Args:
        images: ``(B, C, H, W)`` float in ``[0, 1]``, ``C`` 1 or 3.
        name: one of :data:`CORRUPTIONS`; ``severity``: 1..5; ``table``: ``cifar`` or ``imagenet``.
        seed: the draws of image ``i`` are seeded from ``(seed, name, severity, keys[i])``.
        keys: per-image keys, e.g. dataset indices (default ``0..B-1``), so that an image
            gets the same draws whatever batch or subset it comes in.

    Returns:
        ``(B, C, H, W)`` float32 in ``[0, 1]`` on the images' device.
    """
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if table not in TABLES:
        raise ConfigError(f"unknown corruption table {table!r}; valid: {', '.join(TABLES)}")
    if severity not in (1, 2, 3, 4, 5):
        raise ConfigError(f"corruption severity must be 1..5, got {severity!r}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise InputError(f"corruptions need (B, 1 or 3, H, W) images, got {tuple(images.shape)}")
    b, c, h, w = images.shape
    keys = list(range(b)) if keys is None else [int(k) for k in keys]
    if len(keys) != b:
        raise InputError(f"corrupt_images got {len(keys)} keys for {b} images")
    scale = max(1, math.ceil(MIN_SIZE / min(h, w)))
    arr = (images.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    arr = np.repeat(np.repeat(arr, scale, axis=2), scale, axis=3).transpose(0, 2, 3, 1)  # (B, H', W', C)
    if c == 1:
        arr = np.repeat(arr, 3, axis=3)
    out = np.empty(arr.shape, dtype=np.float32)
    code = CORRUPTIONS.index(name)
    for i in range(b):
        s = int(np.random.SeedSequence([seed, code, severity, keys[i]]).generate_state(1)[0])
        with _numpy_seed(s):
            if table == "cifar":
                res = corrupt_cifar(arr[i], name, severity, np.random.default_rng(s))
            else:
                res = corrupt_imagenet(arr[i], name, severity, s)
        out[i] = np.asarray(res, dtype=np.float32).reshape(arr.shape[1:]) / 255.0
    if c == 1:
        out = out.mean(axis=3, keepdims=True)
    res = torch.from_numpy(out.transpose(0, 3, 1, 2).copy())
    if scale > 1:
        res = torch.nn.functional.avg_pool2d(res, scale)
    return res.to(images.device)
