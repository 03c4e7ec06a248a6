"""Mid-row progress of a PGD row, so a killed run resumes inside the row instead of redoing it.

A PGD row on an EP model is hours of settles (10 restarts x 200 steps on 500 images), and a row
is written only when it is complete. :func:`ephw.robustness.attacks.run_attack` given a
``progress`` file saves, after every finished batch of every restart, what the row has so far:
the images still standing, the restart in progress and the batches of it done, and torch's
random state at that point. A rerun with the same file continues from the next batch and ends
with the same result, bit for bit, as an uninterrupted run (the model is deterministic and every
random draw comes from the saved generator state).

A progress file is tied to its row by :func:`row_key` (attack settings, eps, seed, restarts and a
hash of the images and labels): a file made for anything else is ignored, with a warning, and
overwritten. The caller removes it (:func:`discard`) once the finished row is on disk.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ephw.outputs import atomic_write

FORMAT = "ephw-pgd-progress/1"


@dataclass
class RowProgress:
    """What a PGD row has done so far.

    Attributes:
        key: the row it belongs to (:func:`row_key`).
        restart: the restart in progress (an index into the row's ``restarts`` range).
        idx: ``(k,)`` long, the images that restart attacks (positions in the row's images).
        batches: batches of that restart already finished.
        alive: ``(n,)`` bool, images no finished batch has broken.
        adv: ``(n, C, H, W)`` the returned images so far, or ``None`` where the caller does not
            need them (a deterministic model's verdict is its own prediction).
        survivors: images standing after each finished restart before ``restart``.
        earlier: images whose adversarial is an earlier iterate than the library's last.
        rng: torch's CPU generator state after the last finished batch (and ``cuda_rng``, the
            device's, when the images are on a GPU).
        seconds: attack time spent before this point (s), summed over interrupted runs.
        model_stats: the model's own running records at this point (an EP model's settle and
            adjoint counts, ``EPClassifier.stats_state``), restored on resume so the row's
            records cover the whole row; ``None`` for a model without them.
    """

    key: str
    restart: int
    idx: Tensor
    batches: int
    alive: Tensor
    adv: Tensor | None
    survivors: list[int]
    earlier: int
    rng: Tensor
    seconds: float
    cuda_rng: Tensor | None = None
    model_stats: dict[str, Any] | None = None


def digest(*tensors: Tensor, text: str = "") -> str:
    """sha256 (hex) over ``text`` and the bytes of ``tensors``."""
    h = hashlib.sha256(text.encode())
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def row_key(x: Tensor, y: Tensor, settings: dict[str, Any]) -> str:
    """sha256 over the images ``x``, labels ``y`` and the row's attack ``settings``."""
    return digest(x, y, text=repr(sorted(settings.items())))


def load(path: str | Path, key: str) -> RowProgress | None:
    """The progress saved at ``path`` for row ``key``; ``None`` if there is none (or it is another row's)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError("not a PGD progress file")
        state = RowProgress(**{k: v for k, v in blob.items() if k != "format"})
    except Exception as exc:  # noqa: BLE001 - a partial row is only ever a saving; start the row over
        warnings.warn(f"{path}: unreadable PGD progress ({type(exc).__name__}); the row starts over", stacklevel=2)
        return None
    if state.key != key:
        warnings.warn(
            f"{path}: PGD progress of another row (different settings or images); it starts over", stacklevel=2
        )
        return None
    return state


def save(path: str | Path, state: RowProgress) -> None:
    """Write ``state`` to ``path`` atomically (the previous progress stays until the new one is complete)."""
    blob = {"format": FORMAT, **state.__dict__}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write(path, buf.getvalue())


def discard(path: str | Path | None) -> None:
    """Remove the progress file at ``path`` (a finished row no longer needs it)."""
    if path is not None:
        Path(path).unlink(missing_ok=True)
