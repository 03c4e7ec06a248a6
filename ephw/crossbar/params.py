"""Parameters of a simulated crossbar: one frozen dataclass per non-ideality.

Every non-ideality can be switched on its own and is an exact no-op when off (the
defaults are all off: ``CrossbarParams()`` is an ideal crossbar). Conductances are
in µS, times in seconds, resistances in Ω. :class:`CrossbarParams` aggregates the
groups, converts to and from nested dicts (TOML/JSON) and takes dotted overrides
such as ``params.replace(**{"read_noise.proportional": 0.02})``; every bad value
raises :class:`~ephw.errors.ConfigError` with a one-line message.

The numbers of the PCM model (used when a group selects it) live in
:mod:`ephw.crossbar.pcm`; see ``docs/crossbar.md`` for every formula.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from ephw.errors import ConfigError

ProgrammingKind = Literal["none", "gaussian", "pcm", "rram_wan2022"]
DriftModel = Literal["pcm", "rram_wan2022"]
ReadNoiseTime = Literal["per_read", "frozen", "correlated"]
Calibration = Literal["none", "tile", "column"]
ScaleMode = Literal["tile", "column"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _finite(value: float) -> bool:
    return math.isfinite(value)


@dataclass(frozen=True)
class ConductanceRange:
    """The programmable conductance window of one device.

    Attributes:
        g_min: lowest conductance, µS (default 0 µS, aihwkit's single-pair converter).
        g_max: highest conductance, µS (default 25 µS, aihwkit's PCM ``g_max``).
        levels_bits: ``None`` for analog devices, else every programmed target is
            rounded to one of exactly ``2**levels_bits`` evenly spaced levels in
            ``[g_min, g_max]`` (default ``None``).
    """

    g_min: float = 0.0
    g_max: float = 25.0
    levels_bits: int | None = None

    def __post_init__(self) -> None:
        _check(_finite(self.g_min) and self.g_min >= 0, f"conductance.g_min must be >= 0 µS, got {self.g_min}")
        _check(
            _finite(self.g_max) and self.g_max > self.g_min,
            f"conductance.g_max must be > g_min ({self.g_min} µS), got {self.g_max}",
        )
        _check(
            self.levels_bits is None or 1 <= self.levels_bits <= 24,
            f"conductance.levels_bits must be none or 1..24, got {self.levels_bits}",
        )

    @property
    def span(self) -> float:
        """``g_max - g_min`` in µS: the conductance the largest weight of a tile is mapped to."""
        return self.g_max - self.g_min


@dataclass(frozen=True)
class ProgrammingNoise:
    """Persistent per-device error of the programmed conductance (drawn once per programming).

    Attributes:
        kind: ``"gaussian"`` (default): ``G = G_target + σ·N(0,1)`` with
            ``σ = rel·|G_target| + abs_uS`` (off while both are 0); ``"pcm"``: the
            Nandakumar et al. (2019) polynomial of IBM aihwkit's ``PCMLikeNoiseModel``
            (:func:`ephw.crossbar.pcm.programming_sigma`); ``"rram_wan2022"``: the 4th-order
            polynomial of aihwkit's ``ReRamWan2022NoiseModel`` at 1 s after programming
            (:func:`ephw.crossbar.rram.programming_sigma`, Wan et al., Nature 2022); ``"none"``: off whatever
            ``rel``/``abs_uS`` say. Conductances are clipped at 0 µS after the draw.
        rel: relative part of σ for ``"gaussian"`` (dimensionless, default 0).
        abs_uS: absolute part of σ for ``"gaussian"``, µS (default 0 µS).
    """

    kind: ProgrammingKind = "gaussian"
    rel: float = 0.0
    abs_uS: float = 0.0

    def __post_init__(self) -> None:
        _check(
            self.kind in typing.get_args(ProgrammingKind),
            f"programming_noise.kind must be one of {', '.join(typing.get_args(ProgrammingKind))}, got {self.kind!r}",
        )
        _check(_finite(self.rel) and self.rel >= 0, f"programming_noise.rel must be >= 0, got {self.rel}")
        _check(_finite(self.abs_uS) and self.abs_uS >= 0, f"programming_noise.abs_uS must be >= 0, got {self.abs_uS}")

    @property
    def enabled(self) -> bool:
        if self.kind == "gaussian":
            return self.rel > 0 or self.abs_uS > 0
        return self.kind != "none"


@dataclass(frozen=True)
class Drift:
    """Conductance change with the time since programming (PCM drift or RRAM relaxation).

    ``model = "pcm"`` (default): ``G(t) = G_prog·(t/t0)^(−ν)`` for ``t > t0`` (no change
    before ``t0``). ``model = "rram_wan2022"``: no power-law drift; instead a persistent
    per-device relaxation ``G(t) = G_prog + σ_relax(G_target, t)·ξ`` whose total deviation
    from the target follows aihwkit's ``ReRamWan2022NoiseModel`` polynomials at 1 s, 1 day
    and 2 days (:func:`ephw.crossbar.rram.relaxation_sigma`; ``t0`` is unused).

    The exponent ν is drawn per device at programming time from the aihwkit PCM
    statistics (:func:`ephw.crossbar.pcm.drift_nu_mean_std`) and stored, so the same
    chip can be read at any ``t``. ``t`` is the time since programming; aihwkit's
    ``t_inference`` equals ``t − t0``.

    With ``compensation`` each tile's digital output is multiplied by
    ``α = Σ|G⁺ − G⁻|(t0) / Σ|G⁺ − G⁻|(t)`` over the tile: the global drift compensation
    of aihwkit (``GlobalDriftCompensation``, the default of its ``InferenceRPUConfig``),
    which reads one-hot inputs after programming and at ``t``; here that calibration
    read is noise-free.

    Attributes:
        enabled: draw ν (or the relaxation draw) and apply drift (default ``False``).
        t_seconds: time of the read since programming, s (default 20 s = ``t0``: no drift yet).
        t0_seconds: reference time of the drift fit, s (default 20 s, aihwkit ``t_0``).
        compensation: apply the global drift compensation per tile (default ``False``).
        model: ``"pcm"`` (default) or ``"rram_wan2022"``.
    """

    enabled: bool = False
    t_seconds: float = 20.0
    t0_seconds: float = 20.0
    compensation: bool = False
    model: DriftModel = "pcm"

    def __post_init__(self) -> None:
        _check(_finite(self.t_seconds) and self.t_seconds > 0, f"drift.t_seconds must be > 0 s, got {self.t_seconds}")
        _check(
            _finite(self.t0_seconds) and self.t0_seconds > 0, f"drift.t0_seconds must be > 0 s, got {self.t0_seconds}"
        )
        _check(
            self.model in typing.get_args(DriftModel),
            f"drift.model must be one of {', '.join(typing.get_args(DriftModel))}, got {self.model!r}",
        )


@dataclass(frozen=True)
class ReadNoise:
    """Conductance noise of a read, independent across devices, with a time structure across reads.

    Per device the variance is the sum of the enabled independent parts
    ``additive_uS² + (proportional·G)² + (σ_1/f·G)²`` with ``G`` the (drifted)
    conductance and ``σ_1/f = Q_s(G_prog)·sqrt(ln((t + t_read)/(2 t_read)))`` the PCM
    1/f noise of aihwkit (:func:`ephw.crossbar.pcm.one_over_f_sigma`), ``t`` = ``drift.t_seconds``.

    ``time_structure`` says how the noise of one device is correlated from read to read:

    - ``"per_read"`` (default): white, a fresh draw on every read (drawn output-referred);
    - ``"frozen"``: one draw per device per inference time ``t`` (aihwkit's convention): every
      read at the same ``t`` sees the same noisy conductances, a read at another ``t`` another draw;
    - ``"correlated"``: a stationary Gauss-Markov (discrete Ornstein-Uhlenbeck, AR(1)) process per
      device, advanced by one on every read: ``z_k = ρ z_{k−1} + sqrt(1 − ρ²) ξ_k`` with
      ``ρ = exp(−1/tau_reads)``, noise ``σ·z_k``.

    Attributes:
        additive_uS: conductance-independent σ, µS (default 0 µS).
        proportional: σ relative to ``G`` (dimensionless, default 0).
        pcm_1f: add the PCM 1/f read noise (default ``False``).
        t_read_s: read duration of the 1/f fit, s (default 250 ns, aihwkit ``t_read``).
        time_structure: ``"per_read"``, ``"frozen"`` or ``"correlated"`` (default ``"per_read"``).
        tau_reads: correlation time of ``"correlated"``, in reads (> 0; default 10 reads, ρ = 0.905).
    """

    additive_uS: float = 0.0
    proportional: float = 0.0
    pcm_1f: bool = False
    t_read_s: float = 250e-9
    time_structure: ReadNoiseTime = "per_read"
    tau_reads: float = 10.0

    def __post_init__(self) -> None:
        _check(
            _finite(self.additive_uS) and self.additive_uS >= 0,
            f"read_noise.additive_uS must be >= 0 µS, got {self.additive_uS}",
        )
        _check(
            _finite(self.proportional) and self.proportional >= 0,
            f"read_noise.proportional must be >= 0, got {self.proportional}",
        )
        _check(_finite(self.t_read_s) and self.t_read_s > 0, f"read_noise.t_read_s must be > 0 s, got {self.t_read_s}")
        _check(
            self.time_structure in typing.get_args(ReadNoiseTime),
            f"read_noise.time_structure must be one of {', '.join(typing.get_args(ReadNoiseTime))}, "
            f"got {self.time_structure!r}",
        )
        _check(
            _finite(self.tau_reads) and self.tau_reads > 0,
            f"read_noise.tau_reads must be > 0 reads, got {self.tau_reads}",
        )

    @property
    def enabled(self) -> bool:
        return self.additive_uS > 0 or self.proportional > 0 or self.pcm_1f

    @property
    def rho(self) -> float:
        """Lag-1 correlation of one device's noise between consecutive reads (1 frozen, 0 per read)."""
        if self.time_structure == "frozen":
            return 1.0
        if self.time_structure == "per_read":
            return 0.0
        return math.exp(-1.0 / self.tau_reads)


@dataclass(frozen=True)
class StuckFaults:
    """Devices stuck at ``g_min`` or ``g_max`` whatever is programmed (per device, persistent).

    Attributes:
        p_gmin: probability that a device is stuck at ``g_min`` (default 0).
        p_gmax: probability that a device is stuck at ``g_max`` (default 0).
    """

    p_gmin: float = 0.0
    p_gmax: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p_gmin", "p_gmax"):
            p = getattr(self, name)
            _check(_finite(p) and 0 <= p <= 1, f"stuck_faults.{name} must be in [0, 1], got {p}")
        _check(self.p_gmin + self.p_gmax <= 1, "stuck_faults.p_gmin + p_gmax must be <= 1")

    @property
    def enabled(self) -> bool:
        return self.p_gmin > 0 or self.p_gmax > 0


@dataclass(frozen=True)
class Variability:
    """Device-to-device variability of the conductance window (persistent).

    Each device's ``g_max`` is ``g_max·(1 + N(0, g_max_rel_std))``, clipped at ``g_min``;
    its levels (and its analog target) are scaled into its own ``[g_min, g_max_dev]``,
    i.e. ``G = g_min + (G_target − g_min)·(g_max_dev − g_min)/(g_max − g_min)``.

    Attributes:
        g_max_rel_std: relative standard deviation of ``g_max`` (dimensionless, default 0).
    """

    g_max_rel_std: float = 0.0

    def __post_init__(self) -> None:
        _check(
            _finite(self.g_max_rel_std) and self.g_max_rel_std >= 0,
            f"variability.g_max_rel_std must be >= 0, got {self.g_max_rel_std}",
        )

    @property
    def enabled(self) -> bool:
        return self.g_max_rel_std > 0


@dataclass(frozen=True)
class Converter:
    """A uniform quantiser with saturation: a DAC on the inputs or an ADC on a tile's outputs.

    ``bits=None, bound=None`` is ideal (identity). ``bound`` alone only saturates
    (clips to ``±bound``, ``[0, bound]`` if unsigned). With ``bits`` the values are
    rounded to the grid ``k·bound/n`` with ``n = 2**(bits−1) − 1`` signed
    (``2**bits − 1`` levels, 0 included) or ``n = 2**bits − 1`` unsigned (``2**bits`` levels
    in ``[0, bound]``); with ``bits`` and ``bound=None`` the range is set per vector by its
    largest magnitude (a dynamic range, aihwkit's "noise management" by the absolute max).

    Units: DAC values are in the units of the input (states); ADC values are in units
    of the current of one fully-on device (``g_max − g_min``) driven by a full-scale
    input, i.e. normalised weight × normalised input summed over a tile's lines.

    Attributes:
        bits: resolution in bits, or ``None`` for no quantisation (default ``None``).
        bound: saturation level (> 0) or ``None`` (default ``None``).
        signed: symmetric grid on ``[−bound, bound]`` (default ``True``) or ``[0, bound]``
            (negative values clip to 0).
        noise: ADCs only: σ of a Gaussian noise added to the ADC input on every conversion
            (sense-amplifier / integrator noise), in ADC units (default 0: none).
        calibration: ADCs only: ``"none"`` (default), or set the range from calibration inputs
            (:meth:`ephw.crossbar.CrossbarArray.calibrate`) per ``"tile"`` or per ``"column"``
            (per output line of a tile) instead of ``bound``; ``bound`` must then be unset.
        calibration_quantile: the range is this quantile of ``|ADC input|`` over the calibration
            inputs (default 1.0: the largest value; < 1 clips the rare outliers and gains resolution).
    """

    bits: int | None = None
    bound: float | None = None
    signed: bool = True
    noise: float = 0.0
    calibration: Calibration = "none"
    calibration_quantile: float = 1.0

    def __post_init__(self) -> None:
        lo = 2 if self.signed else 1
        _check(
            self.bits is None or lo <= self.bits <= 24,
            f"converter bits must be none or {lo}..24{' (signed)' if self.signed else ''}, got {self.bits}",
        )
        _check(
            self.bound is None or (_finite(self.bound) and self.bound > 0),
            f"converter bound must be none or > 0, got {self.bound}",
        )
        _check(_finite(self.noise) and self.noise >= 0, f"converter noise must be >= 0 (ADC units), got {self.noise}")
        _check(
            self.calibration in typing.get_args(Calibration),
            f"converter calibration must be one of {', '.join(typing.get_args(Calibration))}, got {self.calibration!r}",
        )
        _check(
            self.calibration == "none" or self.bound is None,
            "converter bound must be none with calibration (the calibrated range replaces it)",
        )
        _check(
            _finite(self.calibration_quantile) and 0 < self.calibration_quantile <= 1,
            f"converter calibration_quantile must be in (0, 1], got {self.calibration_quantile}",
        )

    @property
    def ideal(self) -> bool:
        return self.bits is None and self.bound is None and self.noise == 0 and self.calibration == "none"

    @property
    def calibrated(self) -> bool:
        """Whether the range comes from :meth:`~ephw.crossbar.CrossbarArray.calibrate`."""
        return self.calibration != "none"

    @property
    def n_steps(self) -> int | None:
        """Number of grid steps between 0 and the full-scale value (``None`` when not quantising)."""
        if self.bits is None:
            return None
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1


@dataclass(frozen=True)
class IRDrop:
    """First-order IR drop on the word lines and bit lines (see :mod:`ephw.crossbar.irdrop`).

    Attributes:
        enabled: apply IR drop (default ``False``).
        wire_resistance_ohm: resistance of one wire segment between adjacent cells, Ω (default 1 Ω).
    """

    enabled: bool = False
    wire_resistance_ohm: float = 1.0

    def __post_init__(self) -> None:
        _check(
            _finite(self.wire_resistance_ohm) and self.wire_resistance_ohm >= 0,
            f"ir_drop.wire_resistance_ohm must be >= 0 Ω, got {self.wire_resistance_ohm}",
        )


@dataclass(frozen=True)
class Mapping:
    """How a weight matrix is cut into tiles and mapped to differential conductance pairs.

    A tile holds ``tile_rows`` inputs (word lines) × ``tile_cols`` outputs (bit-line
    pairs); ``w = (G⁺ − G⁻)/s`` with ``G± = g_min + s·max(±w, 0)`` and
    ``s = (g_max − g_min)/max|w|`` over the tile (``"tile"``) or over each output column
    of the tile (``"column"``).

    Attributes:
        tile_rows: inputs per tile (default 256).
        tile_cols: outputs per tile (default 256).
        scale: ``"tile"`` (default) or ``"column"``.
    """

    tile_rows: int = 256
    tile_cols: int = 256
    scale: ScaleMode = "tile"

    def __post_init__(self) -> None:
        _check(self.tile_rows >= 1, f"mapping.tile_rows must be >= 1, got {self.tile_rows}")
        _check(self.tile_cols >= 1, f"mapping.tile_cols must be >= 1, got {self.tile_cols}")
        _check(
            self.scale in typing.get_args(ScaleMode),
            f"mapping.scale must be one of {', '.join(typing.get_args(ScaleMode))}, got {self.scale!r}",
        )


@dataclass(frozen=True)
class CrossbarParams:
    """All parameters of a simulated crossbar; the defaults are an ideal crossbar.

    Attributes:
        conductance, programming_noise, drift, read_noise, stuck_faults, variability,
        ir_drop, mapping: the groups above.
        dac_forward, adc_forward: converters of the forward read ``x @ Wᵀ`` (inputs are
            the states, in ``[0, 1]`` for hidden layers but normalised images for the first).
        dac_transposed, adc_transposed: converters of the transposed read ``v @ W``.
        chip_seed: seed of the programming draw (noise, faults, variability, drift exponents).
        read_seed: seed of the read-noise stream.
    """

    conductance: ConductanceRange = field(default_factory=ConductanceRange)
    programming_noise: ProgrammingNoise = field(default_factory=ProgrammingNoise)
    drift: Drift = field(default_factory=Drift)
    read_noise: ReadNoise = field(default_factory=ReadNoise)
    stuck_faults: StuckFaults = field(default_factory=StuckFaults)
    variability: Variability = field(default_factory=Variability)
    dac_forward: Converter = field(default_factory=Converter)
    adc_forward: Converter = field(default_factory=Converter)
    dac_transposed: Converter = field(default_factory=Converter)
    adc_transposed: Converter = field(default_factory=Converter)
    ir_drop: IRDrop = field(default_factory=IRDrop)
    mapping: Mapping = field(default_factory=Mapping)
    chip_seed: int = 0
    read_seed: int = 1

    def __post_init__(self) -> None:
        for name, cls in _group_types().items():
            _check(isinstance(getattr(self, name), cls), f"{name} must be a {cls.__name__}")
        for name in ("dac_forward", "dac_transposed"):
            conv = getattr(self, name)
            _check(
                conv.noise == 0 and conv.calibration == "none",
                f"{name}: noise and calibration are ADC options (the DAC range is the input's)",
            )
        for name in ("chip_seed", "read_seed"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63,
                f"{name} must be an integer in [0, 2**63), got {value!r}",
            )

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (groups as sub-dicts, ``None`` where unset); JSON-serialisable."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: MappingABC[str, Any], base: CrossbarParams | None = None) -> CrossbarParams:
        """Parameters from a nested dict (as :meth:`to_dict` or a TOML/JSON file), on top of ``base``.

        Missing keys keep ``base``'s values (defaults when ``base`` is ``None``).
        """
        return (base or cls()).replace(**_flatten(d))

    def replace(self, **overrides: Any) -> CrossbarParams:
        """A copy with fields replaced; keys are dotted (``"read_noise.proportional"``) or top-level.

        Values may be strings (``"0.02"``, ``"true"``, ``"none"``), parsed to the field's
        type; a group may also be given whole, as an instance or a dict of its fields.
        """
        groups = _group_types()
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            head, _, rest = key.partition(".")
            if head not in _top_fields():
                raise ConfigError(f"unknown crossbar parameter {key!r}; valid: {', '.join(_all_keys())}")
            if head in groups:
                if rest:
                    nested.setdefault(head, {})[rest] = value
                elif isinstance(value, groups[head]):
                    top[head] = value
                elif isinstance(value, MappingABC):
                    for sub, subvalue in _flatten(value).items():
                        nested.setdefault(head, {})[sub] = subvalue
                else:
                    fields = ", ".join(f"{head}.{f.name}" for f in dataclasses.fields(groups[head]))
                    raise ConfigError(f"{head!r} is a group; set one of its fields: {fields}")
            elif rest:
                raise ConfigError(f"unknown crossbar parameter {key!r}; valid: {', '.join(_all_keys())}")
            else:
                top[head] = _coerce(value, _hints(CrossbarParams)[head], key)
        for head, changes in nested.items():
            group = top.get(head, getattr(self, head))
            top[head] = _replace_group(group, head, changes)
        return dataclasses.replace(self, **top)

    def describe(self) -> str:
        """The enabled non-idealities in one line (``"ideal"`` when none)."""
        parts = []
        if self.conductance.levels_bits is not None:
            parts.append(f"{self.conductance.levels_bits}-bit levels")
        if self.programming_noise.enabled:
            parts.append(f"{self.programming_noise.kind} programming noise")
        if self.variability.enabled:
            parts.append("variability")
        if self.stuck_faults.enabled:
            parts.append("stuck faults")
        if self.drift.enabled:
            parts.append(f"drift@{self.drift.t_seconds:g}s" + (" compensated" if self.drift.compensation else ""))
        if self.read_noise.enabled:
            parts.append(f"read noise ({self.read_noise.time_structure})")
        if self.ir_drop.enabled:
            parts.append("IR drop")
        for name in ("dac_forward", "adc_forward", "dac_transposed", "adc_transposed"):
            if not getattr(self, name).ideal:
                parts.append(name)
        return ", ".join(parts) or "ideal"


def _replace_group(group: Any, head: str, changes: dict[str, Any]) -> Any:
    hints = _hints(type(group))
    values = {}
    for name, value in changes.items():
        if name not in hints:
            valid = ", ".join(f"{head}.{f}" for f in hints)
            raise ConfigError(f"unknown crossbar parameter {head + '.' + name!r}; valid: {valid}")
        values[name] = _coerce(value, hints[name], f"{head}.{name}")
    try:
        return dataclasses.replace(group, **values)
    except ConfigError as exc:
        # Converter messages do not know which of the four converters they belong to.
        message = str(exc)
        raise ConfigError(message if message.startswith(head) else f"{head}: {message}") from None


@functools.cache
def _group_types() -> dict[str, type]:
    hints = _hints(CrossbarParams)
    return {
        f.name: hints[f.name] for f in dataclasses.fields(CrossbarParams) if dataclasses.is_dataclass(hints[f.name])
    }


def _top_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(CrossbarParams)]


def _all_keys() -> list[str]:
    """Every settable dotted key, for error messages."""
    groups = _group_types()
    keys = []
    for name in _top_fields():
        if name in groups:
            keys += [f"{name}.{f.name}" for f in dataclasses.fields(groups[name])]
        else:
            keys.append(name)
    return keys


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _flatten(d: MappingABC[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if not isinstance(key, str):
            raise ConfigError(f"crossbar parameter names must be strings, got {key!r}")
        if isinstance(value, MappingABC):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` (possibly a string from the command line or a file) as type ``tp``, else ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value.strip() in choices:
            return value.strip()
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                return int(value.strip())
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
        else:
            return value
    except ValueError:
        pass
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{key} must be {'a' if name != 'int' else 'an'} {name}, got {value!r}")
