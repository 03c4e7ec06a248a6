"""Adversarial attacks from maintained libraries, one ``(attack, eps, seed)`` at a time.

* PGD (l2 / linf) with a fixed step: foolbox 3.3.4 ``L2PGD`` / ``LinfPGD``; the step is
  ``rel_stepsize * eps`` (default ``2.5 / steps``, Madry et al. and LANL, but never finer than
  ``2.5 / 100``: :data:`STEPS_FOR_FULL_TRAVEL`). The total distance the
  attack can travel, ``steps * rel_stepsize * eps``, must be at least ``2 eps`` (checked).
  ``restarts = R`` runs R random starts, each on the images no earlier start broke (the
  per-image best over restarts); restart ``r`` draws from its own seed, so restarts
  ``R..2R-1`` (the checklist's doubled-restarts rerun) extend a finished run exactly.
  ``start`` (a warm start) begins the single run at given images instead of a random point;
  ``eot = N`` averages the logits of ``N`` forward passes per gradient (expectation over
  transformation, for models with read noise). foolbox returns the *last* iterate, and a
  fixed-size step can walk out of an adversarial region it had reached; with ``keep_best``
  (the default) an image the last iterate leaves correct gets the first iterate the model
  misclassified instead (checked again before it counts), so more steps can only find more.
  On a deterministic model (``deterministic=True``) that first misclassified iterate settles
  the image, so images the model already misclassifies are not attacked and a broken image
  leaves the batch: later queries skip it (on an EP model each query is a full settle), and
  the robust accuracy is the same. Its returned image is then that first iterate, a minimal
  adversarial rather than the strongest, so such runs do not serve as transfer sources.
* AutoAttack (linf / l2): the official implementation (``pyautoattack``), ``version='standard'``
  (APGD-CE, APGD-T, FAB-T, Square), ``'rand'`` (APGD-CE/DLR with EOT, for randomised models)
  or ``'custom'`` with ``attacks=[...]`` (``restarts`` sets APGD's restarts -- APGD-T's per
  target class, over AutoAttack's 9 most likely wrong classes -- ``n_queries`` its Square's budget).
* Square (black box): ``pyautoattack.square.SquareAttack`` with AutoAttack's settings
  (``p_init = 0.8``, no rescaled schedule, one restart).
* ``art-pgd`` (l2 / linf): the published protocol of the seed paper's code (lanl/AdvEP), run by
  IBM's Adversarial Robustness Toolbox itself (``ProjectedGradientDescentPyTorch``): an
  :class:`ArtPGDSpec`, executed by :func:`ephw.robustness.art_protocol.run_art_pgd`.

Every attack returns, per image, whether the model still classifies the returned image
correctly, and the returned images. Libraries draw from torch's global generator: each call
seeds it with the row's seed inside ``torch.random.fork_rng``, so results are reproducible and
the caller's random state is left untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ephw.errors import ConfigError
from ephw.robustness import progress
from ephw.robustness.models import Classifier

METHODS = ("pgd", "autoattack", "square", "art-pgd")
NORMS = ("L2", "Linf")
AA_VERSIONS = ("standard", "plus", "rand", "custom")
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
#: AutoAttack versions and their attack lists (``custom``: the spec's own list).
AA_LISTS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
#: PGD must be able to travel at least this many eps in total (``steps * rel_stepsize``).
MIN_TRAVEL = 2.0
#: The default PGD step is ``2.5 eps / steps`` (Madry et al.; LANL: the attack can travel 2.5 eps)
#: up to this many steps, and ``2.5 eps / 100`` beyond: more steps than 100 travel further at the
#: 100-step attack's step size instead of taking finer steps over the same distance.
STEPS_FOR_FULL_TRAVEL = 100
#: PGD's default budget for reported numbers: 10 starts x 200 steps of 2.5 eps / 100 (travel
#: 5 eps). 100 steps left 1-4 points for 200 to find on digits and CIFAR-10 feed-forward models;
#: what doubling 200 moves is in docs/robustness.md ("Budgets"). On an EP model the starts cycle
#: through its gradient modes.
DEFAULT_STEPS = 200
DEFAULT_RESTARTS = 10


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a run (a ``[[attacks]]`` config entry).

    Attributes:
        name: label in results and figures, e.g. ``"pgd-l2"``.
        method: ``"pgd"``, ``"autoattack"`` or ``"square"``.
        norm: ``"L2"`` or ``"Linf"``.
        eps: the grid of perturbation budgets (image units, pixels in ``[0, 1]``).
        steps: PGD iterations (default :data:`DEFAULT_STEPS`).
        rel_stepsize: PGD step / eps; default ``2.5 / min(steps, 100)`` (Madry et al.; LANL; more
            than 100 steps travel further rather than finer).
        random_start: PGD starts from a uniform draw in the eps-ball.
        keep_best: PGD returns, for an image its last iterate leaves correct, the first
            iterate the model misclassified (foolbox alone returns the last iterate).
        restarts: PGD random starts (per-image best; default :data:`DEFAULT_RESTARTS`); on an
            EP model with several gradient modes start ``r`` uses mode ``r mod len``. APGD
            restarts inside AutoAttack ``custom``.
        eot: forward passes averaged per gradient (PGD), AutoAttack's ``eot_iter`` (``rand``);
            ``None``: 1 for PGD, the library's 20 for ``rand``.
        cascade: run only on the images that survived every earlier attack of the run on
            the same model, norm, eps and seed (AutoAttack's way of paying only for
            survivors); the row's accuracy is then the worst case over those attacks.
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
    steps: int = DEFAULT_STEPS
    rel_stepsize: float | None = None
    random_start: bool = True
    keep_best: bool = True
    restarts: int = DEFAULT_RESTARTS
    eot: int | None = None
    cascade: bool = False
    version: str = "standard"
    attacks: tuple[str, ...] = ()
    n_queries: int = 5000
    p_init: float = 0.8
    batch_size: int = 250

    def __post_init__(self) -> None:
        where = f"attack {self.name!r}"
        if self.method not in METHODS:
            raise ConfigError(f"{where}: unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if (self.method == "art-pgd") != isinstance(self, ArtPGDSpec):
            raise ConfigError(f"{where}: method 'art-pgd' is an ArtPGDSpec (and an ArtPGDSpec's method is 'art-pgd')")
        if self.norm not in NORMS:
            raise ConfigError(f"{where}: unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if not self.eps or any(not e >= 0 for e in self.eps):
            raise ConfigError(f"{where}: eps must be a non-empty list of numbers >= 0, got {self.eps}")
        if self.steps < 1 or self.n_queries < 1 or self.batch_size < 1 or self.restarts < 1:
            raise ConfigError(f"{where}: steps, restarts, n_queries and batch_size must be >= 1")
        if self.eot is not None and self.eot < 1:
            raise ConfigError(f"{where}: eot must be >= 1, got {self.eot}")
        if self.version not in AA_VERSIONS:
            raise ConfigError(f"{where}: unknown AutoAttack version {self.version!r}; valid: {', '.join(AA_VERSIONS)}")
        bad = [a for a in self.attacks if a not in AA_ATTACKS]
        if bad:
            raise ConfigError(f"{where}: unknown AutoAttack attacks {bad}; valid: {', '.join(AA_ATTACKS)}")
        if self.method == "autoattack" and (self.version == "custom") != bool(self.attacks):
            raise ConfigError(f"{where}: AutoAttack takes an attacks list exactly when version = 'custom'")
        if self.method == "pgd" and self.steps * self.step_size < MIN_TRAVEL - 1e-9:
            raise ConfigError(
                f"{where}: steps x rel_stepsize = {self.steps} x {self.step_size:g} = "
                f"{self.steps * self.step_size:g} eps of travel; it must be >= {MIN_TRAVEL:g} eps "
                "(more steps or a larger rel_stepsize)"
            )

    @property
    def step_size(self) -> float:
        """PGD step relative to eps."""
        if self.rel_stepsize is not None:
            return self.rel_stepsize
        return 2.5 / min(self.steps, STEPS_FOR_FULL_TRAVEL)

    @property
    def library_attacks(self) -> tuple[str, ...]:
        """The attacks AutoAttack runs (``()`` for PGD and Square)."""
        if self.method != "autoattack":
            return ()
        return self.attacks if self.version == "custom" else AA_LISTS[self.version]

    @property
    def white_box(self) -> bool:
        """True for a pure gradient attack (PGD, ART's PGD, or AutoAttack without its Square stage)."""
        return self.method in ("pgd", "art-pgd") or (
            self.method == "autoattack" and "square" not in self.library_attacks
        )

    @property
    def black_box(self) -> bool:
        return self.method == "square"


#: The published protocol's budget (lanl/AdvEP ``attack()``): ART's PGD, 20 steps of 2.5 eps / 20.
ART_STEPS = 20
#: The EP gradient's unroll when an ``art-pgd`` attack names none: lanl/AdvEP's K = 29 updates from
#: the null state for l2 and K = 70 for linf (predictions settle with 250).
ART_UNROLL = {"L2": 29, "Linf": 70}
#: ``clip = "none"``: ART's ``clip_values=None`` as published (pixels may leave ``[0, 1]``);
#: ``"unit-box"``: ``clip_values=(0, 1)``.
ART_CLIPS = ("none", "unit-box")
#: ``labels = "predictions"``: ``generate(x)`` without labels, so ART attacks the model's own
#: (settled) predictions, as published; ``"true"``: ``generate(x, y)`` with the true labels.
ART_LABELS = ("predictions", "true")


def advep_eps_grid(norm: str) -> list[float]:
    """The eps grid of lanl/AdvEP's ``attack()``, exactly as its numpy code makes it (sorted, 11 values).

    l2: ``np.logspace(np.log10(0.05), np.log10(3), 10)`` with 1 inserted (0.05, 0.0788, 0.1242,
    0.1957, 0.3085, 0.4862, 0.7663, 1.0, 1.2077, 1.9035, 3.0); linf:
    ``np.logspace(np.log10(1e-4), np.log10(0.1), 10)`` with 0.031 inserted. Pixel units (``[0, 1]`` images).
    """
    if norm == "L2":
        grid = np.insert(np.logspace(np.log10(0.05), np.log10(3), 10), 0, 1)
    elif norm == "Linf":
        grid = np.insert(np.logspace(np.log10(0.0001), np.log10(0.1), 10), 0, 0.031)
    else:
        raise ConfigError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    return [float(e) for e in np.sort(grid)]


@dataclass(frozen=True)
class ArtPGDSpec(AttackSpec):
    """The published protocol (lanl/AdvEP ``CIFAR10Codes/model_utils.py`` ``attack()``) as an attack,
    ``method = "art-pgd"``, run by ART's ``ProjectedGradientDescentPyTorch`` itself.

    Every setting not listed here is ART's default (untargeted, no momentum, no random eps).
    The fields it shares with :class:`AttackSpec` have the protocol's defaults and ART's meaning:

    Attributes:
        steps: ART's ``max_iter`` (default :data:`ART_STEPS`).
        rel_stepsize: ART's ``eps_step / eps``; default ``2.5 / steps`` (AdvEP: ``2.5 eps / 20``).
        random_start: ART's ``num_random_init > 0`` (default false: the attack starts at the image).
        restarts: ART's ``num_random_init`` when ``random_start`` (ART keeps, per image, a later
            start's result only where it succeeds); must be 1 without ``random_start``.
        keep_best: must be false: ART returns its last iterate, and that is what is judged.
        unroll: EP models: ART's loss gradient is that of the loss at the state after ``unroll``
            updates from the null state (BPTT, ``GradMode("bptt", k=unroll)``); default
            :data:`ART_UNROLL` (29 for l2, 70 for linf). Feed-forward models ignore it.
        clip: ``"none"`` (published: ``clip_values=None``, pixels may leave ``[0, 1]``) or
            ``"unit-box"`` (``clip_values=(0, 1)``).
        labels: ``"predictions"`` (published: ``generate(x)``, ART attacks the settled
            model's own predictions) or ``"true"`` (``generate(x, y)``). Accuracy is always
            counted against the true labels, on the settled model.
    """

    steps: int = ART_STEPS
    random_start: bool = False
    keep_best: bool = False
    restarts: int = 1
    unroll: int | None = None
    clip: str = "none"
    labels: str = "predictions"

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"attack {self.name!r}"
        if self.clip not in ART_CLIPS:
            raise ConfigError(f"{where}: clip must be one of {', '.join(ART_CLIPS)}, got {self.clip!r}")
        if self.labels not in ART_LABELS:
            raise ConfigError(f"{where}: labels must be one of {', '.join(ART_LABELS)}, got {self.labels!r}")
        if self.unroll is not None and (isinstance(self.unroll, bool) or self.unroll < 1):
            raise ConfigError(f"{where}: unroll must be >= 1 (updates from the null state), got {self.unroll}")
        if self.keep_best:
            raise ConfigError(f"{where}: ART returns its last iterate; keep_best must be false for art-pgd")
        if self.eot is not None:
            raise ConfigError(f"{where}: the published protocol has no EOT; eot is not available for art-pgd")
        if not self.random_start and self.restarts != 1:
            raise ConfigError(
                f"{where}: art-pgd restarts are ART's random initialisations (num_random_init): "
                f"set random_start = true, or restarts = 1 (got {self.restarts})"
            )
        if self.rel_stepsize is not None and not self.rel_stepsize > 0:
            raise ConfigError(f"{where}: rel_stepsize must be > 0, got {self.rel_stepsize!r}")

    @property
    def step_size(self) -> float:
        """ART's ``eps_step`` relative to eps: ``rel_stepsize``, default ``2.5 / steps``."""
        return self.rel_stepsize if self.rel_stepsize is not None else 2.5 / self.steps

    @property
    def k(self) -> int:
        """The EP unroll in force: ``unroll``, or :data:`ART_UNROLL` of the norm."""
        return self.unroll if self.unroll is not None else ART_UNROLL[self.norm]

    @property
    def num_random_init(self) -> int:
        """ART's ``num_random_init``: ``restarts`` with ``random_start``, else 0."""
        return self.restarts if self.random_start else 0


@dataclass
class AttackOutcome:
    """Per-image result of one attack at one eps.

    Attributes:
        correct: ``(n,)`` bool, the model still predicts the label on the returned image.
        seconds: wall-clock time of the attack.
        notes: facts worth keeping with the row (library warnings, per-restart survivors).
        adv: the returned images ``(n, C, H, W)`` (replayed by transfer and warm-start checks,
            judged again on fresh draws for stochastic models).
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


class MeanLogits(nn.Module):
    """``mean_k module(x)`` over ``n`` forward passes: the EOT estimate for a stochastic model."""

    def __init__(self, module: nn.Module, n: int) -> None:
        super().__init__()
        self.module, self.n = module, int(n)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.module(x) for _ in range(self.n)]).mean(0)


class IterateWitness(nn.Module):
    """``module`` unchanged, keeping per image of the armed batch the first input it misclassified.

    PGD queries ``module`` at every iterate (each inside the eps-ball and ``[0, 1]``); after
    :meth:`arm` with labels ``y`` ``(B,)``, ``hit`` ``(B,)`` marks the images some query
    misclassified and ``found`` ``(B, C, H, W)`` holds the first such input. With ``freeze``
    (deterministic models) a hit image is not evaluated again: later queries return its
    logits at the hit, constant, so the attack's gradient on it is zero and it stays put.
    """

    def __init__(self, module: nn.Module, freeze: bool = False) -> None:
        super().__init__()
        self.module = module
        self.freeze = freeze
        self.arm(None)

    def arm(self, y: Tensor | None) -> None:
        self.y = y
        self.hit = None if y is None else torch.zeros(len(y), dtype=torch.bool, device=y.device)
        self.found: Tensor | None = None
        self.frozen: Tensor | None = None  # (B, classes) logits of the hit images at their hit

    def forward(self, x: Tensor) -> Tensor:
        armed = self.y is not None and x.shape[0] == len(self.y)
        if armed and self.freeze and self.frozen is not None:
            live = ~self.hit
            # foolbox differentiates every query: the zero term keeps a graph when all are hit
            logits = self.frozen.clone() + 0 * x.flatten(1)[:, :1]
            if live.any():
                logits[live] = self.module(x[live]).to(logits.dtype)
        else:
            logits = self.module(x)
        if armed:
            with torch.no_grad():
                new = (logits.argmax(1) != self.y) & ~self.hit
                if new.any():
                    if self.found is None:
                        self.found = x.detach().clone()
                    self.found[new] = x.detach()[new]
                    self.hit |= new
                    if self.freeze:
                        if self.frozen is None:
                            self.frozen = logits.detach().clone()
                        self.frozen[new] = logits.detach()[new]
        return logits


def restart_seed(seed: int, restart: int) -> int:
    """The torch seed of PGD restart ``restart`` of a row seeded ``seed`` (restart 0 = the seed itself)."""
    return seed if restart == 0 else seed * 1_000_003 + 7919 * restart


def run_attack(
    model: Classifier,
    spec: AttackSpec,
    x: Tensor,
    y: Tensor,
    eps: float,
    seed: int,
    steps: int | None = None,
    *,
    restarts: range | None = None,
    start: Tensor | None = None,
    eot: int | None = None,
    deterministic: bool = False,
    progress: str | Path | None = None,
) -> AttackOutcome:
    """Attack ``model`` on images ``x`` ``(n, C, H, W)`` in ``[0, 1]`` with labels ``y`` ``(n,)`` at ``eps``.

    Args:
        steps: overrides the PGD iterations at the spec's fixed step size (the checklist's
            doubled-steps rerun: twice the travel).
        restarts: which PGD restarts to run (default ``range(spec.restarts)``).
        start: PGD warm start ``(n, C, H, W)`` (e.g. a surrogate's adversarials); one run, no random start.
        eot: overrides the spec's EOT count.
        deterministic: the model's prediction is a function of its input (no read noise):
            PGD then skips images it misclassifies and drops an image from the batch at its
            first misclassified iterate (same robust accuracy, less work; see the module doc).
        progress: a file where PGD saves its state after every batch of every restart
            (:mod:`ephw.robustness.progress`); a rerun with the same file resumes after the last
            saved batch with the same result. The caller removes the file once the result is kept.
            A resumed deterministic run returns ``adv`` ``None`` (its earlier images are not saved).

    At ``eps = 0`` AutoAttack, Square and ART's PGD are skipped and the clean predictions returned
    (there is nothing to search; ART refuses a zero step); PGD runs as usual. ``art-pgd``
    (:class:`ArtPGDSpec`) runs ART's PGD once on every image and ignores ``steps``, ``restarts``,
    ``start``, ``eot``, ``deterministic`` and ``progress`` (it has no reruns, no early stop and no
    mid-row resume: the protocol is one 20-step run).
    """
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.method == "pgd":
            runs = range(1) if start is not None else (restarts or range(spec.restarts))
            correct, notes, adv = _pgd(
                model, spec, x, y, eps, steps or spec.steps, seed, runs, start, eot or spec.eot, deterministic, progress
            )
        elif eps == 0:
            correct, notes, adv = model.predict(x, spec.batch_size) == y, {"eps0": "clean predictions"}, x.clone()
        elif isinstance(spec, ArtPGDSpec):
            correct, notes, adv = _art_pgd(model, spec, x, y, eps, seed)
        elif spec.method == "autoattack":
            correct, notes, adv = _autoattack(model, spec, x, y, eps, seed, eot or spec.eot)
        else:
            correct, notes, adv = _square(model, spec, x, y, eps, seed)
    before = notes.get("resumed", {}).get("seconds_before", 0.0)
    return AttackOutcome(correct.cpu(), time.perf_counter() - t0 + before, notes, adv)


def _pgd_class(norm: str, start: Tensor | None) -> type:
    import foolbox as fb

    base = fb.attacks.L2PGD if norm == "L2" else fb.attacks.LinfPGD
    if start is None:
        return base

    class WarmStarted(base):  # foolbox's own PGD, started at given points instead of a random draw
        warm: Any = None

        def get_random_start(self, x0, epsilon):  # noqa: ANN001, ANN202
            return self.project(type(x0)(self.warm), x0, epsilon)

    return WarmStarted


def _pgd(
    model: Classifier,
    spec: AttackSpec,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int,
    seed: int,
    runs: range,
    start: Tensor | None,
    eot: int | None,
    deterministic: bool = False,
    progress_file: str | Path | None = None,
):
    import foolbox as fb

    module = model.module if (eot or 1) == 1 else MeanLogits(model.module, eot).eval()
    freeze = deterministic and spec.keep_best and (eot or 1) == 1
    witness = IterateWitness(module, freeze).eval() if spec.keep_best else None
    fmodel = fb.PyTorchModel(witness or module, bounds=(0.0, 1.0), device=x.device)
    rel = spec.step_size  # fixed: doubling the steps doubles the distance the attack can travel
    attack = _pgd_class(spec.norm, start)(
        rel_stepsize=rel, steps=steps, random_start=spec.random_start or start is not None
    )
    # the ball holds x itself: a deterministic model that misclassifies it is broken already
    alive = model.predict(x, spec.batch_size) == y if freeze else torch.ones(len(y), dtype=torch.bool, device=y.device)
    adv = x.clone()
    survivors: list[int] = []
    earlier = 0  # images whose returned adversarial is an earlier iterate than foolbox's last
    cycle = getattr(model.module, "use_restart", None)  # EP models: restart r's gradient mode
    settings = {"spec": repr(spec), "eps": float(eps), "steps": steps, "seed": seed, "runs": [runs.start, runs.stop]}
    settings |= {"deterministic": deterministic, "eot": eot, "start": None if start is None else progress.digest(start)}
    key = progress.row_key(x, y, settings) if progress_file is not None else ""
    saved = progress.load(progress_file, key) if progress_file is not None else None
    before = 0.0
    if saved is not None:
        alive, survivors, earlier, before = (
            saved.alive.to(alive.device),
            list(saved.survivors),
            saved.earlier,
            saved.seconds,
        )
        if saved.adv is not None:
            adv = saved.adv.to(x.device)
        if saved.model_stats is not None and hasattr(model.module, "load_stats_state"):
            model.module.load_stats_state(saved.model_stats)
    keep_adv = not deterministic
    t0 = time.perf_counter()

    stats = getattr(model.module, "stats_state", None)  # EP models: settle counts so far

    def checkpoint(r: int, idx: Tensor, batches: int, earlier_now: int) -> None:
        cuda_rng = torch.cuda.get_rng_state(x.device) if x.is_cuda else None
        state = progress.RowProgress(
            key, r, idx.cpu(), batches, alive.cpu(), adv.cpu() if keep_adv else None, list(survivors),
            earlier + earlier_now, torch.get_rng_state(), before + time.perf_counter() - t0, cuda_rng,
            stats() if stats is not None else None,
        )  # fmt: skip
        progress.save(progress_file, state)

    try:
        for r in runs:
            resume = saved is not None and r == saved.restart
            if saved is not None and r < saved.restart:
                continue  # finished before the interruption: its survivors are in ``survivors``
            idx = saved.idx.to(alive.device) if resume else alive.nonzero().flatten()
            if len(idx) == 0:
                survivors.append(0)
                continue
            if cycle is not None:
                cycle(r)
            after = None if progress_file is None else (lambda b, e, r=r, idx=idx: checkpoint(r, idx, b, e))
            earlier += _pgd_restart(
                model, fmodel, attack, x, y, eps, idx, restart_seed(seed, r), spec.batch_size, start, alive, adv,
                witness, skip=saved.batches if resume else 0, rng=(saved.rng, saved.cuda_rng) if resume else None,
                after_batch=after,
            )  # fmt: skip
            survivors.append(int(alive.sum()))
    finally:
        if cycle is not None:
            cycle(None)
    notes = {"steps": steps, "rel_stepsize": rel, "restarts": [runs.start, runs.stop], "survivors": survivors}
    if saved is not None:
        notes["resumed"] = {"restart": saved.restart, "batch": saved.batches, "seconds_before": round(before, 3)}
        if saved.adv is None:
            adv = None  # a deterministic run's earlier adversarials were not saved
    if witness is not None:
        notes["earlier_iterate"] = earlier
    if freeze:
        notes["stop_at_first_break"] = True
    if cycle is not None and len(model.module.grads) > 1:
        notes["restart_grads"] = [model.module.grads[r % len(model.module.grads)].label for r in runs]
    if eot:
        notes["eot"] = eot
    if start is not None:
        notes["warm_start"] = True
    return alive, notes, adv


def _pgd_restart(
    model: Classifier,
    fmodel: Any,
    attack: Any,
    x: Tensor,
    y: Tensor,
    eps: float,
    idx: Tensor,
    seed: int,
    batch_size: int,
    start: Tensor | None,
    alive: Tensor,
    adv: Tensor,
    witness: IterateWitness | None = None,
    *,
    skip: int = 0,
    rng: tuple[Tensor, Tensor | None] | None = None,
    after_batch: Callable[[int, int], None] | None = None,
) -> int:
    """One PGD start on images ``idx``, seeded ``seed``; updates ``alive`` ``(n,)`` and ``adv`` in place.

    ``skip`` batches were done before (resuming): they are skipped and torch's generator set to
    ``rng`` (CPU, device), its state after them. ``after_batch(batches_done, earlier)`` runs
    after every batch. Returns how many images got an earlier iterate (``witness``) instead of
    the last one.
    """
    torch.manual_seed(seed)
    if rng is not None:
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state(rng[1], x.device)
    earlier = 0
    for b, part in enumerate(idx.split(batch_size)):
        if b < skip:
            continue
        if start is not None:
            attack.warm = start[part]
        xb, yb = x[part], y[part]
        hit = found = None
        if witness is not None:
            witness.arm(yb)
        try:
            _, clipped, _ = attack(fmodel, xb, yb, epsilons=float(eps))
        finally:
            if witness is not None:
                hit, found = witness.hit, witness.found
                witness.arm(None)
        clipped = clipped.detach()
        with torch.no_grad():  # the verdict is the model's own prediction on the returned images
            if witness is not None and witness.freeze:  # a hit image's verdict was its hit
                live = ~hit
                ok = live.clone()
                if live.any():
                    ok[live] = model.module(clipped[live]).argmax(1) == yb[live]
                if hit.any():
                    clipped[hit] = found[hit]
            else:
                ok = model.module(clipped).argmax(1) == yb
            retry = ok & hit if hit is not None else torch.zeros_like(ok)
            if retry.any():  # judged again: a noisy model's earlier query may not hold on a new draw
                broken = model.module(found[retry]).argmax(1) != yb[retry]
                take = retry.clone()
                take[retry] = broken
                clipped[take] = found[take]
                ok &= ~take
                earlier += int(take.sum())
        adv[part] = clipped  # survivors keep the last restart's images
        alive[part] = ok
        if after_batch is not None:
            after_batch(b + 1, earlier)
    return earlier


def _art_pgd(model: Classifier, spec: ArtPGDSpec, x: Tensor, y: Tensor, eps: float, seed: int):
    # ART costs seconds to import: loaded only when an art-pgd row runs, as foolbox and pyautoattack are
    from ephw.robustness.art_protocol import run_art_pgd

    return run_art_pgd(
        model, x, y, eps, norm=spec.norm, steps=spec.steps, eps_step=spec.step_size * eps,
        num_random_init=spec.num_random_init, unroll=spec.k, clip=spec.clip, labels=spec.labels,
        batch_size=spec.batch_size, seed=seed,
    )  # fmt: skip


def _autoattack(model: Classifier, spec: AttackSpec, x: Tensor, y: Tensor, eps: float, seed: int, eot: int | None):
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
            aa.apgd.n_restarts = spec.restarts
            aa.apgd_targeted.n_restarts = spec.restarts  # per target class (AutoAttack's 9 most likely)
        if eot is not None:
            aa.apgd.eot_iter = eot
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=spec.batch_size)
    finally:
        logger.removeHandler(handler)
    notes = {"aa_attacks": list(aa.attacks_to_run), "aa_warnings": handler.messages, "eot": aa.apgd.eot_iter}
    return (y_adv == y), notes, x_adv.detach()


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
    correct, advs = [], []
    with torch.no_grad():
        for xb, yb in zip(x.split(spec.batch_size), y.split(spec.batch_size)):
            adv = attack.perturb(xb, yb)
            correct.append(model.module(adv).argmax(1) == yb)
            advs.append(adv)
    return torch.cat(correct), {"n_queries": spec.n_queries}, torch.cat(advs)
