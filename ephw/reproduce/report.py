"""The results page of a reproduction: clean accuracies, robustness, and a verdict per claim.

:func:`write_results_page` reads only what the pipeline left in the run directory (each model's
``model.pt`` meta, the robustness results file) and writes ``<docs>/<data>.md`` plus figures, so
``ephw reproduce DATA --stage report`` regenerates the page from committed results alone.

A claim's verdict compares two models' seed means with 95 % intervals. An accuracy measured on
``n`` test images carries two uncertainties: which images (the Wilson interval of the mean
accuracy over ``n``; every training seed is attacked on the same images, so more seeds do not
shrink it) and which training seed (a t-interval over seeds); the half-widths add in
quadrature. With one seed only the first is known (the seed-to-seed spread is then not in
it); a quantity without images (a speed-up, an agreement) has the t-interval alone. ``holds`` when the
difference has the claimed sign and the intervals do not overlap, ``does not hold`` when it has the
other sign and they do not overlap, ``inconclusive`` when they overlap (or neither has an
interval), ``not measured`` when a number is missing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ephw.checkpoint import read_meta
from ephw.outputs import atomic_write
from ephw.reproduce.plan import SUBSET_CONTROL, Step
from ephw.stats import accuracy_ci, mean_ci

#: The published CIFAR-10 numbers of lanl/AdvEP (Mansingh et al. 2024) the page is set against (%).
PUBLISHED_CIFAR10: list[tuple[str, str, str]] = [
    ("clean accuracy", "EP-CNN 88.5", "lanl/AdvEP, paper config, 120 epochs"),
    ("PGD-ℓ2 ε = 0.49", "EP 45–46 vs BP 14–15", "white box"),
    ("Square-ℓ∞ ε = 8/255", "EP 45.5–48.5 vs BP 13.5", "black box"),
    ("AutoAttack-ℓ∞ ε = 0.0215", "EP 18 vs BP 5", "ensemble"),
]


@dataclass
class Measure:
    """A quantity over seeds: ``values`` (one per seed, in %).

    ``images``: for an accuracy, the images each value was measured on (same order); its
    interval then also holds the Wilson interval of the mean over those images (module doc).
    """

    values: list[float]
    images: list[int] | None = None

    @property
    def mean(self) -> float:
        return mean_ci(self.values)[0]

    @property
    def half(self) -> float:
        """Half-width of the 95 % interval (%): seeds and images in quadrature (module doc); ``nan`` if none."""
        if not self.images:
            return mean_ci(self.values)[1]
        return 100.0 * accuracy_ci([v / 100.0 for v in self.values], min(self.images))[1]

    def __str__(self) -> str:
        if not self.values:
            return "–"
        mean, half = self.mean, self.half
        if math.isnan(half):
            return f"{mean:.1f}"
        if len(self.values) == 1:
            return f"{mean:.1f} ± {half:.1f} (1 seed, {self.images[0]} images)"
        if self.images:
            return f"{mean:.1f} ± {half:.1f} ({len(self.values)} seeds, {min(self.images)} images)"
        return f"{mean:.1f} ± {half:.1f} (n={len(self.values)})"


def verdict(a: Measure | None, b: Measure | None, claim: str = ">") -> str:
    """Whether ``a claim b`` (``>``: a larger, ``<``: a smaller) holds, per the module docstring's rule."""
    if a is None or b is None or not a.values or not b.values:
        return "not measured"
    if math.isnan(a.half) and math.isnan(b.half):
        return "inconclusive (one seed each: no interval)"
    ha, hb = (0.0 if math.isnan(m.half) else m.half for m in (a, b))
    diff = a.mean - b.mean if claim == ">" else b.mean - a.mean
    separated = abs(a.mean - b.mean) > ha + hb
    if not separated:
        return "inconclusive (CIs overlap)"
    return "holds" if diff > 0 else "does not hold"


def keeps(a: Measure | None, b: Measure | None) -> str:
    """Whether ``a`` keeps ``b``'s level: ``does not hold`` only when ``a`` is lower with separated CIs."""
    result = verdict(a, b, "<")
    if result == "holds":
        return "does not hold"
    if result == "does not hold":
        return "holds (higher)"
    if result == "inconclusive (CIs overlap)":
        return "holds (difference within the CIs)"
    return result


