"""The results page's verdict rule and robustness table, from synthetic measures (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ephw.reproduce.plan import build_plan
from ephw.reproduce.report import Measure, keeps, verdict, write_results_page


def test_verdict_rule() -> None:
    high, low, near = Measure([50.0, 51.0, 52.0]), Measure([10.0, 11.0, 12.0]), Measure([49.0, 51.0, 53.0])
    assert verdict(high, low) == "holds"
    assert verdict(low, high) == "does not hold"
    assert verdict(high, near).startswith("inconclusive")
    assert verdict(Measure([50.0]), Measure([10.0])).startswith("inconclusive (one seed")
    # one seed on n images: the Wilson interval of that accuracy decides
    assert verdict(Measure([50.0], [100]), Measure([10.0], [100])) == "holds"
    assert verdict(Measure([14.0], [100]), Measure([10.0], [100])).startswith("inconclusive (CIs overlap)")
    assert verdict(Measure([12.0], [500]), low) == "inconclusive (CIs overlap)"
    assert str(Measure([10.0], [100])) == "10.0 ± 7.4 (1 seed, 100 images)"  # the longer side of 5.5 .. 17.4
    assert verdict(None, low) == "not measured"
    assert keeps(low, high) == "does not hold" and keeps(high, low).startswith("holds (higher")
    # within the CIs is not enough: "keeps" holds only when the interval excludes a drop of > 3 points
    assert keeps(near, high).startswith(
        "inconclusive (a drop of more than 3 points is not excluded; Δ = +0.0 ± 7.5 points)"
    )
    tight = Measure([50.9, 51.0, 51.1])
    assert keeps(tight, high).startswith("holds (a drop of more than 3 points is excluded")
    assert keeps(near, high, margin=10.0).startswith("holds")
    # a reference at 2 % cannot drop by 3 points: not a "holds" by default
    assert keeps(Measure([2.0], [500]), Measure([2.0], [500])).startswith("inconclusive (the reference is at 2.0 %")


def test_two_models_at_zero_are_not_compared() -> None:
    """An attack that leaves no image standing for either model says nothing about either claim."""
    zero = Measure([0.0, 0.0, 0.0], [100] * 3, [[0.0] * 100] * 3)
    other = Measure([0.0], [100], [[0.0] * 100])
    assert verdict(zero, other) == "inconclusive (both at 0 %: the attack leaves no image to compare)"
    assert keeps(zero, other) == verdict(zero, other)  # not "holds (difference within the CIs)"
    # one of them above zero: compared (here too few images to exclude a 3-point drop)
    assert keeps(Measure([0.0], [100]), Measure([5.0], [100])).startswith("inconclusive (a drop of more than 3")


def test_seeds_on_the_same_images_keep_the_images_uncertainty() -> None:
    """Three seeds that agree exactly still leave open which 100 images were drawn."""
    same = Measure([15.0, 15.0, 15.0], [100, 100, 100])
    one = Measure([15.0], [100])
    assert same.half == pytest.approx(one.half) and same.half > 5
    assert str(same) == f"15.0 ± {one.half:.1f} (3 seeds, 100 images)"
    spread = Measure([10.0, 15.0, 20.0], [100] * 3)
    assert spread.half == pytest.approx((Measure([10.0, 15.0, 20.0]).half ** 2 + one.half**2) ** 0.5)
    assert verdict(same, Measure([5.0, 3.0, 7.0], [100] * 3)).startswith("inconclusive")


def test_page_has_robustness_table_and_every_claim(tmp_path: Path) -> None:
    label_l2, label_sq = "PGD-l2 ε=0.4932 (white-box)", "Square-linf ε=0.03137 (black-box)"
    label_wc = "worst case per image, L2 ε=0.4932 (white-box)"
    rob = {
        ("EP-CNN", label_l2): Measure([30.0, 31.0, 32.0]),
        ("BP-CNN", label_l2): Measure([10.0, 11.0, 12.0]),
        ("Adv-CNN", label_l2): Measure([40.0, 41.0, 42.0]),
        ("EP-CNN", label_sq): Measure([20.0, 21.0, 22.0]),
        ("Adv-CNN", label_sq): Measure([40.0, 41.0, 42.0]),
        ("EP-CNN", label_wc): Measure([5.0], [100]),
        ("Adv-CNN", label_wc): Measure([30.0, 31.0, 32.0]),
    }
    page = write_results_page(
        "cifar10",
        build_plan("cifar10", "cpu"),
        tmp_path / "run",
        tmp_path / "docs",
        {"rows": rob, "labels": [label_l2, label_sq, label_wc], "markdown": ""},
    ).read_text()
    assert f"| model | clean | {label_l2} | {label_sq} |" in page
    assert "| EP-CNN | – | 31.0 ± 2.5 (n=3) | 21.0 ± 2.5 (n=3) |" in page
    assert f"| (2) EP-CNN more robust than BP-CNN | {label_l2} | holds |" in page
    # claim 4 is only asked where Adv-CNN was not trained (ℓ∞ here), and fails on these numbers
    assert f"not ℓ2 PGD) | {label_sq} | does not hold |" in page
    assert f"not ℓ2 PGD) | {label_l2} |" not in page and f"not ℓ2 PGD) | {label_wc} |" not in page
    # the summary: one row per claim, its evaluations under their verdicts
    assert f"| (2) EP-CNN more robust than BP-CNN | {label_l2} | – | – | {label_sq}<br>{label_wc} |" in page
    assert "5.0 ± 6.2 (1 seed, 100 images)" in page  # one EP seed: the Wilson interval over its images
    assert "Not trained yet:" in page
    assert "no ℓ∞, black-box or corruption rows yet" not in page
    only_l2 = write_results_page(
        "cifar10",
        build_plan("cifar10", "cpu"),
        tmp_path / "run",
        tmp_path / "docs2",
        {"rows": rob, "labels": [label_l2, label_wc], "markdown": ""},
    ).read_text()
    assert (
        "(4) EP-CNN more robust than Adv-CNN where Adv-CNN was not trained (not ℓ2 PGD) | – | not measured" in only_l2
    )


def test_paired_verdict_sees_what_separate_intervals_cannot() -> None:
    """Same 100 images: A keeps every image B keeps plus 8 more. Separate Wilson intervals overlap;
    the paired interval of the difference does not, so the claim holds."""
    b_img = [1.0] * 10 + [0.0] * 90
    a_img = [1.0] * 18 + [0.0] * 82
    a, b = Measure([18.0], [100], [a_img]), Measure([10.0], [100], [b_img])
    assert verdict(Measure([18.0], [100]), Measure([10.0], [100])).startswith("inconclusive (CIs overlap)")
    assert verdict(a, b).startswith("holds (Δ = +8.0 ± ")
    assert verdict(b, a).startswith("does not hold")
    assert keeps(b, a).startswith("does not hold")
    # the same difference made of images that swap (A wins 12, loses 4): noisier, not separated at 100 images
    swap = [1.0] * 4 + [0.0] * 6 + [1.0] * 12 + [0.0] * 78
    assert verdict(Measure([16.0], [100], [swap]), b).startswith("inconclusive (Δ = +6.0 ± ")
    # identical scores: no difference, inconclusive (and "keeps" holds: no drop is possible)
    assert verdict(b, b).startswith("inconclusive (Δ = +0.0 ± 0.0")
    assert keeps(b, b).startswith("holds (a drop of more than 3 points is excluded; Δ = +0.0 ± 0.0")
    # 100 images that swap between the two: Δ = 0 but the interval still allows a 3-point drop
    assert keeps(Measure([10.0], [100], [swap[:4] + [0.0] * 6 + [1.0] * 6 + [0.0] * 84]), b).startswith("inconclusive")
    # seed-to-seed spread widens the paired interval: three seeds far apart are not separated
    spread = Measure([8.0, 18.0, 28.0], [100] * 3, [[1.0] * k + [0.0] * (100 - k) for k in (8, 18, 28)])
    assert verdict(spread, b).startswith("inconclusive")
    assert verdict(spread, b).endswith("; per seed 8.0 / 18.0 / 28.0 vs 10.0 %)")  # the seeds behind the interval
    assert "per seed" not in verdict(a, b)  # one seed each: the mean is the seed
    # per-image scores of a different image count cannot pair: the separate-interval rule applies
    assert verdict(Measure([18.0], [50], [a_img[:50]]), b).startswith("inconclusive (CIs overlap)")


def test_student_table_names_the_teacher_backend_and_the_seed_range(tmp_path: Path) -> None:
    """A simulated teacher's speed-up is labelled with its backend; seeds show as a min–max range."""
    from ephw.checkpoint import save_model
    from ephw.model import EnergyModel, named_config

    net = EnergyModel(named_config("digits"))  # the page reads only the checkpoint's meta
    for seed, ratio in ((0, 100.0), (1, 120.0), (2, 110.0)):
        timing = {"speedup": ratio, "teacher_backend": "crossbar"}
        metrics = {"test_accuracy": 0.6, "test_n": 100, "agreement": 0.8, "teacher_test_accuracy": 0.66}
        save_model(
            tmp_path / "run" / f"distilled-pcm-s{seed}" / "model.pt", net, {"metrics": {**metrics, "timing": timing}}
        )
    page = write_results_page(
        "cifar10", build_plan("cifar10", "cpu"), tmp_path / "run", tmp_path / "docs", None
    ).read_text()
    assert (
        "| Distilled BP-CNN (PCM teacher) | 80.0 ± 0.0 (n=3) | 66.0 ± 0.0 (n=3) | crossbar | 110× (100–120×) |" in page
    )
    assert "time the simulator, not the device" in page
    assert "recorded when each student finished training" in page and "same run" not in page


