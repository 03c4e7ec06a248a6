"""``ephw robustness run``: models x attacks x eps x seeds -> one JSON line per result, resumable.

Every finished ``(model, attack, eps, seed)`` -- and every clean-accuracy, gradient-probe,
checklist-rerun and corruption result -- is appended to the results file as one JSON line,
written with a single ``O_APPEND`` write and ``fsync`` before the next one starts. A rerun
of the same configuration skips the rows already there, so a killed run (even ``kill -9``)
resumes where it stopped; a torn last line is cut off first. Rows carry a fingerprint of
the settings that produced them: resuming into a file written by a different
configuration of the same model/attack is refused instead of mixing results.

The obfuscation checklist (:mod:`ephw.robustness.checklist`) is recomputed after every
row and stored next to the results (``RESULTS.checklist.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ephw.data import ImageSet, load_dataset
from ephw.data.order import stratified_order
from ephw.errors import ConfigError, InputError
from ephw.outputs import append_line, atomic_write
from ephw.robustness import checklist
from ephw.robustness.attacks import AttackSpec, run_attack
from ephw.robustness.config import RobustnessConfig
from ephw.robustness.corruptions import corrupt_images
from ephw.robustness.models import Classifier, EPClassifier, load_classifier

#: Sub-seed that draws a seed's test subset (keeps it apart from the attacks' draws).
SUBSET_STREAM = 7


@dataclass(frozen=True)
class Task:
    """One row to compute.

    ``kind`` is ``clean``, ``attack``, ``zero-grad`` or ``corruption``; for corruptions
    ``attack`` is the corruption name and ``eps`` the severity; ``check`` marks checklist
    reruns (``double-steps``, ``transfer``).
    """

    kind: str
    model: str
    seed: int
    attack: str | None = None
    eps: float = 0.0
    check: str | None = None

    @property
    def key(self) -> tuple:
        return (self.kind, self.model, self.attack, round(float(self.eps), 9), self.seed, self.check)


def row_key(row: dict[str, Any]) -> tuple:
    return (row["kind"], row["model"], row.get("attack"), round(float(row["eps"]), 9), row["seed"], row.get("check"))


# ------------------------------------------------------------------ the results file
def read_rows(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """All complete rows of a results file; with ``repair``, a torn last line is cut off the file."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with path.open("r+b") as fh:
                fh.truncate(cut)
        data = data[:cut]
    rows = []
    for i, line in enumerate(data.decode().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{i}: not a results line ({exc})") from None
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line with a single checked write, flushed to disk before returning."""
    append_line(path, json.dumps(row, sort_keys=True))


def write_json_atomic(path: Path, text: str) -> None:
    atomic_write(path, text)


def checklist_path(results: Path) -> Path:
    return results.with_name(results.name.removesuffix(".jsonl") + ".checklist.json")


# ------------------------------------------------------------------ planning
def plan(cfg: RobustnessConfig) -> list[Task]:
    """Every row of a run, seed by seed (so early rows already form whole curves)."""
    tasks: list[Task] = []
    pgd = [a for a in cfg.attacks if a.method == "pgd"]
    for i, seed in enumerate(cfg.seeds):
        for m in cfg.models:
            tasks.append(Task("clean", m.name, seed))
            if i == 0 and cfg.checks.zero_grad_images > 0:
                tasks.append(Task("zero-grad", m.name, seed))
            for a in cfg.attacks:
                tasks += [Task("attack", m.name, seed, a.name, e) for e in sorted(a.eps)]
            for a in pgd:
                if cfg.checks.double_steps:
                    tasks.append(Task("attack", m.name, seed, a.name, cfg.check_eps(a), "double-steps"))
                if cfg.checks.transfer_from not in (None, m.name):
                    tasks.append(Task("attack", m.name, seed, a.name, cfg.check_eps(a), "transfer"))
        if cfg.corruptions is not None:
            for name in cfg.corruptions.names:
                for sev in cfg.corruptions.severities:
                    tasks += [Task("corruption", m.name, seed, name, float(sev)) for m in cfg.models]
    return tasks


def subset(data: ImageSet, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seed ``seed``'s ``n`` test images, class-stratified: ``(indices (n,), images (n, C, H, W), labels (n,))``.

    Each seed draws its own stratified order of the whole split (:func:`~ephw.data.order.stratified_order`),
    so every seed's images hold each class in proportion to its share, and the seeds' subsets differ.
    """
    order = stratified_order(data.labels.numpy(), seed * 1_000_003 + SUBSET_STREAM)
    idx = torch.from_numpy(order[: min(n, len(data))])
    x, y = data.batch(idx)
    return idx, x, y


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=dataclasses.asdict)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# ------------------------------------------------------------------ running
class _Runner:
    def __init__(self, cfg: RobustnessConfig, dtype: torch.dtype, models: dict[str, Classifier] | None) -> None:
        self.cfg = cfg
        self.specs = {m.name: m for m in cfg.models}
        self.attacks = {a.name: a for a in cfg.attacks}
        self.models: dict[str, Classifier] = dict(models or {})
        self.dtype = dtype
        self._data: ImageSet | None = None
        self._subsets: dict[int, tuple] = {}
        self._transfer: dict[tuple, torch.Tensor] = {}
        self._corrupted: dict[tuple, torch.Tensor] = {}

    def model(self, name: str) -> Classifier:
        if name not in self.models:
            self.models[name] = load_classifier(self.specs[name], self.dtype, self.cfg.device)
        return self.models[name]

    @property
    def data(self) -> ImageSet:
        if self._data is None:
            name = self.cfg.data or self.model(self.cfg.models[0].name).data
            if name is None:
                raise ConfigError("[run] data is not set and the first model's checkpoint does not name its dataset")
            self._data = load_dataset(name, "test", self.cfg.data_root)
        return self._data

    def images(self, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if seed not in self._subsets:
            idx, x, y = subset(self.data, self.cfg.n, seed)
            self._subsets[seed] = (idx, x.to(self.cfg.device, self.dtype), y.to(self.cfg.device))
        return self._subsets[seed]

    def fingerprint(self, task: Task) -> str:
        extra: Any = None
        if task.kind == "attack":  # the eps is part of the row's key, not of its settings
            extra = {k: v for k, v in dataclasses.asdict(self.attacks[task.attack]).items() if k != "eps"}
        elif task.kind == "corruption":
            extra = self.cfg.corruptions.table
        elif task.kind == "zero-grad":
            extra = self.cfg.checks.zero_grad_images
        if task.check == "transfer":
            extra = [extra, self.specs[self.cfg.checks.transfer_from]]
        return fingerprint(self.specs[task.model], extra, self.cfg.n, self.cfg.data, task.kind)

    def compute(self, task: Task) -> dict[str, Any]:
        clf = self.model(task.model)
        if isinstance(clf.module, EPClassifier):
            clf.module.reset_stats()
        idx, x, y = self.images(task.seed)
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        if task.kind == "clean":
            correct = clf.predict(x) == y
        elif task.kind == "zero-grad":
            return self._zero_grad(clf, task, x, y)
        elif task.kind == "corruption":
            key = (task.attack, int(task.eps), task.seed)
            if key not in self._corrupted:
                self._corrupted = {
                    key: corrupt_images(
                        x, task.attack, int(task.eps), task.seed, self.cfg.corruptions.table, idx.tolist()
                    )
                }
            correct = clf.predict(self._corrupted[key]) == y
            extra = {"severity": int(task.eps), "table": self.cfg.corruptions.table}
        else:
            spec = self.attacks[task.attack]
            extra = {"method": spec.method, "norm": spec.norm}
            if task.check == "transfer":
                adv = self._surrogate_adv(spec, task.eps, task.seed, x, y)
                correct = clf.predict(adv) == y
                extra["surrogate"] = self.cfg.checks.transfer_from
            else:
                steps = 2 * spec.steps if task.check == "double-steps" else None
                out = run_attack(clf, spec, x, y, task.eps, task.seed, steps)
                correct = out.correct
                extra["notes"] = out.notes
        return self._row(clf, task, y, correct.to(y.device), time.perf_counter() - start, extra)

    def _surrogate_adv(self, spec: AttackSpec, eps: float, seed: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        key = (spec.name, eps, seed)
        if key not in self._transfer:
            out = run_attack(self.model(self.cfg.checks.transfer_from), spec, x, y, eps, seed)
            self._transfer[key] = out.adv
        return self._transfer[key]

    def _zero_grad(self, clf: Classifier, task: Task, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        start = time.perf_counter()
        n = min(self.cfg.checks.zero_grad_images, x.shape[0])
        xg = x[:n].clone().requires_grad_()
        loss = F.cross_entropy(clf(xg), y[:n], reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
        zero = grad.flatten(1).abs().amax(1) == 0
        row = self._row(clf, task, y[:n], torch.ones(n, dtype=torch.bool), time.perf_counter() - start, {})
        row.update(
            zero_grad_fraction=round(float(zero.float().mean()), 6),
            grad_norm_median=float(grad.flatten(1).norm(dim=1).median()),
        )
        for k in ("correct", "accuracy", "per_class_correct"):
            row.pop(k)
        return row

    def _row(
        self, clf: Classifier, task: Task, y: torch.Tensor, correct: torch.Tensor, seconds: float, extra: dict
    ) -> dict[str, Any]:
        classes = len(self.data.classes)
        row: dict[str, Any] = {
            "kind": task.kind,
            "model": task.model,
            "model_kind": clf.kind,
            "attack": task.attack,
            "eps": float(task.eps),
            "seed": task.seed,
            "check": task.check,
            "data": self.data.name,
            "n": int(y.shape[0]),
            "classes": classes,
            "correct": int(correct.sum()),
            "accuracy": round(float(correct.float().mean()), 6),
            "per_class_total": torch.bincount(y.cpu(), minlength=classes).tolist(),
            "per_class_correct": torch.bincount(y.cpu()[correct.cpu()], minlength=classes).tolist(),
            "seconds": round(seconds, 3),
            "fingerprint": self.fingerprint(task),
            "time": round(time.time(), 3),
            **extra,
        }
        if isinstance(clf.module, EPClassifier):
            ep = clf.module
            row["ep"] = {
                "backend": ep.backend.name,
                "grad": ep.grad.label,
                **ep.settle_stats.as_dict(),
                "adjoint_solves": len(ep.adjoint_stats.converged),
                "adjoint_unconverged": ep.adjoint_stats.converged.count(False),
            }
        return row


@dataclass
class RunSummary:
    """What a call of :func:`run_robustness` did."""

    results: Path
    checklist: Path
    total: int
    skipped: int
    computed: int


def run_robustness(
    cfg: RobustnessConfig,
    out: str | Path,
    progress: bool = True,
    limit: int | None = None,
    dtype: torch.dtype = torch.float32,
    models: dict[str, Classifier] | None = None,
) -> RunSummary:
    """Compute every missing row of ``cfg`` into the JSON-lines file ``out``.

    Args:
        limit: stop after computing this many rows (a partial run; rerun to continue).
        models: ready classifiers by model name, used instead of loading those models'
            checkpoints (in-memory models; their ``ModelSpec`` still names them in the
            config and enters the rows' fingerprints).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    unknown = set(models or {}) - {m.name for m in cfg.models}
    if unknown:
        raise ConfigError(f"ready models {sorted(unknown)} are not in the config's [[models]]")
    runner = _Runner(cfg, dtype, models)
    done = {row_key(r): r for r in read_rows(out, repair=True)}
    tasks = plan(cfg)
    for t in tasks:  # refuse to mix configurations under the same names
        row = done.get(t.key)
        if row is not None and row.get("fingerprint") != runner.fingerprint(t):
            raise ConfigError(
                f"{out} already holds a row for {t.model} / {t.attack or t.kind} / eps {t.eps:g} / seed {t.seed} "
                "made with different settings; use another --out (or rename the model/attack)"
            )
    todo = [t for t in tasks if t.key not in done]
    for name in dict.fromkeys(t.model for t in todo):  # a missing or broken checkpoint fails now, not hours in
        runner.model(name)
    computed = 0
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), disable=not progress, unit="row", dynamic_ncols=True)
    rows = list(done.values())
    try:
        for task in todo:
            if limit is not None and computed >= limit:
                break
            bar.set_description(f"{task.model} {task.attack or task.kind} eps={task.eps:g} seed={task.seed}")
            row = runner.compute(task)
            append_row(out, row)
            rows.append(row)
            computed += 1
            write_json_atomic(checklist_path(out), checklist.dumps(checklist.evaluate(rows)))
            bar.update(1)
    finally:
        bar.close()
    write_json_atomic(checklist_path(out), checklist.dumps(checklist.evaluate(rows)))
    return RunSummary(out, checklist_path(out), len(tasks), len(tasks) - len(todo), computed)
