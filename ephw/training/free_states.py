"""Where an EP free phase starts: the null state, or a free fixed point carried over.

Settling from the null state to the fixed point takes ~170 asynchronous sweeps on a trained
CIFAR-10 ``cpu-small`` EP-CNN; a free phase of 30 sweeps therefore stops far from it and the
EP gradient is taken there. Starting the free phase from a state already near the fixed
point gets closer for the same sweeps:

- ``zero``: the null state every batch (Laborieux et al. 2021; today's default).
- ``image``: the free state this training image reached the last time it was seen (kept for
  every training image, across epochs: *persistent* EP; 7,242 values per ``cpu-small`` image,
  stored in float16, 0.72 GB for CIFAR-10's 50,000 images).
- ``batch``: the previous batch's free state, whatever images it held (Scellier et al. 2023,
  rain-neuromorphics/energy-based-learning, ``set_input(reset=False)``).

The carried states are part of the run's training state: they are written beside
``checkpoint.pt`` (``free-states.pt``; one file per rank under torchrun) whenever it is, and a
resumed run continues from them. The file is large (0.72 GB for CIFAR-10), so it may not travel
with a run folder (a repository keeps ``checkpoint.pt`` but not it): a ``--resume`` without it
warns in one line and starts every image from the null state again, as on its first visit.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ephw import distributed
from ephw.errors import CheckpointError
from ephw.outputs import atomic_write

FREE_INITS = ("zero", "image", "batch")
FILE = "free-states.pt"


class FreeStateStore:
    """Free states carried from one visit to the next (``image``: one slot per training image; ``batch``: one slot).

    Args:
        mode: ``"image"`` or ``"batch"`` (``"zero"`` needs no store).
        shapes: per-sample state shapes of the model (:meth:`EnergyModel.state_shapes`).
        n_images: training-set size (``image`` mode).
        dtype: storage dtype (the states are in ``[0, 1]``; float16 keeps them to ~5e-4).
    """

    def __init__(
        self, mode: str, shapes: Sequence[tuple[int, ...]], n_images: int, dtype: torch.dtype = torch.float16
    ) -> None:
        if mode not in ("image", "batch"):
            raise ValueError(f"free-state store mode must be 'image' or 'batch', got {mode!r}")
        self.mode = mode
        self.shapes = [tuple(s) for s in shapes]
        self.n_images = n_images
        self.dtype = dtype
        rows = n_images if mode == "image" else 0
        self.states: list[Tensor] = [torch.zeros((rows, *s), dtype=dtype) for s in self.shapes]

    def take(self, idx: Tensor, like: Tensor) -> list[Tensor]:
        """Initial free states for the training images ``idx`` (``(B,)``), in ``like``'s dtype and device.

        Images never seen start from the null state (zeros).
        """
        b = len(idx)
        out = []
        for s, shape in zip(self.states, self.shapes):
            if self.mode == "image":
                rows = s[idx.cpu()]
            else:  # the previous batch's, cut or zero-padded to this batch's size
                rows = torch.zeros((b, *shape), dtype=self.dtype)
                k = min(b, s.shape[0])
                rows[:k] = s[:k]
            out.append(rows.to(device=like.device, dtype=like.dtype))
        return out

    def put(self, idx: Tensor, states: Sequence[Tensor]) -> None:
        """Keep the free states ``states`` (``[(B, *shape)]``) reached for images ``idx``."""
        for j, s in enumerate(states):
            rows = s.detach().to("cpu", self.dtype)
            if self.mode == "image":
                self.states[j][idx.cpu()] = rows
            else:
                self.states[j] = rows.contiguous().clone()

    # ------------------------------------------------------------------ persistence
    @staticmethod
    def path(root: str | Path) -> Path:
        """This rank's file in run folder ``root``."""
        w = distributed.world()
        return Path(root) / (FILE if w.size == 1 else f"free-states.rank{w.rank}.pt")

    def save(self, root: str | Path) -> None:
        """Write the store atomically next to the run's checkpoint."""
        blob = {"mode": self.mode, "shapes": self.shapes, "n_images": self.n_images, "states": self.states}
        atomic_write(self.path(root), lambda fh: torch.save(blob, fh))

    def load(self, root: str | Path) -> None:
        """Continue from the store saved in ``root``; a missing file restarts the carried states from the
        null state (one warning line), an unreadable or another run's file is a :class:`CheckpointError`."""
        path = self.path(root)
        if not path.exists():
            print(
                f"ephw: warning: {path} is missing: the carried free states start again from the null state",
                file=sys.stderr,
            )
            return
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
            raise CheckpointError(f"--resume: cannot read {path}: {type(exc).__name__}") from None
        expected = (self.mode, self.shapes, self.n_images)
        found = (blob.get("mode"), [tuple(s) for s in blob.get("shapes", [])], blob.get("n_images"))
        if found != expected:
            raise CheckpointError(f"--resume: {path} holds free states {found}, this run needs {expected}")
        self.states = [s.to(self.dtype) for s in blob["states"]]