def test_student_speedups_come_from_the_one_run_timing_where_it_covers_the_model(tmp_path: Path) -> None:
    """The ``timing`` stage's speedup.json replaces the at-training ratios of the model files it timed."""
    import json

    from ephw.checkpoint import file_sha256, save_model
    from ephw.model import EnergyModel, named_config

    net = EnergyModel(named_config("digits"))
    run = tmp_path / "run"
    for seed in (0, 1):
        metrics = {"test_accuracy": 0.6, "test_n": 100, "agreement": 0.8, "timing": {"speedup": 500.0}}
        save_model(run / f"distilled-s{seed}" / "model.pt", net, {"metrics": metrics})
    one_run = {
        f"distilled-s{seed}": {
            "model_sha256": file_sha256(run / f"distilled-s{seed}" / "model.pt"),
            "speedup": ratio,
            "teacher_backend": "async",
        }
        for seed, ratio in ((0, 90.0), (1, 110.0))
    }
    record = {"batch": 256, "repeats": 5, "threads": 1, "device": "cpu", "students": one_run}
    (run / "speedup.json").write_text(json.dumps(record))

    def page() -> str:
        return write_results_page("cifar10", build_plan("cifar10", "cpu"), run, tmp_path / "docs", None).read_text()

    text = page()
    assert "| async | 100× (90–110×) |" in text
    assert "same run of `ephw bench students`" in text and "median of 5 interleaved rounds" in text
    assert "Students trained since" not in text
    # a retrained seed no longer matches the timed file: its own recorded ratio is shown, and said so
    save_model(
        run / "distilled-s1" / "model.pt",
        net,
        {"metrics": {"test_accuracy": 0.61, "test_n": 100, "agreement": 0.8, "timing": {"speedup": 500.0}}},
    )
    text = page()
    assert "295× (90–500×)" in text and "Students trained since that run show the ratios recorded" in text


