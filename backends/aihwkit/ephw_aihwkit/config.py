"""Options of the ``aihwkit`` backend and the aihwkit ``RPUConfig`` they stand for.

The presets mirror ephw's crossbar presets where the physics is the same
(``ephw.crossbar.presets``):

``ideal``
    aihwkit's ``PCMLikeNoiseModel`` with every scale at 0 (no programming noise, no drift,
    no 1/f read noise) and no drift compensation: reads reproduce ``x @ Wᵀ`` / ``v @ W`` up
    to float rounding.
``pcm``
    aihwkit's ``PCMLikeNoiseModel`` (Nandakumar et al., ICECS 2019; ``g_max = 25 µS``,
    single-pair converter ``g_min = 0``, ``t0 = 20 s``, ``t_read = 250 ns``) with
    ``GlobalDriftCompensation``, read at ``t = 1 h`` after programming by default — the
    statistics of ephw's ``pcm`` crossbar preset.

Converters: ``io="perfect"`` (default) makes both directions' periphery ideal, as in ephw's
``ideal``/``pcm`` presets ("the noise model alone"); ``io="aihwkit"`` keeps aihwkit's default
``IOParameters`` (7-bit DAC/ADC, output noise 0.06 per read, noise and bound management) for
the forward read and uses the same for the transposed read.

Units: conductances µS, times s (``t`` counts from the end of programming, as ephw's
``drift.t_seconds``; aihwkit's ``t_inference`` is ``t − t0``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.enums import RPUDataType

from ephw.errors import BackendError


@dataclass(frozen=True)
class Preset:
    """One named chip configuration.

    Attributes:
        noise: whether the PCM noise model is on (programming noise, drift, 1/f read noise).
        compensation: whether aihwkit's ``GlobalDriftCompensation`` is on.
        t_seconds: default read time since programming, s.
    """

    noise: bool
    compensation: bool
    t_seconds: float


PRESETS: dict[str, Preset] = {
    "ideal": Preset(noise=False, compensation=False, t_seconds=20.0),
    "pcm": Preset(noise=True, compensation=True, t_seconds=3600.0),
}
IO_MODES = ("perfect", "aihwkit")
#: aihwkit ``PCMLikeNoiseModel.t_0``: the first read after programming, s.
T0_SECONDS = 20.0


@dataclass(frozen=True)
class AIHWKitOptions:
    """What the ``aihwkit`` backend builds its tiles from (``--set aihwkit.KEY=VALUE``).

    Attributes:
        preset: ``ideal`` or ``pcm`` (:data:`PRESETS`).
        t: read time since programming, s (``None``: the preset's, 1 h for ``pcm``); aihwkit's
            ``drift_analog_weights(t_inference = t − t0)``, floored at 0.
        chip_seed: seed of the programming and drift draws (one chip per seed, as ephw's ``chip_seed``).
        io: ``perfect`` (ideal converters) or ``aihwkit`` (aihwkit's default ``IOParameters``).
        tile_size: inputs and outputs per tile (aihwkit ``mapping.max_input_size`` /
            ``max_output_size``); 256 as ephw's ``mapping.tile_rows`` / ``tile_cols``.
    """

    preset: str = "ideal"
    t: float | None = None
    chip_seed: int = 0
    io: str = "perfect"
    tile_size: int = 256

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise BackendError(f"aihwkit: unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        if self.t is not None and not self.t > 0:
            raise BackendError(f"aihwkit: t must be > 0 s since programming, got {self.t}")
        if self.io not in IO_MODES:
            raise BackendError(f"aihwkit: io must be one of {', '.join(IO_MODES)}, got {self.io!r}")
        if self.tile_size < 1:
            raise BackendError(f"aihwkit: tile_size must be >= 1, got {self.tile_size}")

    @property
    def t_seconds(self) -> float:
        """The read time since programming, s."""
        return PRESETS[self.preset].t_seconds if self.t is None else float(self.t)

    @property
    def t_inference(self) -> float:
        """aihwkit's ``t_inference`` (s after the first read at ``t0``)."""
        return max(self.t_seconds - T0_SECONDS, 0.0)

    @property
    def noisy_reads(self) -> bool:
        """Whether a read differs from the next one (aihwkit's per-read output noise)."""
        return self.io == "aihwkit"


def rpu_config_for(options: AIHWKitOptions, dtype: torch.dtype = torch.float32) -> TorchInferenceRPUConfig:
    """The aihwkit ``TorchInferenceRPUConfig`` (pure-torch inference tile) of ``options``.

    ``dtype`` float64 selects aihwkit's double-precision tile data type; anything else float32.
    """
    preset = PRESETS[options.preset]
    cfg = TorchInferenceRPUConfig()
    if preset.noise:
        cfg.noise_model = PCMLikeNoiseModel(g_max=25.0, t_0=T0_SECONDS)
    else:
        cfg.noise_model = PCMLikeNoiseModel(
            g_max=25.0, t_0=T0_SECONDS, prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0
        )
    cfg.drift_compensation = GlobalDriftCompensation() if preset.compensation else None
    if options.io == "perfect":
        cfg.forward.is_perfect = True
        cfg.backward.is_perfect = True
    else:
        cfg.backward = copy.deepcopy(cfg.forward)
    cfg.mapping.max_input_size = options.tile_size
    cfg.mapping.max_output_size = options.tile_size
    if dtype == torch.float64:
        cfg.runtime.data_type = RPUDataType.DOUBLE
    return cfg
