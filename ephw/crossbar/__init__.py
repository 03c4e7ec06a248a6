"""Simulated analog crossbar arrays: weights programmed as conductance pairs, read with non-idealities.

``CrossbarArray.program(W, params)`` programs a weight matrix onto tiles;
``read(x)`` ≈ ``x @ W.T`` and ``read_transposed(v)`` ≈ ``v @ W`` go through the same
programmed chip. ``CrossbarParams`` holds one dataclass per non-ideality, every one
off by default; ``load_params`` builds parameters from a preset (``ideal``, ``pcm``,
``rram-wan2022``, ``rram-illustrative``), a TOML/JSON file and ``key=value`` overrides.
:func:`ephw.crossbar.deploy.deploy` puts any feed-forward model on a chip. See ``docs/crossbar.md``.
"""

from ephw.crossbar.array import CrossbarArray
from ephw.crossbar.converters import convert, quantize
from ephw.crossbar.params import (
    ConductanceRange,
    Converter,
    CrossbarParams,
    Drift,
    IRDrop,
    Mapping,
    ProgrammingNoise,
    ReadNoise,
    StuckFaults,
    Variability,
)
from ephw.crossbar.presets import PRESETS, get_preset, load_params

__all__ = [
    "PRESETS",
    "ConductanceRange",
    "Converter",
    "CrossbarArray",
    "CrossbarParams",
    "Drift",
    "IRDrop",
    "Mapping",
    "ProgrammingNoise",
    "ReadNoise",
    "StuckFaults",
    "Variability",
    "convert",
    "get_preset",
    "load_params",
    "quantize",
]
