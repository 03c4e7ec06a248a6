"""The teacher side of attractor distillation: fixed points of an EP-CNN on any backend.

:class:`Teacher` settles an :class:`~ephw.model.EnergyModel` from the null state on a backend
(``ephw.backends.get_backend(name, **options)``, so every registered backend -- digital,
crossbar, Lava -- can teach) and turns the fixed point into the targets of Eq. 8/9
(:class:`TeacherTargets`). :class:`TargetSource` is what every teacher shares: the targets of a
whole dataset, cached per teacher and images (the feed-forward control teacher,
:mod:`ephw.distill.feedforward_teacher`, is one too).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ephw import distributed
from ephw.backends import Backend, SettleResult, get_backend, settle
from ephw.checkpoint import BUNDLED_MODEL
from ephw.data import ImageSet
from ephw.data.cache import cache_dir
from ephw.errors import ConfigError
from ephw.model import EnergyModel, ModelConfig
from ephw.outputs import atomic_write


def recorded_teacher_path(recorded: str | None, run_dir: str | Path | None = None) -> Path:
    """The teacher checkpoint a student's meta names, found on this machine.

    The meta holds the path the teacher had when the student was trained (relative to that
    command's working directory). When it is not there, the same run folder's
    ``<teacher folder>/model.pt`` under ``run_dir`` is taken, and a bundled teacher recorded on
    another machine is the bundled one here. No recorded path: the bundled model.
    """
    if not recorded:
        return BUNDLED_MODEL
    path = Path(recorded)
    if path.exists():
        return path
    if run_dir is not None and (moved := Path(run_dir) / path.parent.name / path.name).exists():
        return moved
    if path.name == BUNDLED_MODEL.name:
        return BUNDLED_MODEL
    return path


@dataclass
class TeacherTargets:
    """What a student learns from the teacher's fixed points of ``B`` images.

    Attributes:
        hidden: the fixed-point states ``s*^1 .. s*^{N-1}`` of the hidden layers, ``(B, *shape)``
            each (``softmax`` teachers: all states; ``mse`` teachers: all but the output layer).
        output: the teacher's output as a class distribution ``p* (B, classes)``: the softmax of
            the readout logits at the fixed point (``softmax``), or the output state ``y*``
            normalised to sum 1 (``mse``; uniform where ``y* = 0``).
        predictions: the teacher's classes ``(B,)``.
        steps: settle steps per sample ``(B,)``.
        converged: ``(B,)`` bool, or ``None`` for a fixed-step settle.
    """

    hidden: list[Tensor]
    output: Tensor
    predictions: Tensor
    steps: Tensor
    converged: Tensor | None

    def __getitem__(self, idx: Tensor | slice) -> TeacherTargets:
        return TeacherTargets(
            [h[idx] for h in self.hidden],
            self.output[idx],
            self.predictions[idx],
            self.steps[idx],
            None if self.converged is None else self.converged[idx],
        )

    @staticmethod
    def cat(parts: list[TeacherTargets]) -> TeacherTargets:
        """Concatenate the targets of consecutive batches."""
        conv = [p.converged for p in parts]
        return TeacherTargets(
            [torch.cat(layer) for layer in zip(*(p.hidden for p in parts))],
            torch.cat([p.output for p in parts]),
            torch.cat([p.predictions for p in parts]),
            torch.cat([p.steps for p in parts]),
            None if any(c is None for c in conv) else torch.cat(conv),
        )

    def gathered(self) -> TeacherTargets:
        """Every rank's targets concatenated in rank order (:func:`ephw.distributed.gather_rows`)."""
        g = distributed.gather_rows
        return TeacherTargets(
            [g(h) for h in self.hidden],
            g(self.output),
            g(self.predictions),
            g(self.steps),
            None if self.converged is None else g(self.converged),
        )

    def to(self, device: torch.device | str) -> TeacherTargets:
        return TeacherTargets(
            [h.to(device) for h in self.hidden],
            self.output.to(device),
            self.predictions.to(device),
            self.steps,
            self.converged,
        )


def output_distribution(output: str, logits: Tensor, output_state: Tensor | None = None) -> Tensor:
    """A teacher's output as a class distribution ``(B, classes)`` (:attr:`TeacherTargets.output`).

    Args:
        output: the model's output mode (``ModelConfig.output``): ``softmax`` or ``mse``.
        logits: the readout logits ``(B, classes)`` (``softmax``: their softmax is the distribution).
        output_state: the output layer's state ``y (B, classes)`` (``mse``: ``y`` clamped at 0 and
            normalised to sum 1, uniform where ``y = 0``).
    """
    if output == "mse":
        y = output_state.clamp(min=0.0)
        total = y.sum(1, keepdim=True)
        uniform = torch.full_like(y, 1.0 / y.shape[1])
        return torch.where(total > 0, y / total.clamp_min(1e-30), uniform)
    return torch.softmax(logits, 1)


def targets_from_result(net: EnergyModel, res: SettleResult) -> TeacherTargets:
    """The :class:`TeacherTargets` of a settle of ``net``."""
    states = [s.detach().contiguous() for s in res.states]
    if net.config.output == "mse":
        output = output_distribution("mse", res.logits, states[-1])
        hidden = states[:-1]
    else:
        output = output_distribution("softmax", res.logits.detach())
        hidden = states
    return TeacherTargets(hidden, output, res.predictions.detach(), res.steps_per_sample, res.converged)


def describe_backend(impl: Backend) -> dict[str, Any]:
    """JSON-able record of a backend instance: its name and public attributes (``to_dict()`` where it has one)."""
    out: dict[str, Any] = {"name": impl.name}
    for key, value in vars(impl).items():
        if key.startswith("_"):
            continue
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        out[key] = value
    return out


class TargetSource:
    """What a student learns from: the :class:`TeacherTargets` of images, one batch or a whole dataset.

    Subclasses set :attr:`kind` and ``net`` (the teacher module, whose weights key the cache)
    and define :meth:`targets` and :meth:`describe` (JSON-able: the checkpoint meta's record of
    how the targets are made, which also keys the cache).
    """

    #: ``ep``: fixed points of an energy model; ``feedforward``: a feed-forward network's activations.
    kind: ClassVar[str] = ""
    net: nn.Module

    @property
    def config(self) -> ModelConfig:
        """The teacher's EP topology (what an EP-topology student is built from)."""
        raise NotImplementedError

    @property
    def n_hidden(self) -> int:
        """Number of hidden state layers (the MSE terms of Eq. 8)."""
        raise NotImplementedError

    def targets(self, x: Tensor) -> TeacherTargets:
        """The targets of a batch of images ``x (B, C, H, W)`` in ``[0, 1]``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """How the targets are made (checkpoint meta; part of the cache key)."""
        raise NotImplementedError

    def dataset_targets(self, data: ImageSet, batch_size: int = 256, reuse: bool = False) -> TeacherTargets:
        """The targets of every image of ``data``, computed in batches of ``batch_size`` (kept on the CPU).

        With ``reuse``, the targets are stored in the ephw cache (``$EPHW_CACHE/teachers/``), keyed
        by the teacher's weights, :meth:`describe` (backend, options, settle budget) and the images,
        so every student distilled from the same teacher on the same images computes them only once.
        """
        # under torchrun: rank 0's cache key (ranks differ in read seeds), each rank settles its
        # shard, gathered once; rank 0 writes the entry
        path = distributed.from_main(cache_dir() / "teachers" / f"{self.fingerprint(data)}.pt" if reuse else None)
        cached = _load_targets(path) if path is not None else None
        if distributed.all_max(float(cached is None)) == 0.0:
            return cached
        # each settled batch is kept beside the entry until it is complete, so a settle that is
        # stopped (a session's end, a kill) resumes at its first missing batch
        chunks = path.with_name(path.stem + ".partial") if path is not None else None
        part = distributed.shard(len(data))
        parts = []
        starts = range(part.start, part.stop, batch_size)
        quiet = not distributed.is_main()
        for lo in tqdm(starts, desc="settling teacher", unit="batch", file=sys.stderr, disable=quiet):
            hi = min(lo + batch_size, part.stop)
            chunk = chunks / f"{lo}-{hi}.pt" if chunks is not None else None
            done = _load_targets(chunk) if chunk is not None else None
            if done is None:
                done = self.targets(data.batch(slice(lo, hi))[0]).to("cpu")
                if chunk is not None:
                    _save_targets(chunk, done)
            parts.append(done)
        # a rank with no images (fewer than ranks) contributes the zero rows of a one-image settle
        local = TeacherTargets.cat(parts) if parts else self.targets(data.batch(slice(0, 1))[0]).to("cpu")[0:0]
        out = local.gathered()
        if path is not None and distributed.is_main():
            _save_targets(path, out)
            shutil.rmtree(chunks, ignore_errors=True)
        return out

    def fingerprint(self, data: ImageSet) -> str:
        """sha256 (hex, 32 chars) of the teacher's weights, :meth:`describe` and ``data``'s images and labels."""
        h = hashlib.sha256()
        for name, t in self.net.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(json.dumps(self.describe(), sort_keys=True, default=repr).encode())
        h.update(data.images.contiguous().numpy().tobytes())
        h.update(data.labels.numpy().tobytes())
        return h.hexdigest()[:32]


class Teacher(TargetSource):
    """An EP-CNN and the backend that settles it.

    Args:
        net: the trained energy model (eval mode).
        backend: a registered backend name.
        options: the backend's constructor options (e.g. ``{"preset": "pcm"}`` for ``crossbar``).
        steps, tol: the settle budget and tolerance (``ephw.settle``).

    One backend instance serves every call, so a hardware backend programs its chip once and
    keeps it (the same chip teaches every batch, as a physical teacher would).
    """

    kind: ClassVar[str] = "ep"

    def __init__(
        self, net: EnergyModel, backend: str, options: dict[str, Any] | None = None, steps: int = 500, tol: float = 1e-6
    ) -> None:
        if steps < 1:
            raise ConfigError(f"teacher steps must be >= 1, got {steps}")
        self.net = net
        self.backend_name = backend
        self.options = dict(options or {})
        self.impl = distributed.rank_backend(get_backend(backend, **self.options))  # same chip, own read noise
        self.steps = int(steps)
        self.tol = tol

    @property
    def config(self) -> ModelConfig:
        """The energy model's configuration."""
        return self.net.config

    @property
    def n_hidden(self) -> int:
        """Number of hidden state layers (the MSE terms of Eq. 8)."""
        return self.net.n_states - (self.net.config.output == "mse")

    def settle(self, x: Tensor, init: list[Tensor] | None = None) -> SettleResult:
        """Settle images ``x (B, C, H, W)`` in ``[0, 1]`` (from the null state unless ``init``)."""
        param = next(self.net.parameters())
        return settle(self.net, x.to(param.device, param.dtype), self.impl, self.steps, self.tol, init=init)

    def targets(self, x: Tensor) -> TeacherTargets:
        """The targets of a batch of images ``x (B, C, H, W)`` in ``[0, 1]``."""
        return targets_from_result(self.net, self.settle(x))

    def describe(self) -> dict[str, Any]:
        """The backend, its options and resolved parameters, and the settle budget (for checkpoint meta)."""
        return {
            "backend": self.backend_name,
            "backend_options": self.options,
            "backend_params": describe_backend(self.impl),
            "steps": self.steps,
            "tol": self.tol,
        }


def _load_targets(path: Path) -> TeacherTargets | None:
    """A stored entry (or batch) of teacher targets; ``None`` if absent. A damaged one is removed (settled again)."""
    if not path.is_file():
        return None
    try:
        return TeacherTargets(**torch.load(path, map_location="cpu", weights_only=True))
    except Exception:
        path.unlink(missing_ok=True)
        return None


def _save_targets(path: Path, targets: TeacherTargets) -> None:
    atomic_write(path, lambda fh: torch.save(dict(vars(targets)), fh))
