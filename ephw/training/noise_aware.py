"""Noise-aware (hardware-aware) training: weights drawn from a chip's device model for every batch.

One option for every trainer (``train ep``, ``train bp``/``adv``, ``distill``):
``--noise-aware PRESET[@T_SECONDS]`` (settings field ``noise_aware``). For each training batch
every weight layer of the trained model (:func:`ephw.crossbar.deploy.analog_layers`) is
programmed onto a fresh simulated chip of the preset -- programming noise, stuck faults,
variability, drift and drift compensation at ``T_SECONDS`` after programming (default: the
preset's ``drift.t_seconds``), plus one read-noise draw -- and the batch's forward pass /
settling and its gradient are computed with the chip's weights
(:meth:`~ephw.crossbar.CrossbarArray.sampled_weights`). The clean weights are put back before
the optimizer step, which applies that gradient to them (the straight-through rule of
hardware-aware training, as aihwkit's ``InferenceRPUConfig`` weight noise during training).

The chip of batch ``b`` of epoch ``e`` is seeded by ``(seed, e, b)``: a resumed run draws the
same chips. Converters are not part of the draw (they act on activations, not weights).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ephw.crossbar import CrossbarArray, CrossbarParams, load_params
from ephw.crossbar.deploy import analog_layers, unrolled_weight
from ephw.crossbar.seeds import derive_seed
from ephw.errors import ConfigError

#: stream id of the noise-aware chips (distinct from the crossbar's own streams)
NOISE_AWARE_STREAM = 17


@dataclass(frozen=True)
class NoiseAware:
    """Which device model the training weights are drawn from.

    Attributes:
        preset: a crossbar preset (``pcm``, ``rram-wan2022``, ...).
        t_seconds: time since programming the weights are drawn at, s (``None``: the preset's
            ``drift.t_seconds``).
    """

    preset: str
    t_seconds: float | None = None

    @classmethod
    def parse(cls, spec: str) -> NoiseAware:
        """``"pcm"`` or ``"pcm@86400"``; a bad spec is a one-line :class:`ConfigError`."""
        preset, sep, t = spec.strip().partition("@")
        t_seconds = None
        if sep:
            try:
                t_seconds = float(t)
            except ValueError:
                raise ConfigError(f"--noise-aware expects PRESET[@T_SECONDS], got {spec!r}") from None
        na = cls(preset.strip(), t_seconds)
        na.params()  # unknown preset / bad time: fail before training starts
        return na

    def params(self) -> CrossbarParams:
        """The preset with the drift time set."""
        params = load_params(self.preset)
        if self.t_seconds is not None:
            params = params.replace(**{"drift.t_seconds": self.t_seconds})
        return params

    def describe(self) -> dict[str, Any]:
        """What the checkpoint meta records: the spec and the full crossbar parameters."""
        p = self.params()
        return {**dataclasses.asdict(self), "t_seconds_used": p.drift.t_seconds, "crossbar": p.to_dict()}


@torch.no_grad()
def sample_weights(layers: list[nn.Module], params: CrossbarParams, seed: int) -> list[Tensor]:
    """One chip of ``params`` seeded by ``seed``: the weights each layer's array represents at read time."""
    out = []
    for j, layer in enumerate(layers):
        chip = CrossbarArray.program(
            unrolled_weight(layer), params.replace(chip_seed=seed, read_seed=derive_seed(seed, 1)), layer=j
        )
        out.append(chip.sampled_weights().view_as(layer.weight))
    return out


@contextlib.contextmanager
def perturbed(layers: list[nn.Module], params: CrossbarParams, seed: int) -> Iterator[None]:
    """Inside: every layer's weight is its chip draw (in place); on exit the clean weights are back.

    Gradients computed inside stay in ``p.grad`` (they are not touched on exit).
    """
    clean = [layer.weight.detach().clone() for layer in layers]
    noisy = sample_weights(layers, params, seed)
    with torch.no_grad():
        for layer, w in zip(layers, noisy):
            layer.weight.copy_(w)
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, w in zip(layers, clean):
                layer.weight.copy_(w)


Step = Callable[[Tensor, Tensor, Tensor, int, int], dict[str, float]]


def wrap_step(step: Step, model: nn.Module, spec: str | NoiseAware | None, seed: int, meta: dict[str, Any]) -> Step:
    """``step`` run on chip-drawn weights (see the module doc), or ``step`` itself when ``spec`` is ``None``.

    Records the option in ``meta["noise_aware"]`` (stored in every checkpoint of the run).
    """
    if spec is None:
        return step
    na = NoiseAware.parse(spec) if isinstance(spec, str) else spec
    params = na.params()
    layers = analog_layers(model)
    meta["noise_aware"] = na.describe()

    def noisy_step(x: Tensor, y: Tensor, idx: Tensor, epoch: int, b: int) -> dict[str, float]:
        with perturbed(layers, params, derive_seed(seed, NOISE_AWARE_STREAM, epoch, b)):
            return step(x, y, idx, epoch, b)

    return noisy_step
