"""The robustness stage: every trained model of the pipeline under one hardened harness run.

The attacks, checks and corruptions of a budget are the TOML template
``ephw/reproduce/robustness-<budget>.toml`` (no ``[[models]]``: the pipeline adds one per finished
training run, named ``"<model family> [s<seed>]"``; EP-CNNs take the template's ``[ep]`` table as
their settle and gradient settings). The run writes ``<run_dir>/robustness.jsonl``, resumes by
skipping finished rows, and ``robustness report`` turns it into the figures of the results page.
Measures pool a model family's training seeds (one value per training seed and image seed).
"""

from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ephw.errors import ConfigError
from ephw.outputs import atomic_write
from ephw.reproduce.report import Measure
from ephw.robustness.naming import family, seed_name, seeded

if TYPE_CHECKING:
    import torch

    from ephw.reproduce.pipeline import Pipeline

TEMPLATE_DIR = Path(__file__).resolve().parent


def results_path(pipe: Pipeline, part: str) -> Path:
    return pipe.run_dir / f"robustness-{part}.jsonl"


def template(budget: str) -> dict[str, Any]:
    """The parsed robustness template of ``budget`` (``[ep]`` and ``[[parts]]``)."""
    path = TEMPLATE_DIR / f"robustness-{budget}.toml"
    if not path.is_file():
        raise ConfigError(f"no robustness template for budget {budget!r} ({path})")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def trained_models(pipe: Pipeline, ep: dict[str, Any], stamp: bool = False) -> list[dict[str, Any]]:
    """One ``[[models]]`` entry per finished training run of ``pipe``, seed-major.

    Every family's first seed comes before any family's second one, so a run cut short has
    evaluated one seed of every model the verdicts compare. ``stamp``: give a hand-trained model
    its provenance first (:meth:`~ephw.reproduce.pipeline.Pipeline.ensure_stamped`; the stage
    does, before any row hashes the file); read-only callers (``--list``) write nothing.
    """
    models = []
    for step in sorted(pipe.steps, key=lambda s: s.seed):  # stable: plan order within a seed
        path = pipe.folder(step) / "model.pt"
        if path.is_file():
            if stamp:
                pipe.ensure_stamped(step)  # before any row hashes the file
            entry = {"name": seed_name(step.model, step.seed), "path": str(path)}
            models.append({**entry, **ep} if step.stage == "train-ep" else entry)
    return models


