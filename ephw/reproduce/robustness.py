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
import re
import tomllib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ephw.errors import ConfigError
from ephw.outputs import atomic_write
from ephw.reproduce.report import Measure

if TYPE_CHECKING:
    from ephw.reproduce.pipeline import Pipeline

TEMPLATE_DIR = Path(__file__).resolve().parent
_FAMILY = re.compile(r"^(?P<family>.*) \[s(?P<seed>\d+)\]$")


def results_path(pipe: Pipeline) -> Path:
    return pipe.run_dir / "robustness.jsonl"


def template(budget: str) -> dict[str, Any]:
    """The parsed robustness template of ``budget``."""
    path = TEMPLATE_DIR / f"robustness-{budget}.toml"
    if not path.is_file():
        raise ConfigError(f"no robustness template for budget {budget!r} ({path})")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def config_dict(pipe: Pipeline) -> dict[str, Any]:
    """The robustness config (as a TOML-shaped dict) over every finished model of ``pipe``."""
    raw = template(pipe.budget_name)
    ep = raw.pop("ep", {})
    raw.setdefault("run", {}).update(data=pipe.data, **({"data_root": pipe.data_root} if pipe.data_root else {}))
    models = []
    for step in pipe.steps:
        path = pipe.folder(step) / "model.pt"
        if not path.is_file():
            continue
        entry = {"name": f"{step.model} [s{step.seed}]", "path": str(path)}
        if step.stage == "train-ep":
            entry.update(ep)
        models.append(entry)
    if not models:
        raise ConfigError(f"no trained models in {pipe.run_dir} yet: run the training stages first")
    raw["models"] = models
    return raw


def run_robustness(pipe: Pipeline, log: Callable[[str], None] = print) -> Path:
    """Run (or continue) the robustness grid over every finished model, then its report."""
    from ephw.robustness.config import config_from_dict
    from ephw.robustness.report import write_report
    from ephw.robustness.runner import run_robustness as run_grid

    raw = config_dict(pipe)
    atomic_write(pipe.run_dir / "robustness-config.json", json.dumps(raw, indent=1, sort_keys=True) + "\n")
    cfg = config_from_dict(raw)
    out = results_path(pipe)
    log(f"[robustness] {len(raw['models'])} models -> {out}")
    run_grid(cfg, out)
    write_report(out, pipe.docs_dir / pipe.data)
    return out


def robustness_summary(pipe: Pipeline) -> dict[str, Any] | None:
    """Measures per (model family, label) from the results file, for the verdicts; ``None`` if not run."""
    out = results_path(pipe)
    if not out.is_file():
        return None
    from ephw.robustness.runner import read_rows

    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    labels: list[str] = []
    for row in read_rows(out):
        m = _FAMILY.match(str(row.get("model", "")))
        if m is None or row.get("check"):
            continue
        label = row_label(row)
        if label is None:
            continue
        if label not in labels:
            labels.append(label)
        values[(m["family"], label)].append(100.0 * float(row["accuracy"]))
    report = pipe.docs_dir / pipe.data / "report.md"
    markdown = report.read_text(encoding="utf-8") if report.is_file() else ""
    rows = {key: Measure(v) for key, v in values.items()}
    return {"rows": rows, "labels": labels, "markdown": markdown}


#: (row kind/attack, eps) points the verdicts are stated at: the paper's headline points.
HEADLINE_EPS: dict[str, float] = {"PGD-l2": 0.4932, "Square-linf": 8 / 255, "AutoAttack-linf": 0.0215}


def row_label(row: dict[str, Any]) -> str | None:
    """The verdict label of a results row (``None``: not a headline point)."""
    if row.get("kind") == "corruption":
        return None
    attack = row.get("attack")
    eps = float(row.get("eps", 0.0))
    for name, target in HEADLINE_EPS.items():
        if attack == name and abs(eps - target) <= 1e-3 * max(1.0, target) + 1e-4:
            return f"{name} ε={eps:.4g}"
    if row.get("kind") == "worst-case":
        return f"worst case per image ε={eps:.4g} ({row.get('norm', '')})"
    return None
