"""Robustness run configuration: a TOML file -> :class:`RobustnessConfig`.

See ``examples/robustness_digits.toml`` and docs/robustness.md for the fields.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ephw.device import resolve_device
from ephw.errors import ConfigError
from ephw.robustness.attacks import ArtPGDSpec, AttackSpec, advep_eps_grid
from ephw.robustness.corruptions import CORRUPTIONS, TABLES
from ephw.robustness.gradients import parse_grad
from ephw.robustness.models import ModelSpec


def logspace(lo: float, hi: float, n: int) -> list[float]:
    """``n`` log-spaced values from ``lo`` to ``hi`` (as ``numpy.logspace(log10 lo, log10 hi, n)``)."""
    a, b = math.log10(lo), math.log10(hi)
    return [10 ** (a + (b - a) * i / (n - 1)) for i in range(n)]


#: Default eps grids of LANL's evaluation code: l2 logspace(0.05..3, 10) + {0.005, 1};
#: linf logspace(1e-4..0.1, 10) + {8/255}.
#: ``advep-l2`` / ``advep-linf``: lanl/AdvEP's ``attack()`` grids exactly, as its numpy code makes
#: them (:func:`~ephw.robustness.attacks.advep_eps_grid`; l2 with 1, linf with 0.031).
EPS_GRIDS: dict[str, list[float]] = {
    "lanl-l2": sorted({round(e, 6) for e in [*logspace(0.05, 3.0, 10), 0.005, 1.0]}),
    "lanl-linf": sorted({round(e, 6) for e in [*logspace(1e-4, 0.1, 10), 8 / 255]}),
    "advep-l2": advep_eps_grid("L2"),
    "advep-linf": advep_eps_grid("Linf"),
}


#: Largest ``steps`` (an EP model's settle steps, an attack's iterations) and ``n_queries`` a
#: config may ask for: a million iterations of one row is already days of compute; a larger
#: number is a typo, not a plan.
MAX_STEPS = 1_000_000

#: Seeds are non-negative and fit 32 bits (every random generator a row seeds takes them).
MAX_SEED = 2**32 - 1


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


_EFFORT = re.compile(r"(steps|restarts)-x(\d+)")


def effort_check(what: str, factor: int) -> str:
    """The check name of a rerun with ``factor`` x the PGD steps or restarts: ``double-steps``, ``steps-x4``, ..."""
    return f"double-{what}" if factor == 2 else f"{what}-x{factor}"


def parse_effort(check: str | None) -> tuple[str, int] | None:
    """``("steps" | "restarts", factor)`` of an effort rerun's check name, else ``None``."""
    if check in ("double-steps", "double-restarts"):
        return check.removeprefix("double-"), 2
    m = _EFFORT.fullmatch(check or "")
    return (m.group(1), int(m.group(2))) if m else None


_UNROLL = re.compile(r"unroll:(\d+)")

#: Attack methods whose gradient is the EP model's own gradient mode (rerun per K by ``unroll`` and
#: ``grad_sweep``); ``art-pgd`` takes its gradient from its own ``unroll`` setting instead.
_SWEPT_METHODS = ("pgd", "autoattack")


def unroll_check(k: int) -> str:
    """The check name of the unroll escalation's level ``k`` (its attacks differentiate ``bptt:k``): ``unroll:k``."""
    return f"unroll:{int(k)}"


def parse_unroll(check: str | None) -> int | None:
    """The unroll length ``K`` of an ``unroll:K`` check name, else ``None``."""
    m = _UNROLL.fullmatch(check or "")
    return int(m.group(1)) if m else None


def escalation_needed(broke_more: float, threshold: float) -> bool:
    """Whether a level of an escalation (steps, restarts, unroll length) calls for the next one.

    ``broke_more`` is the fraction of the images the level broke beyond the level below it;
    the next level runs only while that is at least ``threshold`` (``checks.escalate_drop``).
    """
    return broke_more >= threshold - 1e-9


