"""Architecture of an EP energy model: a frozen, JSON-serialisable dataclass.

The configuration is the *what* of the model (topology, activation, readout); it
says nothing about how the energy is minimised (that is a backend's business).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ephw.errors import ConfigError

#: Activation name -> gain g of the hard sigmoid ``clamp(g * x, 0, 1)``.
ACTIVATIONS: dict[str, float] = {
    "clamp": 1.0,  # clamp(x, 0, 1)
    "laborieux": 0.5,  # clamp(x / 2, 0, 1), Laborieux et al. 2021 ``my_hard_sig``
}

#: Output modes: a dynamic output layer nudged with MSE, or a softmax/cross-entropy
#: readout of the last hidden layer (Laborieux ``--softmax``, used by LANL).
OUTPUTS = ("softmax", "mse")


@dataclass(frozen=True)
class ConvSpec:
    """One convolutional layer ``k x k`` conv (stride 1) followed by ``pool x pool`` max pooling."""

    channels: int
    padding: int = 1
    kernel: int = 3
    pool: int = 2


@dataclass(frozen=True)
class ModelConfig:
    """Topology of an EP-CNN.

    Attributes:
        in_shape: input image shape ``(C, H, W)``.
        convs: conv layers, each followed by max pooling.
        dense: widths of hidden fully connected layers after the convs (may be empty).
        classes: number of classes (width of the output layer / readout).
        output: ``"softmax"`` (readout from the last hidden layer, not a state) or
            ``"mse"`` (the output ``y`` is a dynamic state layer).
        activation: a key of :data:`ACTIVATIONS`.
        input_mean, input_std: per-channel normalisation applied inside the model,
            so the model takes images in ``[0, 1]``.
        init_scale: multiplier of PyTorch's default init, one per synapse layer or a
            single float for all (Laborieux et al. scale the initial weights down).
    """

    in_shape: tuple[int, int, int]
    convs: tuple[ConvSpec, ...]
    dense: tuple[int, ...] = ()
    classes: int = 10
    output: str = "softmax"
    activation: str = "laborieux"
    input_mean: tuple[float, ...] = (0.0,)
    input_std: tuple[float, ...] = (1.0,)
    init_scale: tuple[float, ...] | float = 1.0
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if len(self.in_shape) != 3 or min(self.in_shape) < 1:
            raise ConfigError(f"in_shape must be (C, H, W) with positive sizes, got {self.in_shape}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown output {self.output!r}; valid: {', '.join(OUTPUTS)}")
        if self.classes < 2:
            raise ConfigError(f"classes must be >= 2, got {self.classes}")
        c = self.in_shape[0]
        for stats in (self.input_mean, self.input_std):
            if len(stats) not in (1, c):
                raise ConfigError(f"input_mean/input_std need 1 or {c} values, got {stats}")
        if any(s <= 0 for s in self.input_std):
            raise ConfigError(f"input_std must be positive, got {self.input_std}")
        if not isinstance(self.init_scale, (int, float)) and len(self.init_scale) != self.n_synapses:
            raise ConfigError(f"init_scale needs 1 or {self.n_synapses} values, got {self.init_scale}")
        self.feature_shapes()  # raises if the convs shrink the image to nothing

    @property
    def gain(self) -> float:
        """Slope ``g`` of the hard sigmoid ``clamp(g x, 0, 1)``."""
        return ACTIVATIONS[self.activation]

    @property
    def n_synapses(self) -> int:
        """Number of weight layers: convs, hidden dense layers and the output layer."""
        return len(self.convs) + len(self.dense) + 1

    def feature_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shape of every layer after the input: convs (post-pool), dense, output."""
        c, h, w = self.in_shape
        shapes: list[tuple[int, ...]] = []
        for i, spec in enumerate(self.convs):
            h = (h + 2 * spec.padding - spec.kernel + 1) // spec.pool
            w = (w + 2 * spec.padding - spec.kernel + 1) // spec.pool
            if h < 1 or w < 1:
                raise ConfigError(f"conv layer {i + 1} reduces the {self.in_shape} input to nothing")
            c = spec.channels
            shapes.append((c, h, w))
        shapes += [(d,) for d in self.dense]
        shapes.append((self.classes,))
        return shapes

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes of the dynamic layers ``s^1 .. s^N`` (the output only in ``mse`` mode)."""
        shapes = self.feature_shapes()
        return shapes if self.output == "mse" else shapes[:-1]

    def scales(self) -> tuple[float, ...]:
        if isinstance(self.init_scale, (int, float)):
            return (float(self.init_scale),) * self.n_synapses
        return tuple(float(s) for s in self.init_scale)

    def with_(self, **changes: Any) -> ModelConfig:
        """A copy with some fields replaced (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["convs"] = [dataclasses.asdict(c) for c in self.convs]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        try:
            d = dict(d)
            d["convs"] = tuple(ConvSpec(**c) for c in d["convs"])
            d["in_shape"] = tuple(d["in_shape"])
            for key in ("dense", "input_mean", "input_std"):
                if key in d:
                    d[key] = tuple(d[key])
            if isinstance(d.get("init_scale"), list):
                d["init_scale"] = tuple(d["init_scale"])
            return cls(**d)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a valid model configuration: {exc}") from None


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
# Laborieux et al. 2021 normalise CIFAR with three times the usual std.
CIFAR10_STD = (3 * 0.2023, 3 * 0.1994, 3 * 0.2010)


def _paper(classes: int) -> ModelConfig:
    return ModelConfig(
        in_shape=(3, 32, 32),
        convs=(ConvSpec(128, 1), ConvSpec(256, 1), ConvSpec(512, 1), ConvSpec(512, 0)),
        classes=classes,
        input_mean=CIFAR10_MEAN,
        input_std=CIFAR10_STD,
        # Twice PyTorch's default init: with the default, the hard sigmoid (slope 1/2)
        # shrinks the states ~3x per layer (s4 ~ 4e-3 at init) and EP does not learn in the
        # first CIFAR-10 epoch; with 2x it reaches 23% after 80 batches (docs/configs.md).
        init_scale=2.0,
        name="paper",
    )


def _cpu_small(classes: int) -> ModelConfig:
    # Same shape as `paper`, 1/8 of the channels: one EP epoch on CIFAR-10 fits a
    # 2-core CPU (see docs/configs.md for the measured time).
    return _paper(classes).with_(
        convs=(ConvSpec(16, 1), ConvSpec(32, 1), ConvSpec(64, 1), ConvSpec(64, 0)),
        name="cpu-small",
    )


def _digits(classes: int) -> ModelConfig:
    # 1x8x8 scikit-learn digits: conv 8x8 -> pool 4x4 -> unpadded conv 2x2 -> pool 1x1 ->
    # readout. The unpadded second conv (as the paper's last conv) leaves one pooling window
    # per channel, which makes trained models far less multistable (docs/physics.md).
    return ModelConfig(
        in_shape=(1, 8, 8),
        convs=(ConvSpec(32, 1), ConvSpec(32, 0)),
        classes=classes,
        input_mean=(0.3,),
        input_std=(0.3,),
        name="digits",
    )


_NAMED = {"paper": _paper, "cpu-small": _cpu_small, "digits": _digits}
CONFIG_NAMES = tuple(_NAMED)


def named_config(name: str, classes: int = 10, **overrides: Any) -> ModelConfig:
    """The named architecture ``paper``, ``cpu-small`` or ``digits``, optionally with fields overridden."""
    try:
        make = _NAMED[name]
    except KeyError:
        raise ConfigError(f"unknown model config {name!r}; valid: {', '.join(CONFIG_NAMES)}") from None
    cfg = make(classes)
    return cfg.with_(**overrides) if overrides else cfg
