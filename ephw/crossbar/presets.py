"""Named crossbar parameter sets and loading parameters from presets, files and overrides.

``ideal``
    Every non-ideality off: reads reproduce ``x @ Wᵀ`` / ``v @ W`` up to float rounding.
``rram-illustrative`` (deprecated alias ``rram``)
    An illustrative HfO₂ 1T1R RRAM chip. The conductance window (50–225 µS, on/off 4.5) and the
    programming error ``σ ≈ 3.5 µS`` come from V. Milo et al., "Optimized programming
    algorithms for multilevel RRAM in hardware neural networks", IRPS 2021, as used by
    Sandia CrossSim's ``RRAM_Milo`` device (a linear fit ``σ = 4.78 − 0.0091·G`` µS, i.e.
    4.3 µS at 50 µS to 2.7 µS at 225 µS; 3.5 µS is its value mid-window). The levels
    (4 bits), read noise (0.5 % of G), stuck-fault rates (0.1 % each), variability (2 %)
    and converters (8-bit DAC and ADC with a dynamic range per tile vector) are
    **illustrative** values of the usual order of magnitude, not fitted to a device.
``rram-wan2022``
    The calibrated RRAM model of aihwkit 1.1.0's ``ReRamWan2022NoiseModel``, fitted to the
    NeuRRAM chip of W. Wan et al., Nature 608, 504 (2022) (:mod:`ephw.crossbar.rram`):
    ``g_min = 0``, ``g_max = 40 µS`` (the fit's reference), programming noise of the 1 s
    polynomial, persistent relaxation to the 1-day / 2-day polynomials (``drift.model =
    rram_wan2022``, read at ``t = 1 day``, aihwkit's global drift compensation), and the
    ~1 % short-term read noise aihwkit recommends with it (``w_noise = 0.01`` of the weight
    range, additive, per read: ``0.01·40 µS/sqrt(2) = 0.283 µS`` per device of a pair);
    converters ideal, as the noise model alone.
``pcm``
    IBM aihwkit's ``PCMLikeNoiseModel`` (Nandakumar et al., ICECS 2019): ``g_max = 25 µS``,
    the programming-noise polynomial, drift with per-device ν (``t0 = 20 s``, read at
    ``t = 1 h`` after programming) and 1/f read noise drawn once per inference time
    (``read_noise.time_structure = frozen``, as aihwkit's ``drift_analog_weights(t)``), with
    aihwkit's default global drift compensation; converters ideal, as the noise model alone.
"""

from __future__ import annotations

import json
import math
import tomllib
import warnings
from pathlib import Path

from ephw.crossbar import rram
from ephw.crossbar.params import (
    ConductanceRange,
    Converter,
    CrossbarParams,
    Drift,
    ProgrammingNoise,
    ReadNoise,
    StuckFaults,
    Variability,
)
from ephw.errors import ConfigError

_CONVERTER_8BIT = Converter(bits=8, bound=None, signed=True)

PRESETS: dict[str, CrossbarParams] = {
    "ideal": CrossbarParams(),
    "rram-illustrative": CrossbarParams(
        conductance=ConductanceRange(g_min=50.0, g_max=225.0, levels_bits=4),
        programming_noise=ProgrammingNoise(kind="gaussian", rel=0.0, abs_uS=3.5),
        read_noise=ReadNoise(proportional=0.005),
        stuck_faults=StuckFaults(p_gmin=0.001, p_gmax=0.001),
        variability=Variability(g_max_rel_std=0.02),
        dac_forward=_CONVERTER_8BIT,
        adc_forward=_CONVERTER_8BIT,
        dac_transposed=_CONVERTER_8BIT,
        adc_transposed=_CONVERTER_8BIT,
    ),
    "pcm": CrossbarParams(
        conductance=ConductanceRange(g_min=0.0, g_max=25.0),
        programming_noise=ProgrammingNoise(kind="pcm"),
        drift=Drift(enabled=True, t_seconds=3600.0, t0_seconds=20.0, compensation=True),
        read_noise=ReadNoise(pcm_1f=True, time_structure="frozen"),
    ),
    "rram-wan2022": CrossbarParams(
        conductance=ConductanceRange(g_min=0.0, g_max=rram.G_MAX_REF_uS),
        programming_noise=ProgrammingNoise(kind="rram_wan2022"),
        drift=Drift(enabled=True, t_seconds=86_400.0, compensation=True, model="rram_wan2022"),
        read_noise=ReadNoise(
            additive_uS=round(rram.READ_NOISE_WEIGHT_FRACTION * rram.G_MAX_REF_uS / math.sqrt(2), 3),
            time_structure="per_read",
        ),
    ),
}

#: Old preset names still accepted, with a deprecation warning: ``{old: new}``.
DEPRECATED_ALIASES: dict[str, str] = {"rram": "rram-illustrative"}


def get_preset(name: str) -> CrossbarParams:
    """The named preset; unknown names raise :class:`ConfigError` listing the valid ones.

    A deprecated alias (:data:`DEPRECATED_ALIASES`, e.g. ``rram``) returns its preset with a
    :class:`DeprecationWarning` naming the new name.
    """
    if name in DEPRECATED_ALIASES:
        new = DEPRECATED_ALIASES[name]
        warnings.warn(
            f"crossbar preset {name!r} is renamed {new!r} (illustrative values); see also rram-wan2022",
            DeprecationWarning,
            stacklevel=2,
        )
        name = new
    try:
        return PRESETS[name]
    except KeyError:
        valid, old = ", ".join(PRESETS), ", ".join(DEPRECATED_ALIASES)
        raise ConfigError(f"unknown crossbar preset {name!r}; valid: {valid} (deprecated: {old})") from None


def read_params_file(file: str | Path) -> dict:
    """The nested dict of a TOML (``.toml``) or JSON (any other suffix) parameter file."""
    path = Path(file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read crossbar parameter file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"crossbar parameter file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"crossbar parameter file {path} must hold a table/object of parameters")
    return data


def parse_override(item: str) -> tuple[str, str]:
    """``"read_noise.proportional=0.02"`` -> ``("read_noise.proportional", "0.02")``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"crossbar override must be key=value (e.g. read_noise.proportional=0.02), got {item!r}")
    return key.strip(), value.strip()


def load_params(
    preset: str = "ideal", file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> CrossbarParams:
    """Parameters: the named preset, then a TOML/JSON file of nested tables, then ``key=value`` overrides.

    Keys are dotted field paths (``read_noise.proportional=0.02``, ``chip_seed=3``);
    values are parsed to the field's type (``none`` for unset optional fields).
    """
    params = get_preset(preset)
    if file is not None:
        params = CrossbarParams.from_dict(read_params_file(file), base=params)
    if overrides:
        params = params.replace(**dict(parse_override(item) for item in overrides))
    return params
