"""Claim 7's control in the pipeline: the Eq. 8 and ℓℓ students distilled from the BP-CNN of their seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ephw.checkpoint import read_meta
from ephw.cli.main import main
from ephw.reproduce.plan import BP_TEACHER_CONTROLS, BUDGETS, build_plan
from ephw.reproduce.report import CLAIM_7, Measure, control_labels, write_results_page


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_bp_seed_teaches_the_eq8_and_ll_students_with_their_ep_settings(budget: str) -> None:
    steps = {s.name: s for s in build_plan("cifar10", budget)}
    seeds = BUDGETS[budget].ff_seeds
    assert len(seeds) >= 2 and all(f"bp-s{k}" in steps for k in seeds)
    for k in seeds:
        for control, ep_student in (
            (f"distilled-bpteacher-s{k}", f"distilled-s{k}"),
            (f"distilled-bpteacher-ll-s{k}", f"distilled-ll-s{k}"),
        ):
            step, twin = steps[control], steps[ep_student]
            assert step.stage == "distill" and step.seed == k and step.needs == (f"bp-s{k}",)
            assert step.model == BP_TEACHER_CONTROLS[twin.model]
            # the EP student's command with only the teacher swapped: paired with BP seed k
            i = twin.argv.index("--teacher")
            assert twin.argv[i + 1] == "@ep-s0"
            assert step.argv == (*twin.argv[: i + 1], f"@bp-s{k}", *twin.argv[i + 2 :])
    controls = [s for s in steps.values() if s.model in BP_TEACHER_CONTROLS.values()]
    assert len(controls) == 2 * len(seeds) and len({s.ship_as for s in controls if s.ship_as}) == 2


def test_claim_7_is_not_run_yet_without_the_bp_teacher_students(tmp_path: Path) -> None:
    label = "PGD-l2 ε=0.4932 (white-box)"
    rob = {("Distilled BP-CNN", label): Measure([17.0, 17.0, 17.0]), ("BP-CNN", label): Measure([6.0, 6.0, 6.0])}
    page = write_results_page(
        "cifar10", build_plan("cifar10", "cpu"), tmp_path / "run", tmp_path / "docs", {"rows": rob, "labels": [label]}
    ).read_text()
    rows = [line for line in page.splitlines() if line.startswith("| (7)")]
    assert len(rows) == 2  # the summary's row and the full table's
    assert all(r.startswith(f"| {CLAIM_7} |") and "are not trained yet" in r for r in rows)
    (missing,) = [line for line in page.splitlines() if line.startswith("Not trained yet: ")]
    assert "Distilled BP-CNN (BP teacher)" in missing and "Distilled BP-CNN (ll, BP teacher)" in missing


def test_claim_7_compares_each_student_with_its_bp_teacher_twin_on_the_control_labels(tmp_path: Path) -> None:
    labels = [
        "worst case per image, L2 ε=0.4932 (probe)",
        "PGD-l2 ε=0.4932 (white-box)",
        "worst case per image, L2 ε=0.1974 (white-box)",
        "worst case per image, L2 ε=0.4932 (white-box)",
        "Square-linf ε=0.03137 (black-box)",
        "corruptions, mean of every name and severity (corruptions)",
        "Square-linf ε=0.03137 (black-box-ff)",
    ]
    asked = control_labels(labels)
    assert asked == [labels[1], labels[3], labels[5], labels[6]]
    assert control_labels(labels[:5]) == [labels[1], labels[3], labels[4]]  # no black-box-ff part: black-box
    img = lambda k: [[1.0] * k + [0.0] * (100 - k)] * 3  # noqa: E731 -- 3 seeds, the same 100 images
    rob = {}
    for label in labels:
        rob[("Distilled BP-CNN", label)] = Measure([30.0] * 3, [100] * 3, img(30))
        rob[("Distilled BP-CNN (BP teacher)", label)] = Measure([10.0] * 3, [100] * 3, img(10))
        rob[("Distilled BP-CNN (ll)", label)] = Measure([20.0] * 3, [100] * 3, img(20))
        rob[("Distilled BP-CNN (ll, BP teacher)", label)] = Measure([20.0] * 3, [100] * 3, img(20))
    page = write_results_page(
        "cifar10", build_plan("cifar10", "cpu"), tmp_path / "run", tmp_path / "docs", {"rows": rob, "labels": labels}
    ).read_text()
    eq8 = "(7) Distilled BP-CNN more robust than Distilled BP-CNN (BP teacher)"
    ll = "(7) Distilled BP-CNN (ll) more robust than Distilled BP-CNN (ll, BP teacher)"
    full = [line for line in page.splitlines() if line.startswith("| (7)") and line.count(" | ") == 3]
    assert [line.split(" | ")[1] for line in full if line.startswith(f"| {eq8}")] == asked
    assert all(" | holds (Δ = +20.0 ± " in line for line in full if eq8 in line)
    assert all(" | inconclusive (Δ = +0.0 ± 0.0" in line for line in full if ll in line)
    assert CLAIM_7 not in page  # trained: per-student rows instead of the "not trained yet" one


@pytest.mark.slow
def test_the_pipeline_distils_a_bp_teacher_student_and_times_it_as_untimed(tmp_path: Path, tiny_tree: Path) -> None:
    """The real commands on the tiny tree: BP-CNN seed 0, then its Eq. 8 student; stamped, timed (untimed), reported."""
    run, docs = tmp_path / "run", tmp_path / "docs"
    args = ["reproduce", "cifar10", "--budget", "smoke", "--data-root", str(tiny_tree), "--run-dir", str(run)]
    args += ["--docs", str(docs), "--no-ship"]
    assert main([*args, "--stage", "baselines", "--step", "bp-s0"]) == 0
    assert main([*args, "--stage", "distill", "--step", "distilled-bpteacher-s0", "--stage", "timing"]) == 0
    meta = read_meta(run / "distilled-bpteacher-s0" / "model.pt")
    assert meta["pipeline_step"] == "distilled-bpteacher-s0" and meta["model"] == "Distilled BP-CNN (BP teacher)"
    assert meta["teacher"]["kind"] == "feedforward" and meta["settings"]["teacher"] == str(run / "bp-s0" / "model.pt")
    timing = json.loads((run / "speedup.json").read_text())
    assert timing["students"]["distilled-bpteacher-s0"]["speedup"] is None
    assert main([*args, "--stage", "report"]) == 0
    page = (docs / "cifar10.md").read_text()
    assert "| Distilled BP-CNN (BP teacher) |" in page
