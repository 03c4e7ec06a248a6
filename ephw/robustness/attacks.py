"""Adversarial attacks from maintained libraries, one ``(attack, eps, seed)`` at a time.

* PGD (l2 / linf) with a fixed step: foolbox 3.3.4 ``L2PGD`` / ``LinfPGD``; the step is
  ``rel_stepsize * eps`` with LANL's default ``rel_stepsize = 2.5 / steps``.
* AutoAttack (linf / l2): the official implementation (``pyautoattack``), ``version='standard'``
  for reported numbers (APGD-CE, APGD-T, FAB-T, Square); ``version='custom'`` with
  ``attacks=[...]`` for cheaper runs.
* Square (black box): ``pyautoattack.square.SquareAttack`` with AutoAttack's settings
  (``p_init = 0.8``, no rescaled schedule, one restart).

Every attack returns, per image, whether the model still classifies it correctly.
Libraries draw from torch's global generator: each call seeds it with the row's seed
inside ``torch.random.fork_rng``, so results are reproducible and the caller's random
state is left untouched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ephw.errors import ConfigError
from ephw.robustness.models import Classifier

METHODS = ("pgd", "autoattack", "square")
NORMS = ("L2", "Linf")
AA_VERSIONS = ("standard", "plus", "rand", "custom")
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a run (a ``[[attacks]]`` config entry).

    Attributes:
        name: label in results and figures, e.g. ``"pgd-l2"``.
        method: ``"pgd"``, ``"autoattack"`` or ``"square"``.
        norm: ``"L2"`` or ``"Linf"``.
        eps: the grid of perturbation budgets (image units, pixels in ``[0, 1]``).
        steps: PGD iterations (LANL: 20 for the figures' PGD).
        rel_stepsize: PGD step / eps; default ``2.5 / steps`` (Madry et al.; LANL).
        random_start: PGD starts from a uniform draw in the eps-ball.
        version: AutoAttack version; ``attacks``: its attack list when ``version = "custom"``.
        n_queries: Square queries (AutoAttack standard: 5000); also the budget of the
            Square inside AutoAttack when ``version = "custom"`` lists ``"square"``.
        p_init: Square's initial fraction of pixels changed.
        batch_size: images per library call.
    """

    name: str
    method: str
    norm: str
    eps: tuple[float, ...]
    steps: int = 20
    rel_stepsize: float | None = None
    random_start: bool = True
    version: str = "standard"
    attacks: tuple[str, ...] = ()
    n_queries: int = 5000
    p_init: float = 0.8
    batch_size: int = 250

    def __post_init__(self) -> None:
        where = f"attack {self.name!r}"
        if self.method not in METHODS:
            raise ConfigError(f"{where}: unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.norm not in NORMS:
            raise ConfigError(f"{where}: unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if not self.eps or any(not e >= 0 for e in self.eps):
            raise ConfigError(f"{where}: eps must be a non-empty list of numbers >= 0, got {self.eps}")
        if self.steps < 1 or self.n_queries < 1 or self.batch_size < 1:
            raise ConfigError(f"{where}: steps, n_queries and batch_size must be >= 1")
        if self.version not in AA_VERSIONS:
            raise ConfigError(f"{where}: unknown AutoAttack version {self.version!r}; valid: {', '.join(AA_VERSIONS)}")
        bad = [a for a in self.attacks if a not in AA_ATTACKS]
        if bad:
            raise ConfigError(f"{where}: unknown AutoAttack attacks {bad}; valid: {', '.join(AA_ATTACKS)}")
        if self.method == "autoattack" and (self.version == "custom") != bool(self.attacks):
            raise ConfigError(f"{where}: AutoAttack takes an attacks list exactly when version = 'custom'")

    @property
    def step_size(self) -> float:
        """PGD step relative to eps."""
        return self.rel_stepsize if self.rel_stepsize is not None else 2.5 / self.steps

    @property
    def white_box(self) -> bool:
        return self.method != "square"


@dataclass
class AttackOutcome:
    """Per-image result of one attack at one eps.

    Attributes:
        correct: ``(n,)`` bool, the model still predicts the label on the attacked image.
        seconds: wall-clock time of the attack.
        notes: facts worth keeping with the row (library warnings, per-attack accuracies).
        adv: the attacked images ``(n, C, H, W)`` (PGD only; replayed by transfer checks).
    """

    correct: Tensor
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)
    adv: Tensor | None = None


class _Collect(logging.Handler):
    """Keeps the warnings AutoAttack logs (randomised/dynamic defence, zero gradients, ...)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg not in self.messages:
            self.messages.append(msg)


def run_attack(
    model: Classifier, spec: AttackSpec, x: Tensor, y: Tensor, eps: float, seed: int, steps: int | None = None
) -> AttackOutcome:
    """Attack ``model`` on images ``x`` ``(n, C, H, W)`` in ``[0, 1]`` with labels ``y`` ``(n,)`` at ``eps``.

    ``steps`` overrides the PGD iterations (the checklist's doubled-iterations rerun).
    At ``eps = 0`` AutoAttack and Square are skipped and the clean predictions returned
    (there is nothing to search); PGD runs as usual.
    """
    start = time.perf_counter()
    adv = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.method == "pgd":
            correct, notes, adv = _pgd(model, spec, x, y, eps, steps or spec.steps)
        elif eps == 0:
            correct, notes = model.predict(x, spec.batch_size) == y, {"eps0": "clean predictions"}
        elif spec.method == "autoattack":
            correct, notes = _autoattack(model, spec, x, y, eps, seed)
        else:
            correct, notes = _square(model, spec, x, y, eps, seed)
    return AttackOutcome(correct.cpu(), time.perf_counter() - start, notes, adv)


def _pgd(model: Classifier, spec: AttackSpec, x: Tensor, y: Tensor, eps: float, steps: int):
    import foolbox as fb

    fmodel = fb.PyTorchModel(model.module, bounds=(0.0, 1.0), device=x.device)
    cls = fb.attacks.L2PGD if spec.norm == "L2" else fb.attacks.LinfPGD
    rel = spec.rel_stepsize if spec.rel_stepsize is not None else 2.5 / steps
    attack = cls(rel_stepsize=rel, steps=steps, random_start=spec.random_start)
    correct, advs = [], []
    for xb, yb in zip(x.split(spec.batch_size), y.split(spec.batch_size)):
        _, clipped, _ = attack(fmodel, xb, yb, epsilons=float(eps))
        with torch.no_grad():  # the verdict is the model's own prediction on the returned images
            correct.append(model.module(clipped).argmax(1) == yb)
        advs.append(clipped.detach())
    return torch.cat(correct), {"steps": steps, "rel_stepsize": rel}, torch.cat(advs)


def _autoattack(model: Classifier, spec: AttackSpec, x: Tensor, y: Tensor, eps: float, seed: int):
    from pyautoattack import AutoAttack

    logger = logging.getLogger("auto-attack")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        aa = AutoAttack(
            model.module,
            attacks=list(spec.attacks) if spec.version == "custom" else None,
            device=x.device,
            eps=float(eps),
            norm=spec.norm,
            seed=seed,
            version=spec.version,
        )
        if spec.version == "custom":
            aa.square.n_queries = spec.n_queries
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=spec.batch_size)
    finally:
        logger.removeHandler(handler)
    return (y_adv == y), {"aa_attacks": list(aa.attacks_to_run), "aa_warnings": handler.messages}


def _square(model: Classifier, spec: AttackSpec, x: Tensor, y: Tensor, eps: float, seed: int):
    from pyautoattack.square import SquareAttack

    attack = SquareAttack(
        model.module,
        norm=spec.norm,
        n_queries=spec.n_queries,
        eps=float(eps),
        p_init=spec.p_init,
        n_restarts=1,
        seed=seed,
        verbose=False,
        resc_schedule=False,
        device=x.device,
    )
    correct = []
    with torch.no_grad():
        for xb, yb in zip(x.split(spec.batch_size), y.split(spec.batch_size)):
            adv = attack.perturb(xb, yb)
            correct.append(model.module(adv).argmax(1) == yb)
    return torch.cat(correct), {"n_queries": spec.n_queries}