def part_configs(pipe: Pipeline, stamp: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """``(part name, robustness config dict)`` per part of the budget's template, over the trained models.

    A part none of whose models is trained yet (a feed-forward part while only the EP-CNN is)
    has an empty ``models`` list: no valid config yet, it waits. ``stamp``: as :func:`trained_models`.
    """
    raw = template(pipe.budget_name)
    models = trained_models(pipe, raw.get("ep", {}), stamp=stamp)
    if not models:
        raise ConfigError(f"no trained models in {pipe.run_dir} yet: run the training stages first")
    names = [m["name"] for m in models]  # surrogates may come from any part's models
    out = []
    for part in raw.get("parts", []):
        part = dict(part)
        name = part.pop("name")
        part.pop("about", None)  # the results page's description of the part
        part.pop("verdicts", None)  # whether the page's claim verdicts read this part (robustness_summary)
        left = left_out(pipe, part.pop("models", "all"), name)
        chosen = [m for m in models if family(m["name"]) not in left]
        run = dict(part.pop("run", {}))
        run.update(data=pipe.data, **({"data_root": pipe.data_root} if pipe.data_root else {}))
        if pipe.device is not None:
            run["device"] = pipe.device
        checks = dict(part.pop("checks", {}))
        for key in ("transfer_from", "warm_start_from"):
            if isinstance(checks.get(key), list):  # families -> their first trained seed present
                first = [next((n for n in names if family(n) == fam), None) for fam in checks[key]]
                checks[key] = [c for c in first if c is not None] or None
                if checks[key] is None:
                    del checks[key]
        out.append((name, {"run": run, "models": chosen, "checks": checks, **part}))
    return out


#: A part's ``models`` key: which trained models it evaluates.
PART_MODELS = ("all", "feedforward", "ep")


def left_out(pipe: Pipeline, which: str, part: str) -> set[str]:
    """The model families part ``part`` does not evaluate: none for ``all``, the EP-CNNs for ``feedforward``,
    every other family for ``ep``."""
    if which not in PART_MODELS:
        raise ConfigError(f"part {part!r}: models must be one of {', '.join(PART_MODELS)}, got {which!r}")
    ep = {s.model for s in pipe.steps if s.stage == "train-ep"}
    if which == "feedforward":
        return ep
    return {s.model for s in pipe.steps} - ep if which == "ep" else set()


def run_robustness(pipe: Pipeline, log: Callable[[str], None] = print) -> list[Path]:
    """Run (or continue) every part's grid over every finished model, then each part's report."""
    from ephw.robustness.config import config_from_dict
    from ephw.robustness.runner import run_robustness as run_grid

    outs = []
    for part, raw in part_configs(pipe, stamp=True):
        if pipe.parts and part not in pipe.parts:
            continue
        if not raw["models"]:
            log(f"[robustness] {part}: waiting for its first trained model ({waiting_for(pipe, part)})")
            continue
        atomic_write(pipe.run_dir / f"robustness-{part}.json", json.dumps(raw, indent=1, sort_keys=True) + "\n")
        cfg = config_from_dict(json.loads(json.dumps(raw)))  # the validator edits what it is given
        out = results_path(pipe, part)
        log(f"[robustness] {part}: {len(raw['models'])} models -> {out}")
        run_grid(cfg, out, shard=pipe.shard, first=pipe.first)
        _write_part_report(pipe, part)
        outs.append(out)
    return outs


def write_part_reports(pipe: Pipeline) -> list[Path]:
    """Each part's report (every attack, class-wise tables, figures, checklist) from its results so far.

    The robustness stage writes a part's report when its grid is done; the report stage
    rewrites every part's from the committed results, finished or not (a sharded or stopped run).
    """
    from ephw.robustness import shards

    written = []
    for part, _ in _parts(pipe):
        out = results_path(pipe, part)
        if out.is_file() or shards.shard_files(out):
            _write_part_report(pipe, part)
            written.append(out)
    return written


def _write_part_report(pipe: Pipeline, part: str) -> None:
    """Part ``part``'s report, its unfinished worst cases marked as upper bounds (:func:`pending_attacks`)."""
    from ephw.robustness import shards
    from ephw.robustness.report import write_report
    from ephw.robustness.runner import dedupe, read_rows

    out = results_path(pipe, part)
    rows, _ = dedupe(shards.read_all(out, read_rows))
    write_report(out, pipe.docs_dir / pipe.data / part, pending=pending_attacks(pipe, part, rows))


def _seed_number(model: Any) -> int:
    """The training seed in a model name (``"BP-CNN [s2]"`` -> 2); -1 for an unseeded name."""
    m = seeded(str(model))
    return -1 if m is None else m[1]


def robustness_summary(pipe: Pipeline) -> dict[str, Any] | None:
    """Measures per (model family, label) from the results files, for the verdicts; ``None`` if none ran."""
    from ephw.robustness import shards, survival
    from ephw.robustness.runner import dedupe, pending_key, read_rows

    parts = dict(_parts(pipe))
    files = [
        (p, path)
        for p in parts
        if (path := results_path(pipe, p)).is_file() or shards.shard_files(path)  # a sharded run: only shard files
    ]
    if not files:
        return None
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    images: dict[tuple[str, str], list[int]] = defaultdict(list)  # per value: the images it was measured on
    per_image: dict[tuple[str, str], list[list[float]]] = defaultdict(list)  # per value: its score per image
    labels: list[str] = []
    absent: dict[str, list[str]] = {}  # label -> the families its part does not evaluate
    markdown = []
    incomplete: list[str] = []
    for part, path in files:
        rows, _ = dedupe(shards.read_all(path, read_rows))
        rows.sort(key=lambda r: _seed_number(r.get("model", "")))  # "per seed" lists on the page read s0, s1, s2
        pending = pending_attacks(pipe, part, rows)
        corrupted: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
        unasked = left_out(pipe, parts[part].get("models", "all"), part)
        # a part with verdicts = false (the published protocol: one weak attack by design) has its own
        # report and section, but no "worst case" enters the claims' verdicts
        judged = parts[part].get("verdicts", True)

        def add(family: str, label: str, accuracy: float, n: int, scores: torch.Tensor | None) -> None:
            if not judged:
                return
            if label not in labels:
                labels.append(label)
                absent[label] = sorted(unasked)
            values[(family, label)].append(100.0 * accuracy)
            images[(family, label)].append(n)
            if scores is not None and len(scores) == n:
                per_image[(family, label)].append(scores.double().tolist())

        for row in rows:
            m = seeded(str(row.get("model", "")))
            if m is None or row.get("check"):
                continue
            if row.get("kind") == "corruption":  # one value per model and seed: the mean over corruptions
                corrupted[(m[0], row["model"], int(row["seed"]))].append(row)
                continue
            if (label := row_label(row, part)) is not None:
                add(m[0], label, float(row["accuracy"]), int(row["n"]), _scores([row]))
        for (fam, _model, _seed), crows in corrupted.items():
            accuracy = sum(float(r["accuracy"]) for r in crows) / len(crows)
            n = min(int(r["n"]) for r in crows)
            add(fam, f"corruptions, mean of every name and severity ({part})", accuracy, n, _scores(crows))
        for (model, norm, eps, seed), wc in survival.worst_case(rows).items():  # in the rows' (seed) order
            m = seeded(str(model))
            if m is None:
                continue
            label = f"worst case per image, {norm} ε={float(eps):.4g} ({part})"
            left = pending.get(pending_key(model, norm, eps, seed), 0) if judged else 0
            if left:  # fewer attacks than planned: only an upper bound, and it would flatter the model
                incomplete.append(
                    f"{model}, {norm} ε={float(eps):.4g} ({part}): {left} attack row{'s' * (left != 1)} still to run"
                )
                continue
            add(m[0], label, float(wc["accuracy"]), int(wc["n"]), wc["alive"])
        report = pipe.docs_dir / pipe.data / part / "report.md"
        if report.is_file():
            rel = f"{pipe.data}/{part}"  # relative to the results page <docs>/<data>.md
            link = f"[{rel}/report.md]({rel}/report.md)"
            about = parts[part].get("about", "")
            text = f"### Part {part}\n\n" + (f"{about.strip()}\n\n" if about else "")
            text += f"Full report (every attack, class-wise, checklist): {link}\n"
            for fig, caption in (
                ("attacks", "accuracy vs ε per attack, worst case per image first"),
                ("corruptions", "accuracy per corruption and vs severity"),
            ):
                if (report.parent / f"{fig}.png").is_file():
                    text += f"\n![{part}: {caption}]({rel}/{fig}.png)\n"
            markdown.append(text)
    rows = {
        k: Measure(
            v,
            images.get(k) if len(images.get(k, [])) == len(v) else None,
            per_image.get(k) if len(per_image.get(k, [])) == len(v) else None,
        )
        for k, v in values.items()
    }
    if incomplete:
        markdown.insert(
            0,
            "Worst cases per image not reported yet (their run stopped before every planned attack at that ε; "
            "a worst case over fewer attacks is only an upper bound):\n\n" + "".join(f"- {i}\n" for i in incomplete),
        )
    return {"rows": rows, "labels": labels, "absent": absent, "markdown": "\n".join(markdown)}


def _scores(rows: list[dict[str, Any]]) -> torch.Tensor | None:
    """Per image, the fraction of ``rows`` (same images) that left it standing; ``None`` without survival records."""
    import torch

    from ephw.robustness import survival

    records = [r.get("survival") for r in rows]
    if not records or not all(records) or len({len(r) for r in records}) != 1:
        return None
    return torch.stack([survival.alive(r) for r in records]).double().mean(0)


def pending_attacks(pipe: Pipeline, part: str, rows: list[dict[str, Any]]) -> dict[tuple, int]:
    """``(model, norm, eps, seed) -> `` the part's planned attack rows not in ``rows`` yet.

    The plan is the one the part last ran (``robustness-<part>.json`` in the run directory);
    without it nothing is known to be missing.
    """
    from ephw.robustness.config import config_from_dict
    from ephw.robustness.runner import pending_attacks as pending

    saved = pipe.run_dir / f"robustness-{part}.json"
    if not saved.is_file():
        return {}
    return pending(config_from_dict(json.loads(saved.read_text())), rows)


def row_status(pipe: Pipeline) -> list[str]:
    """One line per robustness part: rows done of planned, and the rows left per model (of ``pipe.shard``).

    The plan is the part's over the models trained now (what the next run of the stage would
    compute); rows are counted from every shard's results file.
    """
    from ephw.robustness import shards
    from ephw.robustness.config import config_from_dict
    from ephw.robustness.runner import dedupe, plan, read_rows, row_key

    ep_families = {s.model for s in pipe.steps if s.stage == "train-ep"}
    lines = []
    for part, raw in part_configs(pipe):
        if pipe.parts and part not in pipe.parts:
            continue
        if not raw["models"]:
            wait = f"waiting for its first trained model ({waiting_for(pipe, part)})"
            lines.append(f"robustness {part:14s} 0/0 rows done; {wait}")
            continue
        cfg = config_from_dict(json.loads(json.dumps(raw)))
        rows, _ = dedupe(shards.read_all(results_path(pipe, part), read_rows))
        done = {row_key(r) for r in rows}
        stochastic = frozenset(r["model"] for r in rows if r.get("kind") == "clean" and r.get("stochastic"))
        ep_models = frozenset(m.name for m in cfg.models if family(m.name) in ep_families)
        tasks = shards.select(plan(cfg, stochastic, ep_models), pipe.shard, cfg, ep_models)
        left: dict[str, int] = {}
        for t in tasks:
            if t.key not in done:
                left[t.model] = left.get(t.model, 0) + 1
        where = "" if pipe.shard is None else f", shard {pipe.shard.index}/{pipe.shard.count}"
        text = f"robustness {part:14s} {len(tasks) - sum(left.values())}/{len(tasks)} rows done{where}"
        if left:
            text += "; left: " + ", ".join(f"{m} {k}" for m, k in left.items())
        lines.append(text)
    return lines


def waiting_for(pipe: Pipeline, part: str) -> str:
    """What part ``part`` of the template evaluates, for a line saying it has no trained model yet."""
    which = dict(_parts(pipe))[part].get("models", "all")
    return {"feedforward": "a feed-forward model", "ep": "an EP-CNN"}.get(which, "any model")


def part_names(pipe: Pipeline) -> list[str]:
    """The names of the budget's robustness parts, in the order the stage runs them."""
    return [name for name, _ in _parts(pipe)]


def _parts(pipe: Pipeline) -> list[tuple[str, dict[str, Any]]]:
    raw = template(pipe.budget_name)
    return [(p["name"], p) for p in raw.get("parts", [])]


#: (row kind/attack, eps) points the verdicts are stated at: the paper's headline points.
HEADLINE_EPS: dict[str, float] = {"PGD-l2": 0.4932, "Square-linf": 8 / 255, "AutoAttack-linf": 0.0215}


def row_label(row: dict[str, Any], part: str) -> str | None:
    """The verdict label of a results row of part ``part`` (``None``: not a headline point)."""
    attack = row.get("attack")
    eps = float(row.get("eps", 0.0))
    for name, target in HEADLINE_EPS.items():
        if attack == name and abs(eps - target) <= 1e-3 * max(1.0, target) + 1e-4:
            return f"{name} ε={eps:.4g} ({part})"
    return None
