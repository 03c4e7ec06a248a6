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

import contextlib
import dataclasses
import hashlib
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ephw import distributed
from ephw.checkpoint import earlier_meta_versions, file_sha256
from ephw.data import ImageSet, load_dataset
from ephw.data.order import stratified_order
from ephw.errors import CheckpointError, ConfigError, EphwError, InputError, OutputError
from ephw.outputs import append_line, atomic_write
from ephw.robustness import checklist, shards, survival
from ephw.robustness.attacks import STEPS_FOR_FULL_TRAVEL, AttackSpec, run_attack
from ephw.robustness.config import (
    RobustnessConfig,
    effort_check,
    escalation_needed,
    parse_effort,
    parse_unroll,
    unroll_check,
)
from ephw.robustness.corruptions import corrupt_images
from ephw.robustness.gradients import parse_grad, parse_grads
from ephw.robustness.models import Classifier, EPClassifier, checkpoint_format, load_classifier
from ephw.robustness.progress import discard as discard_progress

#: Sub-seed that draws a seed's test subset (keeps it apart from the attacks' draws).
SUBSET_STREAM = 7


@dataclass(frozen=True)
class Task:
    """One row to compute.

    ``kind`` is ``clean``, ``attack``, ``zero-grad`` or ``corruption``; for corruptions
    ``attack`` is the corruption name and ``eps`` the severity; ``check`` marks checklist
    reruns and cascade stages: ``double-steps``, ``double-restarts``, ``transfer:SURROGATE``,
    ``warm:SURROGATE``, ``grad:MODE``, ``eot:N``, ``cascade``.
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
#: Fields every results row has (a JSON line without them is not a row of this harness).
ROW_FIELDS = ("kind", "model", "eps", "seed")


def read_rows(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """All complete rows of a results file; with ``repair``, a torn last line is cut off the file.

    Raises :class:`InputError` (one line, with the line number) for a line that is not JSON
    or not a results row.
    """
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a results file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with path.open("r+b") as fh:
                fh.truncate(cut)
        data = data[:cut]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a results file (binary content)") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{i}: not a results line ({exc})") from None
        if not isinstance(row, dict) or any(k not in row for k in ROW_FIELDS):
            raise InputError(f"{path}:{i}: not a results row (a JSON object with {', '.join(ROW_FIELDS)} expected)")
        try:
            row_key(row)
        except (TypeError, ValueError):
            raise InputError(f"{path}:{i}: not a results row (eps and seed must be numbers)") from None
        rows.append(row)
    return rows


def dedupe(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows with each key once (the first kept) and a description of every dropped duplicate."""
    seen: set[tuple] = set()
    kept, dropped = [], []
    for r in rows:
        k = row_key(r)
        if k in seen:
            dropped.append(
                f"{r['model']} / {r.get('attack') or r['kind']} / eps {float(r['eps']):g} / seed {r['seed']}"
                + (f" / {r['check']}" if r.get("check") else "")
            )
            continue
        seen.add(k)
        kept.append(r)
    return kept, dropped


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line with a single checked write, flushed to disk before returning."""
    append_line(path, json.dumps(row, sort_keys=True))


def write_json_atomic(path: Path, text: str) -> None:
    atomic_write(path, text)


def progress_dir(results: Path) -> Path:
    """The folder beside ``results`` where unfinished PGD rows keep their progress."""
    return results.with_name(f"{results.stem}.progress")


def checklist_path(results: Path) -> Path:
    return results.with_name(results.name.removesuffix(".jsonl") + ".checklist.json")


# ------------------------------------------------------------------ planning
def plan(
    cfg: RobustnessConfig, stochastic: frozenset[str] = frozenset(), ep_models: frozenset[str] | None = None
) -> list[Task]:
    """Every row of a run, seed by seed (so early rows already form whole curves).

    Per seed and model: clean, the gradient probe (first seed), the standalone attacks over
    their grids, their checklist reruns (doubled steps / restarts on survivors, transfer and
    warm-started transfer from each surrogate, gradient-mode and EOT sweeps), then the
    cascade attacks, each on the images every earlier row left standing. A model's rows at the
    checked eps (``check_eps``) come before its rows at other eps, so a run stopped part-way
    already holds the headline with its checks; rows at one eps keep their order, and a
    cascade reads only rows at its own eps. ``stochastic``
    names the models whose predictions are random (EOT sweeps run only for them);
    ``ep_models`` the energy models (gradient-mode sweeps; default: EP checkpoints).
    """
    if ep_models is None:
        ep_models = frozenset(m.name for m in cfg.models if _is_ep_spec(m))
    tasks: list[Task] = []
    names = [m.name for m in cfg.models]
    main = [a for a in cfg.attacks if not a.cascade]
    rerun = [a for a in main if a.method == "pgd" and (not cfg.checks.check_eps or a.name in cfg.checks.check_eps)]
    checked = {(a.norm, e) for a in rerun for e in cfg.check_eps(a)}
    norms = {a.name: a.norm for a in cfg.attacks}
    for i, seed in enumerate(cfg.seeds):
        for m in cfg.models:
            tasks.append(Task("clean", m.name, seed))
            if i == 0 and cfg.checks.zero_grad_images > 0:
                tasks.append(Task("zero-grad", m.name, seed))
            first = len(tasks)
            for a in main:
                tasks += [Task("attack", m.name, seed, a.name, e) for e in sorted(a.eps)]
            effort = cfg.checks.seeds is None or seed in cfg.checks.seeds  # budgeted reruns
            for a in rerun:  # reruns only for the attacks check_eps names (when it names any)
                for e in cfg.check_eps(a):
                    if effort:
                        tasks += [Task("attack", m.name, seed, a.name, e, c) for c in cfg.checks.effort_checks()]
                    for sur in cfg.checks.surrogates("transfer_from", m.name, names):
                        tasks.append(Task("attack", m.name, seed, a.name, e, f"transfer:{sur}"))
                    for sur in cfg.checks.surrogates("warm_start_from", m.name, names):
                        tasks.append(Task("attack", m.name, seed, a.name, e, f"warm:{sur}"))
                if not effort or (cfg.checks.sweep_eps and a.name not in cfg.checks.sweep_eps):
                    continue  # sweeps only for the attacks sweep_eps names (when it names any)
                e = cfg.sweep_eps(a)
                if m.name in ep_models:
                    tasks += [Task("attack", m.name, seed, a.name, e, f"grad:{g}") for g in cfg.checks.grad_sweep]
                if m.name in stochastic:
                    tasks += [Task("attack", m.name, seed, a.name, e, f"eot:{k}") for k in cfg.checks.eot_sweep]
            for a in cfg.attacks:
                if a.cascade:
                    tasks += [Task("attack", m.name, seed, a.name, e, "cascade") for e in sorted(a.eps)]
            if effort and m.name in ep_models:  # after every cascade row: adding them changes none of those
                tasks += _cascade_sweeps(cfg, m.name, seed, rerun)
            tasks[first:] = sorted(tasks[first:], key=lambda t: (norms[t.attack], t.eps) not in checked)
        if cfg.corruptions is not None:
            for name in cfg.corruptions.names:
                for sev in cfg.corruptions.severities:
                    tasks += [Task("corruption", m.name, seed, name, float(sev)) for m in cfg.models]
    return tasks


def _cascade_sweeps(cfg: RobustnessConfig, model: str, seed: int, rerun: list[AttackSpec]) -> list[Task]:
    """An EP model's reruns of its white-box cascade attacks (``checks.cascade_sweep``) with other gradients.

    First each ``grad_sweep`` mode at the sweep eps (``grad:MODE``; a ``bptt:K`` whose K is an
    unroll level is left to the escalation), then the unroll escalation at each check eps
    (``unroll:K``, level by level, each level's attacks in config order). Each runs on the
    images every row before it left standing.
    """
    unroll = set(cfg.checks.unroll)
    out: dict[tuple, Task] = {}  # two PGD attacks may share a norm and eps: one rerun each
    for a in rerun:
        if cfg.checks.sweep_eps and a.name not in cfg.checks.sweep_eps:
            continue
        e = cfg.sweep_eps(a)
        for g in cfg.checks.grad_sweep:
            mode = parse_grad(g)
            if mode.kind == "bptt" and mode.start == "zero" and mode.k in unroll:
                continue
            for c in cfg.cascade_sweep_attacks(a.norm, e):
                t = Task("attack", model, seed, c.name, e, f"grad:{g}")
                out.setdefault(t.key, t)
    levels = sorted({(a.norm, e) for a in rerun for e in cfg.check_eps(a)}, key=lambda ne: (ne[0], ne[1]))
    for norm, e in levels:
        for k in cfg.checks.unroll:
            for c in cfg.cascade_sweep_attacks(norm, e):
                t = Task("attack", model, seed, c.name, e, unroll_check(k))
                out.setdefault(t.key, t)
    return list(out.values())


def on_survivors(task: Task, attacks: dict[str, AttackSpec]) -> bool:
    """Whether ``task``'s row attacks only the images every earlier row of its model, norm, eps and
    seed left standing: a cascade stage, an unroll level, or a cascade attack's gradient-sweep rerun."""
    check = task.check or ""
    if check == "cascade" or parse_unroll(check) is not None:
        return True
    return check.startswith("grad:") and task.attack in attacks and attacks[task.attack].cascade


def pending_key(model: str, norm: str, eps: float, seed: int) -> tuple[str, str, float, int]:
    """The key of :func:`pending_attacks`' map: ``eps`` rounded to 9 digits, so a row's and a plan's eps meet."""
    return (model, norm, round(float(eps), 9), int(seed))


def pending_attacks(cfg: RobustnessConfig, rows: list[dict[str, Any]]) -> dict[tuple[str, str, float, int], int]:
    """``(model, norm, eps rounded to 9 digits, seed) -> `` attack rows of ``cfg``'s plan not in ``rows`` yet.

    What :func:`ephw.robustness.report.write_report` needs to tell a finished worst case from an
    upper bound. EOT rows count only for models ``rows`` already found random.
    """
    stochastic = frozenset(r["model"] for r in rows if r.get("kind") == "clean" and r.get("stochastic"))
    done = {row_key(r) for r in rows}
    norms = {a.name: a.norm for a in cfg.attacks}
    pending: dict[tuple[str, str, float, int], int] = defaultdict(int)
    for t in plan(cfg, stochastic):
        if t.kind == "attack" and t.key not in done:
            pending[pending_key(t.model, norms[t.attack], t.eps, t.seed)] += 1
    return dict(pending)


def _is_ep_spec(spec: Any) -> bool:
    """Whether a model spec names an EP checkpoint (``bundled`` or a file of the EP format)."""
    if spec.path == "bundled":
        return True
    try:
        from ephw.checkpoint import FORMAT

        return checkpoint_format(spec.file) == FORMAT
    except EphwError:
        return False


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


def module_sha256(module: torch.nn.Module) -> str:
    """sha256 of an in-memory model's parameters and buffers (names, shapes, dtypes, values)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ------------------------------------------------------------------ running
class _Runner:
    def __init__(self, cfg: RobustnessConfig, dtype: torch.dtype, models: dict[str, Classifier] | None) -> None:
        self.cfg = cfg
        self.specs = {m.name: m for m in cfg.models}
        self.attacks = {a.name: a for a in cfg.attacks}
        self.models: dict[str, Classifier] = dict(models or {})
        self.ready = set(self.models)
        self.dtype = dtype
        self._data: ImageSet | None = None
        self._subsets: dict[int, tuple] = {}
        self._surrogate: dict[tuple, torch.Tensor] = {}
        self._corrupted: dict[tuple, torch.Tensor] = {}
        self._hashes: dict[str, str] = {}
        self._aliases: dict[str, set[str]] = {}
        self.stochastic: set[str] = set()
        names = [m.name for m in cfg.models]
        self.surrogates = {  # models whose full-strength adversarials other rows replay
            s for n in names for w in ("transfer_from", "warm_start_from") for s in cfg.checks.surrogates(w, n, names)
        }
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.order: dict[tuple, int] = {}
        self.progress_dir: Path | None = None  # where PGD rows save mid-row progress (resumable)

    def progress_file(self, task: Task) -> Path | None:
        """The mid-row progress file of ``task`` (:mod:`ephw.robustness.progress`), if rows are resumable."""
        if self.progress_dir is None:
            return None
        return self.progress_dir / f"{fingerprint(task.key, self.fingerprint(task))[:24]}.pt"

    def model(self, name: str) -> Classifier:
        if name not in self.models:
            self.models[name] = load_classifier(self.specs[name], self.dtype, self.cfg.device)
        return self.models[name]

    def weights_hash(self, name: str) -> str:
        """sha256 of the model's checkpoint contents (or of an in-memory model's tensors)."""
        if name not in self._hashes:
            if name in self.ready:
                self._hashes[name] = module_sha256(self.models[name].module)
            else:
                spec = self.specs[name]
                if not spec.file.is_file():
                    raise CheckpointError(f"checkpoint not found: {spec.file}")
                self._hashes[name] = file_sha256(spec.file)
        return self._hashes[name]

    def same_weights(self, name: str) -> set[str]:
        """:meth:`weights_hash` and the hashes of the checkpoint's earlier meta-only versions:
        rows made under any of them hold for these weights (``ephw.checkpoint.update_meta``)."""
        if name not in self._aliases:
            known = set() if name in self.ready else earlier_meta_versions(self.specs[name].file)
            self._aliases[name] = {self.weights_hash(name), *known}
        return self._aliases[name]

    def matches(self, row: dict[str, Any], task: Task) -> bool:
        """Whether ``row`` was made by ``task``'s settings on these weights (under any of their hashes)."""
        surrogate = self._surrogate_of(task)
        names = [task.model, *([surrogate] if surrogate else [])]
        for attacks in self._attack_lists(task):
            for hashes in itertools.product(*(sorted(self.same_weights(n)) for n in names)):
                if row.get("fingerprint") == self.fingerprint(task, dict(zip(names, hashes)), attacks):
                    return True
        return False

    def _attack_lists(self, task: Task) -> list[tuple[AttackSpec, ...]]:
        """The attack lists a row of ``task`` may have been fingerprinted with: the config's, and for a
        cascade stage also the config's without cascade attacks appended after it (which run after it,
        so a row made before they were added still holds)."""
        attacks = tuple(self.cfg.attacks)
        lists = [attacks]
        if task.check == "cascade":
            own = next(i for i, a in enumerate(attacks) if a.name == task.attack)
            while len(lists[-1]) > own + 1 and lists[-1][-1].cascade:
                lists.append(lists[-1][:-1])
        return lists

    @staticmethod
    def _surrogate_of(task: Task) -> str | None:
        if task.check and task.check.split(":")[0] in ("transfer", "warm"):
            return task.check.split(":", 1)[1]
        return None

    @property
    def data(self) -> ImageSet:
        if self._data is None:
            name = self.cfg.data or self.model(self.cfg.models[0].name).data
            if name is None:
                raise ConfigError("[run] data is not set and the first model's checkpoint does not name its dataset")
            data = load_dataset(name, "test", self.cfg.data_root)
            if self.cfg.n > len(data):  # as `settle --n`: a silently smaller sample would mislabel every row
                raise ConfigError(
                    f"[run] n = {self.cfg.n} but the {name} test split has {len(data)} images: ask for at most that"
                )
            self._data = data
        return self._data

    def images(self, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if seed not in self._subsets:
            idx, x, y = subset(self.data, self.cfg.n, seed)
            self._subsets[seed] = (idx, x.to(self.cfg.device, self.dtype), y.to(self.cfg.device))
        return self._subsets[seed]

    def detect_randomness(self, name: str) -> bool:
        """AutoAttack's test: predict the same batch twice; a model whose logits differ is stochastic."""
        _, x, _ = self.images(self.cfg.seeds[0])
        clf = self.model(name)
        with torch.no_grad():
            a, b = clf(x[:32]), clf(x[:32])
        random = not torch.equal(a, b)
        if random:
            self.stochastic.add(name)
        return random

    def fingerprint(
        self, task: Task, hashes: dict[str, str] | None = None, attacks: Sequence[AttackSpec] | None = None
    ) -> str:
        """The row key's settings digest; ``hashes`` overrides :meth:`weights_hash` per model name,
        ``attacks`` the config's attack list (a row on survivors depends on the attacks before it)."""
        hashes = hashes or {}
        attacks = self.cfg.attacks if attacks is None else attacks

        def weights(name: str) -> str:
            return hashes.get(name) or self.weights_hash(name)

        extra: Any = None
        if task.kind == "attack":  # the eps is part of the row's key, not of its settings
            spec = self.attacks[task.attack]
            extra = {k: v for k, v in dataclasses.asdict(spec).items() if k != "eps"}
            if spec.method == "pgd" and spec.rel_stepsize is None and spec.steps > STEPS_FOR_FULL_TRAVEL:
                extra["step"] = spec.step_size  # this default changed: rows made before it must not match
        elif task.kind == "corruption":
            extra = self.cfg.corruptions.table
        elif task.kind == "zero-grad":
            extra = self.cfg.checks.zero_grad_images
        surrogate = self._surrogate_of(task)
        if surrogate is not None:
            extra = [extra, self.specs[surrogate], weights(surrogate)]
        elif on_survivors(task, self.attacks):  # a row on the survivors depends on every attack before it
            checks = dataclasses.asdict(self.cfg.checks)
            escalates = checks["escalate"] and (checks["double_steps"] or checks["double_restarts"])
            if task.check == "cascade":  # their rows come after every cascade row: no cascade row depends on them
                del checks["unroll"], checks["cascade_sweep"]
            else:
                escalates = escalates or len(checks["unroll"]) > 2  # escalate_drop decides unroll levels 3, ...
            if not escalates:  # fields added after rows were made: where nothing escalates they change nothing
                del checks["escalate"], checks["escalate_drop"]
            checks["seeds"] = self.cfg.checks.seeds is None or task.seed in self.cfg.checks.seeds  # its seed's reruns
            extra = [extra, [dataclasses.asdict(a) for a in attacks], checks]
        return fingerprint(
            self.specs[task.model],
            weights(task.model),
            extra,
            self.cfg.n,
            self.cfg.data,
            self.cfg.eval_draws,
            task.kind,
        )

    # ------------------------------------------------------------ verdicts
    def judge(self, clf: Classifier, adv: torch.Tensor, y: torch.Tensor, first: torch.Tensor) -> dict[str, Any]:
        """Per-image verdict on returned images: the attack's own for a deterministic model; on
        ``eval_draws`` fresh draws for a stochastic one (survives = correct on every draw)."""
        if clf.name not in self.stochastic:
            return {"survived": first}
        draws = torch.stack([clf.predict(adv) == y for _ in range(self.cfg.eval_draws)])
        return {
            "survived": draws.all(0),
            "accuracy_mean_draws": round(float(draws.float().mean()), 6),
            "accuracy_worst_draw": round(float(draws.all(0).float().mean()), 6),
            "draws": self.cfg.eval_draws,
        }

    def standing(self, task: Task) -> torch.Tensor:
        """``(n,)`` bool: images left standing by every earlier row of this model, norm, eps and seed."""
        spec = self.attacks[task.attack]
        me = self.order[task.key]
        records = []
        for key, row in self.rows.items():
            if key[1] != task.model or key[4] != task.seed or self.order.get(key, me) >= me:
                continue
            if row["kind"] == "clean" or (
                row["kind"] == "attack"
                and row.get("norm") == spec.norm
                and round(float(row["eps"]), 9) == key[3]
                and key[3] == round(float(task.eps), 9)
            ):
                if row.get("survival"):
                    records.append(row["survival"])
        return survival.survivors(records, self.images(task.seed)[2].shape[0])

    def effort_row(self, task: Task, what: str, factor: int) -> dict[str, Any]:
        """The row of ``task``'s attack at ``factor`` x its steps or restarts (1: the base row)."""
        check = effort_check(what, factor) if factor > 1 else None
        key = Task("attack", task.model, task.seed, task.attack, task.eps, check).key
        if key not in self.rows:
            what = f"{check} row" if check else "base row"
            raise ConfigError(f"no {what} for {task.model} / {task.attack} / eps {task.eps:g} / seed {task.seed}")
        return self.rows[key]

    def compute(self, task: Task) -> dict[str, Any]:
        clf = self.model(task.model)
        if isinstance(clf.module, EPClassifier):
            clf.module.reset_stats()
        idx, x, y = self.images(task.seed)
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        attacked = None
        if task.kind == "clean":
            first = clf.predict(x) == y
            verdict = self.judge(clf, x, y, first)
            extra = {k: v for k, v in verdict.items() if k != "survived"}
            extra["stochastic"] = clf.name in self.stochastic
            correct = verdict["survived"]
            if clf.name in self.stochastic:
                correct = correct  # survival: correct on every draw; accuracy_mean_draws: the expectation
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
            correct, attacked, extra = self._attack(clf, task, x, y)
            start -= extra.get("notes", {}).get("resumed", {}).get("seconds_before", 0.0)  # time before a kill counts
        return self._row(clf, task, y, correct.to(y.device), time.perf_counter() - start, extra, attacked)

    def _attack(self, clf: Classifier, task: Task, x: torch.Tensor, y: torch.Tensor):
        spec = self.attacks[task.attack]
        extra: dict[str, Any] = {
            "method": spec.method,
            "norm": spec.norm,
            "white_box": spec.white_box,
            "black_box": spec.black_box,
        }
        check = task.check or ""
        kind, _, arg = check.partition(":")
        kw: dict[str, Any] = {}
        attacked = torch.ones(len(y), dtype=torch.bool)
        effort = parse_effort(check)
        skipped = None
        if effort:  # on the survivors of the level below only
            what, factor = effort
            below = self.effort_row(task, what, factor // 2)
            attacked = survival.alive(below["survival"])
            if factor > 2:  # escalate only while the doubling below still found more
                drop = (self.effort_row(task, what, factor // 4)["correct"] - below["correct"]) / len(y)
                if not escalation_needed(drop, self.cfg.checks.escalate_drop):
                    skipped = (
                        f"not needed: {factor // 2}x {what} broke {100 * drop:.1f} points more than "
                        f"{max(factor // 4, 1)}x (< {100 * self.cfg.checks.escalate_drop:.1f})"
                    )
            if what == "steps":
                kw["steps"] = factor * spec.steps
            else:
                kw["restarts"] = range(factor // 2 * spec.restarts, factor * spec.restarts)
        elif on_survivors(task, self.attacks):  # a cascade stage, an unroll level, a cascade attack's sweep
            attacked = self.standing(task)
            if kind != "cascade":
                extra["on_survivors"] = True
            if kind == "unroll":
                skipped = self.unroll_skip(task, len(y))
        elif kind == "transfer":
            adv = self.surrogate_adv(arg, spec, task.eps, task.seed, x, y)
            first = clf.predict(adv) == y
            verdict = self.judge(clf, adv, y, first)
            extra.update({k: v for k, v in verdict.items() if k != "survived"}, surrogate=arg)
            return verdict["survived"], None, extra
        elif kind == "warm":
            kw["start"] = self.surrogate_adv(arg, spec, task.eps, task.seed, x, y)
            extra["surrogate"] = arg
        elif kind == "eot":
            kw["eot"] = int(arg)
        if kind in ("grad", "eot"):  # sweeps compare modes / EOT counts at one start each
            kw["restarts"] = range(1)
        survived = torch.zeros(len(y), dtype=torch.bool)
        if skipped:  # the level below's survivors stand; nothing attacked, nothing broken
            survived, attacked = attacked.clone(), torch.zeros(len(y), dtype=torch.bool)
            extra["skipped"] = skipped
        sel = attacked.nonzero().flatten()
        notes: dict[str, Any] = {"attacked": int(len(sel))}
        if len(sel):
            if "start" in kw:
                kw["start"] = kw["start"][sel.to(x.device)]
            # a surrogate runs its PGD in full; any other deterministic model stops at each image's first break
            kw["deterministic"] = clf.name not in self.stochastic and clf.name not in self.surrogates
            with _grad_mode(clf, _task_grad(task)):
                out = run_attack(
                    clf, spec, x[sel], y[sel], task.eps, task.seed, progress=self.progress_file(task), **kw
                )
                verdict = self.judge(clf, out.adv, y[sel], out.correct.to(y.device))
            survived[sel] = verdict.pop("survived").cpu()
            notes.update(out.notes)
            if not check and out.adv is not None and not kw["deterministic"]:  # a main row's serve as a surrogate's
                self._surrogate[(task.model, spec.name, float(task.eps), task.seed)] = out.adv
            extra.update(verdict)
        extra["notes"] = notes
        return survived, attacked, extra

    def unroll_rows(self, task: Task, k: int) -> list[dict[str, Any]]:
        """The rows of level ``k`` of ``task``'s unroll escalation (one per cascade-sweep attack at its eps)."""
        spec = self.attacks[task.attack]
        rows = []
        for a in self.cfg.cascade_sweep_attacks(spec.norm, task.eps):
            key = Task("attack", task.model, task.seed, a.name, task.eps, unroll_check(k)).key
            if key not in self.rows:
                raise ConfigError(
                    f"no {unroll_check(k)} row for {task.model} / {a.name} / eps {task.eps:g} / seed {task.seed}"
                )
            rows.append(self.rows[key])
        return rows

    def unroll_skip(self, task: Task, n: int) -> str | None:
        """Why ``task``'s unroll level is not needed, or ``None`` when it runs: levels 1 and 2 always run,
        a further one only while the level below broke ``escalate_drop`` more (:func:`escalation_needed`)."""
        levels = list(self.cfg.checks.unroll)
        i = levels.index(parse_unroll(task.check))
        if i < 2:
            return None
        broke = sum(int(survival.broken(r["survival"]).sum()) for r in self.unroll_rows(task, levels[i - 1])) / n
        if escalation_needed(broke, self.cfg.checks.escalate_drop):
            return None
        return (
            f"not needed: K={levels[i - 1]} broke {100 * broke:.1f} points more than K={levels[i - 2]} and every "
            f"row before it (< {100 * self.cfg.checks.escalate_drop:.1f})"
        )

    def surrogate_adv(
        self, name: str, spec: AttackSpec, eps: float, seed: int, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """The surrogate's own adversarials of ``spec`` at ``eps`` (kept in memory, recomputed on resume)."""
        key = (name, spec.name, float(eps), seed)
        if key not in self._surrogate:
            self._surrogate[key] = run_attack(self.model(name), spec, x, y, eps, seed).adv
        return self._surrogate[key]

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
        for k in ("correct", "accuracy", "per_class_correct", "survival"):
            row.pop(k)
        return row

    def _row(
        self,
        clf: Classifier,
        task: Task,
        y: torch.Tensor,
        correct: torch.Tensor,
        seconds: float,
        extra: dict,
        attacked: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        classes = len(self.data.classes)
        correct = correct.cpu().bool()
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
            "survival": survival.encode(correct, attacked),
            "per_class_total": torch.bincount(y.cpu(), minlength=classes).tolist(),
            "per_class_correct": torch.bincount(y.cpu()[correct], minlength=classes).tolist(),
            "seconds": round(seconds, 3),
            "weights_sha256": self.weights_hash(task.model),
            "fingerprint": self.fingerprint(task),
            "time": round(time.time(), 3),
            **extra,
        }
        if isinstance(clf.module, EPClassifier):
            ep = clf.module
            row["ep"] = {
                "backend": ep.backend.name,
                # art-pgd rows: the published protocol's own unroll (ephw.robustness.art_protocol)
                "grad": _task_grad(task)
                or extra.get("notes", {}).get("grad")
                # AutoAttack differentiates the first mode only (PGD cycles its starts through them all)
                or (ep.grads[0].label if extra.get("method") in ("autoattack", "square") else ep.grad_label),
                **ep.settle_stats.as_dict(),
                "adjoint_solves": len(ep.adjoint_stats.converged),
                "adjoint_unconverged": ep.adjoint_stats.converged.count(False),
            }
        return row


def _task_grad(task: Task) -> str | None:
    """The gradient mode a check row attacks an EP model with (``grad:MODE``, ``unroll:K`` -> ``bptt:K``);
    ``None``: the model's own."""
    k = parse_unroll(task.check)
    if k is not None:
        return f"bptt:{k}"
    if (task.check or "").startswith("grad:"):
        return task.check[5:]
    return None


@contextlib.contextmanager
def _grad_mode(clf: Classifier, mode: str | None):
    """Temporarily attack an EP model with another gradient mode (the unroll-length sweep)."""
    if mode is None or not isinstance(clf.module, EPClassifier):
        yield
        return
    ep = clf.module
    saved = ep.grads
    ep.grads = parse_grads(mode)
    ep.use_restart(None)
    try:
        yield
    finally:
        ep.grads = saved
        ep.use_restart(None)


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
    shard: shards.Shard | None = None,
    first: Sequence[str] = (),
) -> RunSummary:
    """Compute every missing row of ``cfg`` into the JSON-lines file ``out``.

    Args:
        limit: stop after computing this many rows (a partial run; rerun to continue).
        shard: compute only this shard's rows, into its own file beside ``out``
            (:mod:`ephw.robustness.shards`; under torchrun each rank is a shard by itself).
        models: ready classifiers by model name, used instead of loading those models'
            checkpoints (in-memory models; their ``ModelSpec`` still names them in the
            config and enters the rows' fingerprints).
        first: model names whose missing rows run before the others', in this order (each
            model's rows keep their plan order; names not in ``cfg`` are ignored).
    """
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder: give a results file (e.g. {out / 'results.jsonl'})")
    unknown = set(models or {}) - {m.name for m in cfg.models}
    if unknown:
        raise ConfigError(f"ready models {sorted(unknown)} are not in the config's [[models]]")
    part = shards.current(shard)
    target = out if part is None else shards.shard_file(out, part)
    with shards.lock_rows(out, part):  # an unsharded run and the shards of the same results exclude each other
        summary = _run_locked(cfg, out, progress, limit, dtype, models, part, target, tuple(first))
    if distributed.world().size > 1:  # torchrun: once every rank is done, rank 0 writes the merged checklist
        distributed.barrier()
        if distributed.is_main():
            rows = shards.read_merged(out, read_rows, dedupe)
            write_json_atomic(checklist_path(out), checklist.dumps(checklist.evaluate(rows)))
        total, skipped, computed = distributed.all_sum([summary.total, summary.skipped, summary.computed])
        summary = RunSummary(out, checklist_path(out), int(total), int(skipped), int(computed))
    return summary


def _run_locked(
    cfg: RobustnessConfig,
    out: Path,
    progress: bool,
    limit: int | None,
    dtype: torch.dtype,
    models: dict[str, Classifier] | None,
    part: shards.Shard | None = None,
    target: Path | None = None,
    first: tuple[str, ...] = (),
) -> RunSummary:
    target = target or out  # where this process appends: ``out``, or its shard's file
    runner = _Runner(cfg, dtype, models)
    runner.progress_dir = progress_dir(target)
    rows_read = shards.read_merged(out, read_rows, dedupe, repair=target)  # rows of every shard
    done = {row_key(r): r for r in rows_read}
    for m in cfg.models:  # a missing or broken checkpoint fails now, not hours in
        runner.model(m.name)
        runner.weights_hash(m.name)
    runner.data  # noqa: B018 -- loads the split: an n larger than it fails now, too
    for r in rows_read:  # randomness found before (or now, below) decides the EOT rows
        if r.get("kind") == "clean" and r.get("stochastic"):
            runner.stochastic.add(r["model"])
    for m in cfg.models:
        if m.name not in runner.stochastic:
            runner.detect_randomness(m.name)
    ep_models = frozenset(n for n, c in runner.models.items() if isinstance(c.module, EPClassifier))
    tasks = plan(cfg, frozenset(runner.stochastic), ep_models)
    runner.order = {t.key: i for i, t in enumerate(tasks)}
    for t in tasks:  # refuse to mix configurations (or weights) under the same names
        row = done.get(t.key)
        if row is not None and not runner.matches(row, t):
            why = (
                "different weights"
                if row.get("weights_sha256") not in (None, *runner.same_weights(t.model))
                else ("different settings")
            )
            raise ConfigError(
                f"{out} already holds a row for {t.model} / {t.attack or t.kind} / eps {t.eps:g} / seed {t.seed} "
                f"made with {why}; use another --out (or rename the model/attack)"
            )
    runner.rows = {k: r for k, r in done.items() if k in runner.order}
    tasks = shards.select(tasks, part, cfg, ep_models)  # this shard's groups (all without sharding)
    todo = [t for t in tasks if t.key not in done]
    rank = {name: i for i, name in enumerate(first)}
    todo.sort(key=lambda t: rank.get(t.model, len(first)))  # stable: a model's rows keep their plan order
    computed = 0
    quiet = not (progress and distributed.is_main())
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), disable=quiet, unit="row", dynamic_ncols=True)
    rows = list(done.values())
    try:
        for task in todo:
            if limit is not None and computed >= limit:
                break
            what = task.attack or task.kind
            what += f" {task.check}" if task.check else ""
            bar.set_description(f"{task.model} {what} eps={task.eps:g} seed={task.seed}")
            row = runner.compute(task)
            append_row(target, row)
            discard_progress(runner.progress_file(task))
            rows.append(row)
            runner.rows[task.key] = row
            computed += 1
            write_json_atomic(checklist_path(target), checklist.dumps(checklist.evaluate(rows)))
            bar.update(1)
    finally:
        bar.close()
    write_json_atomic(checklist_path(target), checklist.dumps(checklist.evaluate(rows)))
    return RunSummary(target, checklist_path(target), len(tasks), len(tasks) - len(todo), computed)