def clean_accuracies(steps: list[Step], run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per model family: its seeds' test accuracies (%), test sizes, and distillation metrics."""
    out: dict[str, dict[str, Any]] = {}
    for step in steps:
        path = run_dir / step.name / "model.pt"
        if not path.is_file():
            continue
        meta = read_meta(path)
        metrics = meta.get("metrics") or {}
        entry = out.setdefault(
            step.model, {"acc": [], "n": set(), "images": [], "seeds": [], "extra": defaultdict(list)}
        )
        if metrics.get("test_accuracy") is not None:
            entry["acc"].append(100.0 * float(metrics["test_accuracy"]))
            entry["n"].add(metrics.get("test_n"))
            entry["images"].append(metrics.get("test_n"))
            entry["seeds"].append(step.seed)
        for key in ("agreement", "teacher_test_accuracy"):
            if metrics.get(key) is not None:
                entry["extra"][key].append(100.0 * float(metrics[key]))
        timing = metrics.get("timing") or {}
        if timing.get("speedup") is not None:
            entry["extra"]["speedup"].append(float(timing["speedup"]))
    return out


def clean_measure(entry: dict[str, Any]) -> Measure:
    """A family's clean accuracy; one seed gets the Wilson interval over its test images."""
    images = entry.get("images") or []
    known = len(images) == len(entry["acc"]) and all(isinstance(n, int) and n > 0 for n in images)
    return Measure(entry["acc"], images if known else None)


def shipped_checks(steps: list[Step], run_dir: Path) -> list[dict[str, Any]]:
    """The ``shipped-settle.json`` records the pipeline kept for shipped EP-CNNs (in step order)."""
    out = []
    for step in steps:
        path = run_dir / step.name / "shipped-settle.json"
        if step.ship_as is not None and path.is_file():
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
    return out


RobustLookup = Callable[[str, str], Measure | None]


def hardware_students(families: set[str]) -> list[tuple[str, str]]:
    """(student of a hardware-simulated teacher, the digital teacher's student it is compared with).

    ``families``: the model families of the plan. The Loihi-2 teacher may settle a training
    subset; its student is then compared with the digital teacher's student on that subset (same
    images, only the teacher differs).
    """
    loihi_ref = SUBSET_CONTROL if SUBSET_CONTROL in families else "Distilled BP-CNN"
    return [
        ("Distilled BP-CNN (PCM teacher)", "Distilled BP-CNN"),
        ("Distilled BP-CNN (Loihi-2 teacher)", loihi_ref),
    ]


#: Adv-CNN is trained against ℓ2 PGD: claim 4 is about the labels of other threat models (ℓ∞,
#: corruptions), so a label naming an ℓ2 attack or an ℓ2 worst case is not asked.
ADV_TRAINED_FOR = ("PGD-l2", "worst case per image, L2")


def robustness_table(
    clean: dict[str, dict[str, Any]], rob: dict[tuple[str, str], Measure], labels: list[str]
) -> list[str]:
    """Markdown lines: one row per model family, clean accuracy then every robustness label (%, 95 % CI)."""
    families = list(clean) + sorted({m for m, _ in rob} - set(clean))
    lines = [
        "",
        "## Robustness (accuracy %, mean ± 95 % CI over training seeds and test images, in quadrature)",
        "",
        "| model | clean | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for family in families:
        cells = [str(clean_measure(clean[family])) if family in clean else "–"]
        cells += [str(rob[(family, label)]) if (family, label) in rob else "–" for label in labels]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return lines


def write_results_page(
    data: str,
    steps: list[Step],
    run_dir: str | Path,
    docs_dir: str | Path,
    robustness: dict[str, Any] | None = None,
) -> Path:
    """Write ``<docs_dir>/<data>.md`` from the run directory; returns its path.

    ``robustness``: ``{"rows": {(model, label): Measure}, "report": path of the robustness
    report folder, "figures": {name: path}}`` from the robustness stage, or ``None``.
    """
    run_dir, docs_dir = Path(run_dir), Path(docs_dir)
    clean = clean_accuracies(steps, run_dir)
    rob = (robustness or {}).get("rows", {})
    lines = [
        f"# The seed paper on {data.upper()}: measured results",
        "",
        "Generated by `ephw reproduce "
        + data
        + " --stage report` from the committed run directory "
        + f"`{run_dir.as_posix()}`; every number below was measured by the pipeline's commands "
        "(each model's exact command, seed and data sha256 are in its checkpoint meta; `ephw models --json`).",
        "",
    ]
    if data == "cifar10":
        lines += [
            "Data: the shared CIFAR-10 copy is stored as JPEG (quality ≈ 75); accuracies are comparable to "
            "the literature only within about a point.",
            "",
        ]
    lines += [
        "## Clean test accuracy",
        "",
        "| model | test accuracy % (mean ± 95 % CI over seeds; one seed: over its test images) | seeds | test images |",
    ]
    lines += ["|---|---|---|---|"]
    for model, entry in clean.items():
        n = ", ".join(str(x) for x in sorted(entry["n"], key=str))
        seeds = ", ".join(str(s) for s in entry["seeds"])
        lines.append(f"| {model} | {clean_measure(entry)} | {seeds} | {n} |")
    shipped = shipped_checks(steps, run_dir)
    if shipped:
        lines += ["", "Shipped models, as a user settles them (class-balanced subset of the test split):", ""]
        lines += ["| command | accuracy % | images | steps mean | converged |", "|---|---|---|---|---|"]
        for rec in shipped:
            row = rec["row"]
            lines.append(
                f"| `{rec['command']}` | {100.0 * float(row['accuracy']):.1f} | {row.get('n')} | "
                f"{row.get('steps_mean')} | {row.get('converged_fraction')} |"
            )
    missing = sorted({s.model for s in steps} - set(clean))
    if missing:
        lines += ["", "Not trained yet: " + ", ".join(missing) + "."]
    students = {m: e for m, e in clean.items() if e["extra"].get("agreement")}
    if students:
        lines += ["", "| student | agreement with teacher % | teacher test accuracy % | inference speed-up vs settle |"]
        lines += ["|---|---|---|---|"]
        for model, e in students.items():
            speed = Measure(e["extra"]["speedup"]) if e["extra"].get("speedup") else None
            speed_text = f"{speed.mean:.0f}×" if speed else "–"
            lines.append(
                f"| {model} | {Measure(e['extra']['agreement'])} | "
                f"{Measure(e['extra'].get('teacher_test_accuracy', []))} | {speed_text} |"
            )

    def acc(model: str) -> Measure | None:
        return clean_measure(clean[model]) if model in clean else None

    def robust(model: str, label: str) -> Measure | None:
        return rob.get((model, label))

    ep, dist = "EP-CNN", "Distilled BP-CNN"
    families = {s.model for s in steps}
    claims = [
        ("(1) the Eq. 8 student keeps the EP-CNN's clean accuracy", keeps(acc(dist), acc(ep))),
        ("(1b) Adv-CNN loses clean accuracy against the EP-CNN", verdict(acc("Adv-CNN"), acc(ep), "<")),
        *[
            (f"(6) {m} keeps the clean accuracy of {ref}", keeps(acc(m), acc(ref)))
            for m, ref in hardware_students(families)
        ],
    ]
    for label in (robustness or {}).get("labels", []):
        claims += [
            (f"(2) EP-CNN more robust than BP-CNN — {label}", verdict(robust(ep, label), robust("BP-CNN", label))),
            (f"(2) student more robust than BP-CNN — {label}", verdict(robust(dist, label), robust("BP-CNN", label))),
            (
                f"(3) Eq. 9 students less robust than the Eq. 8 student — {label}",
                "; ".join(
                    f"{m}: {verdict(robust(m, label), robust(dist, label), '<')}"
                    for m in ("Distilled BP-CNN (ll)", "Distilled ResNet-18")
                ),
            ),
            (
                f"(6) students of hardware teachers keep the digital teacher's student's robustness — {label}",
                "; ".join(
                    f"{m}: {keeps(robust(m, label), robust(ref, label))}" for m, ref in hardware_students(families)
                ),
            ),
        ]
        if not label.startswith(ADV_TRAINED_FOR):
            claims.append(
                (
                    f"(4) EP-CNN more robust than Adv-CNN where Adv-CNN was not trained (not ℓ2 PGD) — {label}",
                    verdict(robust(ep, label), robust("Adv-CNN", label)),
                )
            )
    if (robustness or {}).get("labels") and not any(c.startswith("(4)") for c, _ in claims):
        claims.append(
            (
                "(4) EP-CNN more robust than Adv-CNN where Adv-CNN was not trained (not ℓ2 PGD)",
                "not measured: no ℓ∞, black-box or corruption rows yet",
            )
        )
    speed = clean.get(dist, {}).get("extra", {}).get("speedup")
    claims.append(
        (
            "(5) the student's inference is far cheaper than settling",
            f"holds: {Measure(speed).mean:.0f}× faster per image (CPU, interleaved timing)"
            if speed
            else "not measured",
        )
    )
    if not (robustness or {}).get("labels"):
        claims.append(("(2)–(4), (6) robustness claims", "not measured: the robustness stage has not run yet"))
    lines += ["", "## Verdicts", "", "| claim | verdict |", "|---|---|"]
    lines += [f"| {c} | {v} |" for c, v in claims]
    labels = (robustness or {}).get("labels", [])
    if labels:
        lines += robustness_table(clean, rob, labels)
    if robustness and robustness.get("markdown"):
        lines += ["", "## Robustness", "", robustness["markdown"]]
    if data == "cifar10":
        lines += [
            "",
            "## Published CIFAR-10 numbers (lanl/AdvEP) for comparison",
            "",
            "| quantity | published | note |",
        ]
        lines += ["|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in PUBLISHED_CIFAR10]
    page = docs_dir / f"{data}.md"
    atomic_write(page, "\n".join(lines) + "\n")
    return page
