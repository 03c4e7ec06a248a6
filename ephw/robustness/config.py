"""Robustness run configuration: a TOML file -> :class:`RobustnessConfig`.

See ``examples/robustness_digits.toml`` and docs/robustness.md for the fields.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ephw.device import resolve_device
from ephw.errors import ConfigError
from ephw.robustness.attacks import AttackSpec
from ephw.robustness.corruptions import CORRUPTIONS, TABLES
from ephw.robustness.models import ModelSpec


def logspace(lo: float, hi: float, n: int) -> list[float]:
    """``n`` log-spaced values from ``lo`` to ``hi`` (as ``numpy.logspace(log10 lo, log10 hi, n)``)."""
    a, b = math.log10(lo), math.log10(hi)
    return [10 ** (a + (b - a) * i / (n - 1)) for i in range(n)]


#: Default eps grids of LANL's evaluation code: l2 logspace(0.05..3, 10) + {0.005, 1};
#: linf logspace(1e-4..0.1, 10) + {8/255}.
EPS_GRIDS: dict[str, list[float]] = {
    "lanl-l2": sorted({round(e, 6) for e in [*logspace(0.05, 3.0, 10), 0.005, 1.0]}),
    "lanl-linf": sorted({round(e, 6) for e in [*logspace(1e-4, 0.1, 10), 8 / 255]}),
}


@dataclass(frozen=True)
class CorruptionSpec:
    """The natural-corruption part of a run.

    Attributes:
        names: corruption names (default: the 15 CIFAR-10-C corruptions).
        severities: severities 1..5 to evaluate.
        table: ``"cifar"`` (CIFAR-10-C's 32-pixel constants) or ``"imagenet"``
            (``imagecorruptions``' ImageNet-C constants); default ``cifar``.
    """

    names: tuple[str, ...] = CORRUPTIONS
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    table: str = "cifar"

    def __post_init__(self) -> None:
        bad = [c for c in self.names if c not in CORRUPTIONS]
        if bad:
            raise ConfigError(f"unknown corruptions {bad}; valid: {', '.join(CORRUPTIONS)}")
        if not self.severities or any(s not in (1, 2, 3, 4, 5) for s in self.severities):
            raise ConfigError(f"corruption severities must be in 1..5, got {self.severities}")
        if self.table not in TABLES:
            raise ConfigError(f"unknown corruption table {self.table!r}; valid: {', '.join(TABLES)}")


@dataclass(frozen=True)
class Checks:
    """The extra runs of the obfuscation checklist.

    Attributes:
        double_steps: re-run every PGD attack with twice the iterations at ``check_eps``.
        transfer_from: name of a feed-forward model whose PGD adversarials are replayed
            on every other model (a transfer attack); ``None`` skips the item.
        check_eps: the eps of each attack (by name) where the reruns happen; default the
            grid's middle value.
        zero_grad_images: images on which the fraction of exactly-zero input gradients is
            measured per model (0 skips it).
    """

    double_steps: bool = True
    transfer_from: str | None = None
    check_eps: dict[str, float] = field(default_factory=dict)
    zero_grad_images: int = 64


@dataclass(frozen=True)
class RobustnessConfig:
    """Models x attacks x eps grid x seeds x n test images (+ corruptions and checks).

    Attributes:
        models, attacks: what is attacked and how.
        data: dataset name (default: the first model's training data).
        data_root: where the dataset lives (see docs/data.md).
        n: test images per seed; seed ``s`` draws its own ``n`` images from the test split.
        seeds: one row per seed; a seed fixes the test subset and the attack's randomness.
        device: torch device.
        corruptions: natural corruptions to evaluate (``None``: none).
        checks: extra runs of the obfuscation checklist.
    """

    models: tuple[ModelSpec, ...]
    attacks: tuple[AttackSpec, ...]
    data: str | None = None
    data_root: str | None = None
    n: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "cpu"
    corruptions: CorruptionSpec | None = None
    checks: Checks = field(default_factory=Checks)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("a robustness run needs at least one [[models]] entry")
        for what, items in (("model", self.models), ("attack", self.attacks)):
            names = [m.name for m in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ConfigError(f"duplicate {what} names: {', '.join(dup)}")
        if self.n < 1 or not self.seeds:
            raise ConfigError(f"n must be >= 1 and seeds non-empty, got n={self.n}, seeds={self.seeds}")
        if self.checks.transfer_from is not None and self.checks.transfer_from not in {m.name for m in self.models}:
            raise ConfigError(f"checks.transfer_from names no model: {self.checks.transfer_from!r}")
        unknown = set(self.checks.check_eps) - {a.name for a in self.attacks}
        if unknown:
            raise ConfigError(f"checks.check_eps names unknown attacks: {', '.join(sorted(unknown))}")
        for a in self.attacks:
            if a.name in self.checks.check_eps and float(self.checks.check_eps[a.name]) not in a.eps:
                raise ConfigError(f"checks.check_eps.{a.name} must be one of the attack's eps {list(a.eps)}")

    def check_eps(self, attack: AttackSpec) -> float:
        """The eps where checklist reruns of ``attack`` happen."""
        if attack.name in self.checks.check_eps:
            return float(self.checks.check_eps[attack.name])
        grid = sorted(attack.eps)
        return grid[len(grid) // 2]


def _eps(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, str):
        if value not in EPS_GRIDS:
            raise ConfigError(f"{where}: unknown eps grid {value!r}; valid: {', '.join(EPS_GRIDS)} or a list")
        return tuple(EPS_GRIDS[value])
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"{where}: eps must be a grid name or a list of numbers")
    return tuple(float(v) for v in value)


def _build(cls: type, raw: dict[str, Any], where: str, **fixed: Any) -> Any:
    allowed = {f.name for f in fields(cls)}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown keys {', '.join(extra)}; valid: {', '.join(sorted(allowed))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return cls(**{**values, **fixed})
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def config_from_dict(raw: dict[str, Any]) -> RobustnessConfig:
    """Validate a parsed TOML document (``[run]``, ``[[models]]``, ``[[attacks]]``, ``[corruptions]``, ``[checks]``)."""
    extra = sorted(set(raw) - {"run", "models", "attacks", "corruptions", "checks"})
    if extra:
        raise ConfigError(f"unknown sections {', '.join(extra)}; valid: run, models, attacks, corruptions, checks")
    models = []
    for i, m in enumerate(raw.get("models", [])):
        m = dict(m)
        options = m.pop("options", {})
        models.append(_build(ModelSpec, m, f"models[{i}]", options=dict(options)))
    attacks = []
    for i, a in enumerate(raw.get("attacks", [])):
        a = dict(a)
        where = f"attacks[{i}] ({a.get('name', '?')})"
        if "eps" not in a:
            raise ConfigError(f"{where}: eps is required (a list or a grid name: {', '.join(EPS_GRIDS)})")
        attacks.append(_build(AttackSpec, {k: v for k, v in a.items() if k != "eps"}, where, eps=_eps(a["eps"], where)))
    corr = raw.get("corruptions")
    corruptions = None
    if corr is not None:
        corr = dict(corr)
        if corr.get("names") == "all":
            corr.pop("names")
        corruptions = _build(CorruptionSpec, corr, "corruptions")
    checks_raw = dict(raw.get("checks", {}))
    check_eps = checks_raw.pop("check_eps", {})
    checks = _build(Checks, checks_raw, "checks", check_eps=dict(check_eps))
    run = dict(raw.get("run", {}))
    resolve_device(run.get("device", "cpu"))
    return _build(
        RobustnessConfig,
        run,
        "run",
        models=tuple(models),
        attacks=tuple(attacks),
        corruptions=corruptions,
        checks=checks,
    )


def load_config(path: str | Path) -> RobustnessConfig:
    """Read and validate a robustness TOML file (raises :class:`ConfigError`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(raw)