def _scored(per_seed: list[list[int]]) -> Measure:
    """An accuracy measured per seed on the same images: 1 = the image survived."""
    return Measure(
        [100.0 * sum(s) / len(s) for s in per_seed],
        [len(s) for s in per_seed],
        [[float(v) for v in s] for s in per_seed],
    )


def test_what_would_settle_projects_the_images_an_observed_difference_needs() -> None:
    import math
    import re

    from ephw.reproduce.report import paired_difference, what_would_settle

    a = _scored([[1] * 30 + [0] * 70])  # 30 % vs 27 %: inconclusive on 100 images, one seed each
    b = _scored([[1] * 25 + [0] * 2 + [1, 0] * 3 + [0] * 67])
    diff, half, n = paired_difference(a, b)
    assert abs(diff) < half and "inconclusive" in verdict(a, b)
    text = what_would_settle(a, b, ">")
    needed = int(re.search(r"≈ ([\d,]+) images", text).group(1).replace(",", ""))
    assert needed == math.ceil(n * (half / abs(diff)) ** 2) and needed > n
    assert "its seed-to-seed spread is not counted" in text  # one seed each
    assert what_would_settle(a, b, ">", test_images=needed - 1).startswith("none within the")
    assert what_would_settle(_scored([[1] * 60 + [0] * 40]), b, ">") == ""  # settled: nothing to add
    zero = _scored([[0] * 100])
    assert what_would_settle(zero, zero, ">").startswith("a smaller ε")


def test_what_would_settle_asks_for_seeds_when_the_seed_spread_dominates() -> None:
    from ephw.reproduce.report import what_would_settle

    a = _scored([[1] * k + [0] * (200 - k) for k in (40, 80, 60)])  # 20 / 40 / 30 %: a wide seed spread
    b = _scored([[1] * k + [0] * (200 - k) for k in (50, 70, 48)])
    assert "inconclusive" in verdict(a, b)
    text = what_would_settle(a, b, ">")
    assert "training seeds of each (now 3/3)" in text
