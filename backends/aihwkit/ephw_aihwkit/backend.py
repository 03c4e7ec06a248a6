"""The ``aihwkit`` backend: Euler dynamics with every synaptic read on aihwkit analog tiles."""

from __future__ import annotations

from aihwkit.simulator.configs import TorchInferenceRPUConfig

from ephw.backends import Euler
from ephw.backends.chip import ProgrammedChip
from ephw.errors import BackendError
from ephw.model import EnergyModel
from ephw_aihwkit.config import AIHWKitOptions, rpu_config_for
from ephw_aihwkit.synapses import AIHWKitSynapses

#: ``reads`` option values: every read on the tiles, or linear read-outs of them (perfect IO).
READS = ("tile", "linear")


class AIHWKit(Euler):
    """Euler dynamics; every forward and transposed synaptic read on IBM aihwkit inference tiles.

    Args:
        preset: ``ideal`` (noise model off) or ``pcm`` (aihwkit ``PCMLikeNoiseModel``, drift,
            ``GlobalDriftCompensation``), as ephw's crossbar presets of those names.
        t: read time since programming, s (default: the preset's; ``pcm`` 3600 s = 1 h).
        chip_seed: seed of the programming and drift draws; each seed is another chip.
        io: ``perfect`` (ideal converters, default) or ``aihwkit`` (aihwkit's default ``IOParameters``:
            7-bit DAC/ADC and 0.06 output noise per read, in both directions).
        tile_size: inputs and outputs per tile (default 256, as ephw's crossbar).
        reads: ``tile`` (default): every read is a tile read; ``linear`` (perfect IO only): the
            tiles are read once per programming with one-hot inputs, both ways, and the settle
            convolves with those read-outs -- the same numbers to float rounding, about the cost
            of ephw's crossbar (im2col tile reads cost ~10x on CIFAR-sized maps).
        dt: Euler step size.
        reprogram_every: during EP training, write the updated weights onto the tiles only every
            this many weight updates (fresh programming draws, the same chip seed).
        rpu_config: a ready ``TorchInferenceRPUConfig`` used instead of the preset's (``t``,
            ``chip_seed`` still apply; API only).

    The tiles are programmed once per model and reused across settle calls, as the crossbar
    backend's chip. Nudged phases are supported (the output nudging is digital), so EP training
    runs with the tiles in the loop.
    """

    name = "aihwkit"
    description = "Euler dynamics; every forward and transposed read on IBM aihwkit analog inference tiles"
    nudging = True

    def __init__(
        self,
        preset: str = "ideal",
        t: float | None = None,
        chip_seed: int = 0,
        io: str = "perfect",
        tile_size: int = 256,
        reads: str = "tile",
        dt: float = 1.0,
        reprogram_every: int = 1,
        rpu_config: TorchInferenceRPUConfig | None = None,
    ) -> None:
        super().__init__(dt)
        self.chip = ProgrammedChip(self._program, reprogram_every, "aihwkit")
        self.options = AIHWKitOptions(preset=preset, t=t, chip_seed=int(chip_seed), io=io, tile_size=int(tile_size))
        if rpu_config is not None and not isinstance(rpu_config, TorchInferenceRPUConfig):
            raise BackendError(
                "aihwkit: rpu_config must be a TorchInferenceRPUConfig (the pure-torch tile; the C++ tile of the "
                "aihwkit 1.1.0 wheel does not work with this torch)"
            )
        if reads not in READS:
            raise BackendError(f"aihwkit: reads must be one of {', '.join(READS)}, got {reads!r}")
        self.reads = reads
        self.rpu_config = rpu_config
        self.reprogram_every = self.chip.reprogram_every
        if self.options.noisy_reads:
            self.plateau_window = 20  # reads are stochastic: also stop a sample once its residual is stationary

    def _program(self, net: EnergyModel) -> AIHWKitSynapses:
        dtype = next(net.parameters()).dtype
        cfg = self.rpu_config if self.rpu_config is not None else rpu_config_for(self.options, dtype)
        return AIHWKitSynapses(net, self.options, cfg, self.reads)

    def synapses(self, net: EnergyModel) -> AIHWKitSynapses:
        """The model's tiles: programmed on first use, re-programmed after weight updates (ProgrammedChip)."""
        return self.chip.synapses(net)
