"""One model interface for the robustness harness: images in ``[0, 1]`` -> logits.

Every model under attack is a :class:`Classifier` wrapping an ``nn.Module`` that maps
``(B, C, H, W)`` images in ``[0, 1]`` to ``(B, classes)`` logits with its normalisation
inside. Feed-forward students and baselines (``ephw.feedforward``) already are such modules;
an EP model becomes one through :class:`EPClassifier`, which predicts with a full settle on
a chosen backend and back-propagates according to a :class:`~ephw.robustness.gradients.GradMode`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ephw.backends import DEFAULT_TOL, Backend, get_backend
from ephw.backends.base import check_settle_args
from ephw.checkpoint import BUNDLED_MODEL, checkpoint_format, load_checkpoint
from ephw.checkpoint import FORMAT as EP_FORMAT
from ephw.errors import CheckpointError, ConfigError
from ephw.feedforward import load_feedforward
from ephw.model import EnergyModel
from ephw.pretrained.catalog import resolve_model
from ephw.robustness.gradients import (
    AdjointStats,
    GradMode,
    dynamics_step,
    grads_label,
    parse_grads,
    surrogate_logits,
)

#: Prediction settles with this many steps at most (LANL predict with 250).
DEFAULT_PREDICT_STEPS = 250

#: The gradient modes PGD restarts on an EP model cycle through by default: a short unroll
#: (on the bundled digits model the strongest of the measured K-sweep, docs/robustness.md) and
#: LANL's 29-step unroll (the settled network's gradient once K reaches the settle length).
DEFAULT_GRAD = "bptt:5,bptt:29"


@dataclass
class SettleStats:
    """Running record of the settles an :class:`EPClassifier` ran (for the result rows)."""

    calls: int = 0
    images: int = 0
    steps: int = 0  # summed over calls: the batch's step count
    unconverged: int = 0  # images whose residual never reached tol

    def as_dict(self) -> dict[str, Any]:
        return {
            "settle_calls": self.calls,
            "settle_images": self.images,
            "settle_steps_mean": round(self.steps / max(self.calls, 1), 2),
            "unconverged_fraction": round(self.unconverged / max(self.images, 1), 6),
        }


class EPClassifier(nn.Module):
    """An :class:`EnergyModel` as a classifier: forward = full settle, backward = ``grad`` mode.

    The logits returned are exactly the settled ones (``backend`` readout of ``s*``); when the
    images require grad, the mode's surrogate states are spliced in straight-through,
    ``s = s* + (s_grad - s_grad.detach())``, so only the backward pass sees the surrogate.

    Args:
        net: the energy model (its dtype/device set the images').
        backend: backend name or instance; an instance made once here is reused, so a
            crossbar chip is programmed once and not re-drawn per call.
        steps: settle steps at most; ``tol``: per-sample stopping residual.
        grad: a :class:`GradMode`, its ``--grad`` spelling, or a comma-separated list of
            modes (``"bptt:5,bptt:29"``): PGD restart ``r`` then differentiates with mode
            ``r mod len`` (:meth:`use_restart`); everything else uses the first.
        options: backend constructor options.
    """

    def __init__(
        self,
        net: EnergyModel,
        backend: str | Backend = "async",
        steps: int = DEFAULT_PREDICT_STEPS,
        tol: float | None = DEFAULT_TOL,
        grad: GradMode | str = DEFAULT_GRAD,
        **options: Any,
    ) -> None:
        super().__init__()
        self.net = net.eval()
        self.backend = get_backend(backend, **options)
        self.steps = int(steps)
        self.tol = tol
        self.grads = parse_grads(grad)
        self.grad = self.grads[0]
        self._step = dynamics_step(net, self.backend)
        self.settle_stats = SettleStats()
        self.adjoint_stats = AdjointStats()
        self.unbounded = False  # see unbounded_inputs()

    @contextlib.contextmanager
    def unbounded_inputs(self) -> Iterator[None]:
        """Inside: images outside ``[0, 1]`` (beyond ``IMAGE_SLACK``) are settled instead of refused.

        Only for the published protocol's ``clip = "none"`` (``ephw.robustness.art_protocol``):
        lanl/AdvEP ran ART with ``clip_values=None``, so its adversarial images may leave the
        pixel box, and they were evaluated as they are. Shape, dtype and finiteness are still
        checked; everywhere else the range check stands.
        """
        before = self.unbounded
        self.unbounded = True
        try:
            yield
        finally:
            self.unbounded = before

    def check_images(self, x: Tensor) -> None:
        """Raise :class:`~ephw.errors.InputError` unless ``x`` ``(B, C, H, W)`` is a valid batch for a settle
        (its range is not checked inside :meth:`unbounded_inputs`)."""
        checked = x.detach().clamp(0.0, 1.0) if self.unbounded else x.detach()  # clamp keeps NaN: still refused
        check_settle_args(self.net, checked, self.steps, self.tol, 0.0, None)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, classes)`` of the settled model for images ``x`` ``(B, C, H, W)`` in ``[0, 1]``."""
        x = x.to(next(self.net.parameters()).dtype)
        self.check_images(x)
        res = self.backend.settle(self.net, x.detach(), steps=self.steps, tol=self.tol)
        st = self.settle_stats
        st.calls += 1
        st.images += x.shape[0]
        st.steps += res.steps
        if res.converged is not None:
            st.unconverged += int((~res.converged).sum())
        logits = res.logits.to(x.device)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return logits
        grad_logits = surrogate_logits(self.grad, self.net, self._step, x, res.states, self.adjoint_stats)
        return logits + (grad_logits - grad_logits.detach())

    @property
    def grad_label(self) -> str:
        """The comma-joined spelling of the restart modes, e.g. ``bptt:5,bptt:29``."""
        return grads_label(self.grads)

    def use_restart(self, restart: int | None) -> None:
        """Differentiate with restart ``restart``'s mode (``grads[restart mod len]``); ``None``: the first."""
        self.grad = self.grads[(restart or 0) % len(self.grads)]

    def reset_stats(self) -> None:
        self.settle_stats = SettleStats()
        self.adjoint_stats = AdjointStats()

    def stats_state(self) -> dict[str, dict[str, Any]]:
        """The settle and adjoint records as plain data (saved with a PGD row's mid-row progress)."""
        return {"settle": asdict(self.settle_stats), "adjoint": asdict(self.adjoint_stats)}

    def load_stats_state(self, state: dict[str, dict[str, Any]]) -> None:
        """Continue the records from :meth:`stats_state` (a resumed row reports its whole run)."""
        self.settle_stats = SettleStats(**state["settle"])
        self.adjoint_stats = AdjointStats(**{k: list(v) for k, v in state["adjoint"].items()})


@dataclass
class Classifier:
    """A model under attack.

    Attributes:
        name: the label in results and figures.
        module: ``nn.Module`` mapping ``(B, C, H, W)`` images in ``[0, 1]`` to ``(B, classes)`` logits.
        kind: ``"ep"`` (settled energy model) or ``"feedforward"``.
        meta: facts from the checkpoint (dataset, training) plus how it is evaluated.
    """

    name: str
    module: nn.Module
    kind: str = "feedforward"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.module.eval()  # pyautoattack and foolbox never call .eval() themselves

    @property
    def data(self) -> str | None:
        """The dataset the model was trained on, when its checkpoint says."""
        return self.meta.get("data")

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x)

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 256) -> Tensor:
        """Predicted classes ``(B,)`` (batched, no grad)."""
        return torch.cat([self.module(b).argmax(1) for b in x.split(batch_size)])


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how an EP model is evaluated (a ``[[models]]`` config entry).

    Attributes:
        name: label in results and figures.
        path: checkpoint file, or ``"bundled"`` for ``ephw/pretrained/digits-ep.pt``.
        backend, steps, tol, options: EP prediction settings (ignored for feed-forward models).
        grad: EP gradient mode (``bptt:K``, ``bptt:K:fixed``, ``implicit``, ``intermediate:K``,
            ``bpda``) or a comma-separated list that PGD restarts cycle through (default
            :data:`DEFAULT_GRAD`).
    """

    name: str
    path: str = "bundled"
    backend: str = "async"
    steps: int = DEFAULT_PREDICT_STEPS
    tol: float | None = DEFAULT_TOL
    grad: str = DEFAULT_GRAD
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse_grads(self.grad)  # validate early
        if self.steps < 1:
            raise ConfigError(f"model {self.name!r}: steps must be >= 1, got {self.steps}")

    @property
    def file(self) -> Path:
        return BUNDLED_MODEL if self.path == "bundled" else resolve_model(self.path)


def load_classifier(spec: ModelSpec, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Classifier:
    """The :class:`Classifier` of a model spec, dispatching on the checkpoint's ``format``.

    ``ephw.checkpoint`` files become an :class:`EPClassifier`; ``ephw.feedforward*`` files are
    loaded by :func:`ephw.feedforward.load_feedforward`.
    """
    fmt = checkpoint_format(spec.file)
    if fmt == EP_FORMAT:
        ckpt = load_checkpoint(spec.file)
        net = ckpt.model(dtype, device)
        module = EPClassifier(net, spec.backend, spec.steps, spec.tol, spec.grad, **spec.options)
        meta = {
            **ckpt.meta,
            "backend": spec.backend,
            "steps": spec.steps,
            "tol": spec.tol,
            "grad": module.grad_label,
            "backend_options": dict(spec.options),
        }
        return Classifier(spec.name, module, "ep", meta)
    if fmt.startswith("ephw.feedforward"):
        module, meta = load_feedforward(spec.file)
        return Classifier(spec.name, module.to(device=device, dtype=dtype), "feedforward", dict(meta))
    raise CheckpointError(f"{spec.file} has unknown checkpoint format {fmt!r}")