@dataclass(frozen=True)
class Checks:
    """The extra runs of the obfuscation checklist and of the worst case per image.

    Every rerun happens at each attack's check eps (``check_eps``). Reruns that ask "does more
    effort find more?" run as a cascade on the images the base attack left standing, so they
    cost only the survivors.

    Attributes:
        double_steps: rerun every PGD attack with twice the iterations *at the same step size*
            (twice the travel) on its survivors.
        double_restarts: rerun every PGD attack's restarts ``R..2R-1`` on its survivors.
        escalate: further doublings of each of those reruns (``steps-x4``, ``steps-x8``, ...,
            ``restarts-x4``, ...), each on the survivors of the one before and run only when the
            doubling before it broke at least ``escalate_drop`` more; a level not needed is kept as
            a row that attacked nothing (``skipped``). The worst case per image then holds the budget
            at which doubling stopped finding more, and the checklist says which that was.
        escalate_drop: the fraction of the images a doubling must break to call for the next one
            (default the checklist's ``steps_drop`` / ``restarts_drop``, 1 point).
        transfer_from: surrogate model names (or ``"others"``: every other model) whose PGD
            adversarials are replayed on each model (a transfer attack).
        warm_start_from: surrogates (or ``"others"``) whose PGD adversarials start the model's
            own PGD (same steps and step size, no random start): warm-started transfer.
        check_eps: per attack name, the eps (a number or a list) of the reruns; default the
            grid's middle value. When it names attacks, only those PGD attacks are rerun.
        sweep_eps: per attack name, the eps of the gradient-mode and EOT sweeps (default: the
            smallest check eps, where accuracy is still informative); when it names attacks,
            only those are swept.
        grad_sweep: extra gradient modes for EP models (``bptt:K`` for several K, ``implicit``,
            ``intermediate:K``), each a full PGD rerun at the check eps and, on the survivors of
            every row before it, a rerun of each ``cascade_sweep`` attack with that mode
            (modes ``bptt:K`` whose K is an ``unroll`` level excepted: the escalation runs those).
        unroll: EP models: the unroll escalation, increasing K (e.g. ``[29, 60, 120]``). At each
            check eps, level K reruns every ``cascade_sweep`` attack differentiating ``bptt:K``
            on the images every row before it left standing (the cascade included); the first
            two levels always run, a further one only while the level below still broke at
            least ``escalate_drop`` more (:func:`escalation_needed`, the steps/restarts rule);
            a level not needed is kept as a row that attacked nothing (``skipped``). Planned
            after every cascade row, so adding it changes no earlier row.
        cascade_sweep: the cascade attacks ``unroll`` and ``grad_sweep`` rerun on EP models
            (``None``: every white-box cascade attack, e.g. APGD; ``[]``: none).
        eot_sweep: EOT counts for PGD on stochastic models (read noise), each a full rerun.
        seeds: the seeds on which the effort reruns (doubled steps and restarts, gradient and
            EOT sweeps) run, to budget them; default every seed. Transfer and warm-started
            transfer run on every seed: they are attacks of the worst case.
        zero_grad_images: images on which the fraction of exactly-zero input gradients is
            measured per model (0 skips it).
    """

    double_steps: bool = True
    double_restarts: bool = True
    escalate: int = 0
    escalate_drop: float = 0.01
    transfer_from: tuple[str, ...] | str | None = None
    warm_start_from: tuple[str, ...] | str | None = None
    check_eps: dict[str, Any] = field(default_factory=dict)
    sweep_eps: dict[str, float] = field(default_factory=dict)
    grad_sweep: tuple[str, ...] = ()
    eot_sweep: tuple[int, ...] = ()
    seeds: tuple[int, ...] | None = None
    zero_grad_images: int = 64
    unroll: tuple[int, ...] = ()
    cascade_sweep: tuple[str, ...] | None = None

    def effort_checks(self) -> list[str]:
        """The effort reruns of one attack at one eps, in the order they run (each on the one before's survivors)."""
        out = []
        for what, on in (("steps", self.double_steps), ("restarts", self.double_restarts)):
            if on:
                out += [effort_check(what, 2 ** (level + 1)) for level in range(1 + self.escalate)]
        return out

    def surrogates(self, which: str, model: str, names: list[str]) -> list[str]:
        """The surrogates of ``model`` for ``which`` (``"transfer_from"`` or ``"warm_start_from"``)."""
        value = getattr(self, which)
        if value is None:
            return []
        chosen = [n for n in names if n != model] if value == "others" else [value] if isinstance(value, str) else value
        return [n for n in chosen if n != model]


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
        eval_draws: fresh forward passes that judge each adversarial of a stochastic model
            (detected by predicting the same batch twice); a row reports the mean over draws
            and, per image, whether it survived every draw.
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
    eval_draws: int = 8
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
        if self.n < 1 or not self.seeds or self.eval_draws < 1:
            raise ConfigError(
                f"n and eval_draws must be >= 1 and seeds non-empty, got n={self.n}, seeds={self.seeds}, "
                f"eval_draws={self.eval_draws}"
            )
        bad_seeds = [s for s in self.seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED]
        if bad_seeds:
            raise ConfigError(f"[run] seeds must be integers 0..{MAX_SEED}, got {bad_seeds[0]!r}")
        for m in self.models:
            if m.steps > MAX_STEPS:
                raise ConfigError(f"model {m.name!r}: steps must be at most {MAX_STEPS:,}, got {m.steps:,}")
        for a in self.attacks:
            for key in ("steps", "n_queries"):
                value = getattr(a, key, None)
                if isinstance(value, int) and value > MAX_STEPS:
                    raise ConfigError(f"attack {a.name!r}: {key} must be at most {MAX_STEPS:,}, got {value:,}")
        if not isinstance(self.checks.escalate, int) or not 0 <= self.checks.escalate <= 4:
            raise ConfigError(f"checks.escalate must be an integer 0..4, got {self.checks.escalate!r}")
        if not 0 <= self.checks.escalate_drop <= 1:
            raise ConfigError(f"checks.escalate_drop is a fraction of the images, got {self.checks.escalate_drop!r}")
        names = {m.name for m in self.models}
        for which in ("transfer_from", "warm_start_from"):
            value = getattr(self.checks, which)
            listed = [] if value in (None, "others") else [value] if isinstance(value, str) else list(value)
            bad = [v for v in listed if v not in names]
            if bad:
                raise ConfigError(f"checks.{which} names no model: {', '.join(map(repr, bad))}")
        if self.checks.seeds is not None and not set(self.checks.seeds) <= set(self.seeds):
            raise ConfigError(
                f"checks.seeds {list(self.checks.seeds)} must be among the run's seeds {list(self.seeds)}"
            )
        for g in self.checks.grad_sweep:
            parse_grad(g)
        self._check_unroll()
        if any(not isinstance(k, int) or k < 1 for k in self.checks.eot_sweep):
            raise ConfigError(f"checks.eot_sweep must list integers >= 1, got {list(self.checks.eot_sweep)}")
        unknown = set(self.checks.check_eps) - {a.name for a in self.attacks}
        if unknown:
            raise ConfigError(f"checks.check_eps names unknown attacks: {', '.join(sorted(unknown))}")
        unknown = set(self.checks.sweep_eps) - {a.name for a in self.attacks}
        if unknown:
            raise ConfigError(f"checks.sweep_eps names unknown attacks: {', '.join(sorted(unknown))}")
        for a in self.attacks:
            if a.name in self.checks.sweep_eps and self.checks.sweep_eps[a.name] not in a.eps:
                raise ConfigError(f"checks.sweep_eps.{a.name} must be one of the attack's eps {list(a.eps)}")
            if a.name in self.checks.check_eps:
                raw = self.checks.check_eps[a.name]
                values = raw if isinstance(raw, (list, tuple)) else [raw]
                if not values or any(not isinstance(v, (int, float)) or float(v) not in a.eps for v in values):
                    raise ConfigError(f"checks.check_eps.{a.name} must be among the attack's eps {list(a.eps)}")

    def _check_unroll(self) -> None:
        """``checks.unroll``: increasing K >= 1, at least two; ``checks.cascade_sweep``: white-box cascade attacks."""
        ks = self.checks.unroll
        if ks and (
            len(ks) < 2
            or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks)
            or any(b <= a for a, b in zip(ks, ks[1:]))
        ):
            raise ConfigError(
                f"checks.unroll must list at least two increasing unroll lengths K >= 1 (each level is "
                f"compared with the one before), got {list(ks)}"
            )
        by_name = {a.name: a for a in self.attacks}
        for name in self.checks.cascade_sweep or ():
            a = by_name.get(name)
            if a is None or not a.cascade or not a.white_box or a.method not in _SWEPT_METHODS:
                raise ConfigError(
                    f"checks.cascade_sweep: {name!r} is not a white-box cascade attack of this run "
                    f"(a [[attacks]] entry with cascade = true and a gradient: PGD, or AutoAttack without Square)"
                )

    def cascade_sweep_attacks(self, norm: str, eps: float) -> list[AttackSpec]:
        """The cascade attacks the unroll escalation and the gradient sweep rerun at ``norm`` and ``eps``
        (``checks.cascade_sweep``, default every white-box cascade attack), in config order."""
        names = self.checks.cascade_sweep
        return [
            a
            for a in self.attacks
            if a.cascade
            and a.white_box
            and a.method in _SWEPT_METHODS
            and (names is None or a.name in names)
            and a.norm == norm
            and any(abs(float(e) - float(eps)) <= 1e-9 for e in a.eps)
        ]

    def sweep_eps(self, attack: AttackSpec) -> float:
        """The eps of the gradient-mode and EOT sweeps of ``attack``."""
        if attack.name in self.checks.sweep_eps:
            return float(self.checks.sweep_eps[attack.name])
        return self.check_eps(attack)[0]

    def check_eps(self, attack: AttackSpec) -> list[float]:
        """The eps where checklist reruns of ``attack`` happen."""
        if attack.name in self.checks.check_eps:
            raw = self.checks.check_eps[attack.name]
            return sorted(float(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw]))
        grid = sorted(attack.eps)
        return [grid[len(grid) // 2]]


def _eps(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, str):
        if value not in EPS_GRIDS:
            raise ConfigError(f"{where}: unknown eps grid {value!r}; valid: {', '.join(EPS_GRIDS)} or a list")
        return tuple(EPS_GRIDS[value])
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"{where}: eps must be a grid name or a list of numbers")
    bad = [v for v in value if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"{where}: eps must be finite numbers, got {bad[0]!r}")
    return tuple(float(v) for v in value)


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
}


def _type_ok(value: Any, annotation: str) -> bool:
    """Whether a TOML value fits a dataclass field's annotation (``int``, ``float | None``, ``tuple[...]``, ...)."""
    for part in (p.strip() for p in annotation.split("|")):
        base = part.split("[")[0]
        if base in ("tuple", "list"):
            if isinstance(value, (list, tuple)):
                inner = part[part.index("[") + 1 : -1].split(",")[0].strip() if "[" in part else "Any"
                if inner == "Any" or all(_type_ok(v, inner) for v in value):
                    return True
        elif base == "dict":
            if isinstance(value, dict):
                return True
        elif base == "Any":
            return True
        elif base in _TYPES:
            if isinstance(value, _TYPES[base]) and not (base in ("int", "float") and isinstance(value, bool)):
                return True
    return False


def _describe(annotation: str) -> str:
    words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "None": "absent"}
    parts = [p.strip() for p in annotation.split("|")]
    return " or ".join(words.get(p, "a list" if p.startswith(("tuple", "list")) else p) for p in parts if p != "None")


def _build(cls: type, raw: dict[str, Any], where: str, **fixed: Any) -> Any:
    allowed = {f.name for f in fields(cls)}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown keys {', '.join(extra)}; valid: {', '.join(sorted(allowed))}")
    for f in fields(cls):
        if f.name in raw and f.name not in fixed and not _type_ok(raw[f.name], str(f.type)):
            raise ConfigError(f"{where}: {f.name} must be {_describe(str(f.type))}, got {raw[f.name]!r}")
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
        cls = ArtPGDSpec if a.get("method") == "art-pgd" else AttackSpec  # the published protocol's own fields
        attacks.append(_build(cls, {k: v for k, v in a.items() if k != "eps"}, where, eps=_eps(a["eps"], where)))
    corr = raw.get("corruptions")
    corruptions = None
    if corr is not None:
        corr = dict(corr)
        if corr.get("names") == "all":
            corr.pop("names")
        corruptions = _build(CorruptionSpec, corr, "corruptions")
    for section in ("run", "corruptions", "checks"):
        if section in raw and not isinstance(raw[section], dict):
            raise ConfigError(f"[{section}] must be a table")
    for section in ("models", "attacks"):
        if not isinstance(raw.get(section, []), list) or not all(isinstance(v, dict) for v in raw.get(section, [])):
            raise ConfigError(f"{section} must be an array of tables ([[{section}]])")
    checks_raw = dict(raw.get("checks", {}))
    check_eps = checks_raw.pop("check_eps", {})
    if not isinstance(check_eps, dict):
        raise ConfigError("checks.check_eps must be a table: { ATTACK = EPS or [EPS, ...] }")
    sweep_eps = checks_raw.pop("sweep_eps", {})
    if not isinstance(sweep_eps, dict):
        raise ConfigError("checks.sweep_eps must be a table: { ATTACK = EPS }")
    checks_raw["sweep_eps"] = sweep_eps
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
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text TOML file (binary content)")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(raw)
