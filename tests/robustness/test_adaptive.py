"""Adaptive evaluation: restarts, fixed-step doubling, warm starts, sweeps, EOT, worst case per image.

Every checklist item is shown to fail on a model built to fool it (and the honest CNN to pass).
"""

from __future__ import annotations

import pytest
import torch
from robust_models import Noisy, Quantised, Wiggly

from ephw.errors import ConfigError
from ephw.robustness import checklist, survival
from ephw.robustness.attacks import DEFAULT_STEPS, AttackSpec, run_attack
from ephw.robustness.config import config_from_dict
from ephw.robustness.models import Classifier, ModelSpec, load_classifier
from ephw.robustness.runner import read_rows, run_robustness


def _status(check, item, model):
    it = next(i for i in check["items"] if i["id"] == item)
    return {f["status"] for f in it["findings"] if f["model"] == model}, it


def _details(it, model):
    return " ".join(f["detail"] for f in it["findings"] if f["model"] == model)


@pytest.fixture(scope="module")
def single_start_run(tmp_path_factory, tiny_cnn):
    """The old setting (1 start x 20 steps) on the honest CNN and on a wiggly copy of it."""
    cfg = config_from_dict(
        {
            "run": {"data": "digits", "n": 200, "seeds": [0]},
            "models": [{"name": "cnn"}, {"name": "wiggly"}],
            "attacks": [{"name": "pgd", "method": "pgd", "norm": "L2", "eps": [1.0], "steps": 20, "restarts": 1}],
            "checks": {"zero_grad_images": 0},
        }
    )
    models = {"cnn": Classifier("cnn", tiny_cnn), "wiggly": Classifier("wiggly", Wiggly(tiny_cnn))}
    out = tmp_path_factory.mktemp("single") / "r.jsonl"
    summary = run_robustness(cfg, out, progress=False, models=models)
    return read_rows(out), checklist.evaluate(read_rows(out)), summary


def test_restarts_and_fixed_step_doubling_flag_the_single_start_run(single_start_run):
    rows, check, _ = single_start_run
    st, it = _status(check, "double-restarts", "wiggly")
    assert st == {"FAIL"}, it
    base = next(r for r in rows if r["model"] == "wiggly" and r["check"] is None and r["kind"] == "attack")
    rerun = next(r for r in rows if r["model"] == "wiggly" and r["check"] == "double-restarts")
    assert base["accuracy"] - rerun["accuracy"] > 0.02  # restarts drop accuracy by > 2 points
    assert "2x restarts breaks" in _details(it, "wiggly")
    st, it = _status(check, "double-steps", "wiggly")
    assert st == {"FAIL"}, it
    steps = next(r for r in rows if r["model"] == "wiggly" and r["check"] == "double-steps")
    assert steps["notes"]["steps"] == 40 and steps["notes"]["rel_stepsize"] == pytest.approx(2.5 / 20)
    for item in ("double-restarts", "double-steps"):
        assert _status(check, item, "cnn")[0] == {"pass"}


def test_reruns_run_on_survivors_and_worst_case_is_their_intersection(single_start_run):
    rows, _, _ = single_start_run
    base = next(r for r in rows if r["model"] == "wiggly" and r["check"] is None and r["kind"] == "attack")
    rerun = next(r for r in rows if r["model"] == "wiggly" and r["check"] == "double-restarts")
    assert rerun["notes"]["attacked"] == base["correct"]  # paid only for survivors
    assert all(b == "1" or r == "-" for b, r in zip(base["survival"], rerun["survival"]))
    wc = survival.worst_case(rows)[("wiggly", "L2", 1.0, 0)]
    alive = survival.survivors([r["survival"] for r in rows if r["model"] == "wiggly" and r.get("survival")], 200)
    assert wc["correct"] == int(alive.sum()) <= min(r["correct"] for r in rows if r["model"] == "wiggly")


def test_pgd_travel_must_reach_two_eps():
    with pytest.raises(ConfigError, match="travel"):
        AttackSpec("p", "pgd", "L2", (1.0,), steps=10, rel_stepsize=0.1)
    assert AttackSpec("p", "pgd", "L2", (1.0,), steps=20).step_size * 20 == pytest.approx(2.5)
    # beyond 100 steps the default step stays 2.5 eps / 100: more steps travel further, not finer
    assert AttackSpec("p", "pgd", "L2", (1.0,), steps=200).step_size == pytest.approx(0.025)
    assert AttackSpec("p", "pgd", "L2", (1.0,)).step_size * DEFAULT_STEPS == pytest.approx(5.0)


def test_restarts_keep_the_per_image_best(tiny_cnn, digits_test):
    clf = Classifier("w", Wiggly(tiny_cnn))
    x, y = digits_test.batch(slice(0, 100))
    one = run_attack(clf, AttackSpec("p", "pgd", "L2", (1.0,), steps=20, restarts=1), x, y, 1.0, seed=0)
    five = run_attack(clf, AttackSpec("p", "pgd", "L2", (1.0,), steps=20, restarts=5), x, y, 1.0, seed=0)
    assert torch.equal(one.correct & five.correct, five.correct)  # restart 0 is the single start
    assert five.correct.sum() < one.correct.sum()
    assert five.notes["survivors"] == sorted(five.notes["survivors"], reverse=True)


def test_warm_start_and_square_flag_the_quantised_model(tmp_path, tiny_cnn):
    cfg = config_from_dict(
        {
            "run": {"data": "digits", "n": 64, "seeds": [0]},
            "models": [{"name": "cnn"}, {"name": "quantised"}],
            "attacks": [
                {"name": "pgd", "method": "pgd", "norm": "L2", "eps": [1.5], "steps": 20, "restarts": 1},
                {"name": "square", "method": "square", "norm": "L2", "eps": [1.5], "n_queries": 200},
            ],
            "checks": {"warm_start_from": "others", "zero_grad_images": 0, "double_steps": False},
        }
    )
    models = {"cnn": Classifier("cnn", tiny_cnn), "quantised": Classifier("quantised", Quantised(tiny_cnn))}
    run_robustness(cfg, tmp_path / "r.jsonl", progress=False, models=models)
    rows = read_rows(tmp_path / "r.jsonl")
    check = checklist.evaluate(rows)
    st, it = _status(check, "warm-start", "quantised")  # blind PGD from the CNN's adversarials = a transfer
    assert st == {"FAIL"} and "stronger by" in _details(it, "quantised")
    st, it = _status(check, "blackbox", "quantised")  # Square breaks images blind PGD left standing
    assert st == {"FAIL"} and "left standing" in _details(it, "quantised")
    assert _status(check, "blackbox", "cnn")[0] == {"pass"}
    assert _status(check, "warm-start", "cnn")[0] == {"pass"}


def test_grad_sweep_flags_a_truncated_ep_gradient(tmp_path):
    """bptt:1 reaches only the first layer: PGD on it is weak, the sweep's bptt:29 is not."""
    cfg = config_from_dict(
        {
            "run": {"data": "digits", "n": 24, "seeds": [0]},
            "models": [{"name": "ep", "tol": 1e-3, "grad": "bptt:1"}],
            "attacks": [{"name": "pgd", "method": "pgd", "norm": "L2", "eps": [1.0], "steps": 10, "restarts": 1}],
            "checks": {
                "grad_sweep": ["bptt:29"],
                "double_steps": False,
                "double_restarts": False,
                "zero_grad_images": 0,
            },
        }
    )
    run_robustness(cfg, tmp_path / "r.jsonl", progress=False)
    rows = read_rows(tmp_path / "r.jsonl")
    st, it = _status(checklist.evaluate(rows), "grad-sweep", "ep")
    assert st == {"FAIL"} and "stronger than the model's own bptt:1" in _details(it, "ep")
    assert {r["ep"]["grad"] for r in rows if r.get("check") == "grad:bptt:29"} == {"bptt:29"}


def _sweep_rows(kind: str, accs: dict[str, float], own: float) -> list[dict]:
    base = {"kind": "attack", "model": "m", "attack": "pgd", "eps": 0.5, "seed": 0, "n": 100, "classes": 10}
    rows = [{**base, "check": None, "accuracy": own, "ep": {"grad": "bptt:29"}}]
    rows += [{**base, "check": f"{kind}:{k}", "accuracy": a} for k, a in accs.items()]
    return rows


@pytest.mark.parametrize(
    "kind,accs,own,ok",
    [
        ("grad", {"bptt:10": 0.60, "bptt:40": 0.50, "implicit": 0.50}, 0.50, True),
        ("grad", {"bptt:10": 0.60, "bptt:20": 0.55, "bptt:40": 0.40}, 0.50, False),  # still falling in K
        ("eot", {"1": 0.70, "4": 0.55, "16": 0.54}, 0.70, False),  # the base attack lacks EOT
        ("eot", {"1": 0.70, "4": 0.60, "16": 0.50}, 0.50, False),  # still falling in the EOT count
        ("eot", {"1": 0.50, "4": 0.50, "16": 0.50}, 0.50, True),
    ],
)
def test_sweep_items_fail_when_accuracy_still_falls(kind, accs, own, ok):
    check = checklist.evaluate(_sweep_rows(kind, accs, own))
    st, it = _status(check, "grad-sweep" if kind == "grad" else "eot", "m")
    assert st == ({"pass"} if ok else {"FAIL"}), it


def test_randomised_model_is_detected_and_needs_eot(tmp_path, tiny_cnn):
    cfg = config_from_dict(
        {
            "run": {"data": "digits", "n": 64, "seeds": [0], "eval_draws": 4},
            "models": [{"name": "noisy"}],
            "attacks": [{"name": "pgd", "method": "pgd", "norm": "L2", "eps": [1.0], "steps": 10, "restarts": 1}],
            "checks": {"eot_sweep": [1, 8], "double_steps": False, "double_restarts": False, "zero_grad_images": 0},
        }
    )
    run_robustness(cfg, tmp_path / "r.jsonl", progress=False, models={"noisy": Classifier("noisy", Noisy(tiny_cnn))})
    rows = read_rows(tmp_path / "r.jsonl")
    clean = next(r for r in rows if r["kind"] == "clean")
    assert clean["stochastic"] is True and clean["draws"] == 4
    main = next(r for r in rows if r["kind"] == "attack" and r["check"] is None)
    assert main["accuracy_worst_draw"] <= main["accuracy_mean_draws"]
    assert {r["check"] for r in rows if r.get("check")} == {"eot:1", "eot:8"}
    st, it = _status(checklist.evaluate(rows), "eot", "noisy")
    assert "FAIL" in st and "no reported attack used EOT" in _details(it, "noisy")


def test_crossbar_read_noise_is_detected_and_eot_is_at_least_as_strong(digits_test):
    """Acceptance 3: pcm preset with read noise drawn on every read (``per_read``)."""
    clf = load_classifier(
        ModelSpec(
            "pcm",
            backend="crossbar",
            steps=60,
            tol=1e-4,
            grad="bptt:29",
            options={"preset": "pcm", "overrides": ["read_noise.time_structure=per_read"]},
        )
    )
    x, y = digits_test.batch(slice(0, 16))
    with torch.no_grad():
        assert not torch.equal(clf(x), clf(x))  # randomness detected: same batch, different logits
    spec = AttackSpec("p", "pgd", "L2", (0.75,), steps=10, restarts=1)  # one start each: EOT vs one draw
    acc = {}
    for eot in (1, 4):
        out = run_attack(clf, spec, x, y, 0.75, seed=0, eot=eot)
        acc[eot] = float(torch.stack([clf.predict(out.adv) == y for _ in range(4)]).float().mean())
    assert acc[4] <= acc[1]


def test_chance_item_asks_only_grids_with_a_largest_eps():
    base = {"kind": "attack", "model": "m", "seed": 0, "n": 100, "classes": 10, "check": None}
    one = [{**base, "attack": "probe", "eps": 0.5, "accuracy": 0.4}]  # an operating point: not checked
    grid = [{**base, "attack": "grid", "eps": e, "accuracy": a} for e, a in ((0.5, 0.4), (2.0, 0.35))]
    st, it = _status(checklist.evaluate(one), "chance", "m")
    assert st == {"not checked"} and "only eps" in _details(it, "m")
    st, it = _status(checklist.evaluate(grid), "chance", "m")
    assert st == {"FAIL"} and "eps 2: accuracy 0.350" in _details(it, "m")


def test_escalation_doubles_again_only_while_the_doubling_still_finds_more(tmp_path, tiny_cnn):
    cfg = config_from_dict(
        {
            "run": {"data": "digits", "n": 200, "seeds": [0]},
            "models": [{"name": "cnn"}, {"name": "wiggly"}],
            "attacks": [{"name": "pgd", "method": "pgd", "norm": "L2", "eps": [1.0], "steps": 20, "restarts": 1}],
            "checks": {"zero_grad_images": 0, "double_restarts": False, "escalate": 1},
        }
    )
    models = {"cnn": Classifier("cnn", tiny_cnn), "wiggly": Classifier("wiggly", Wiggly(tiny_cnn))}
    out = tmp_path / "r.jsonl"
    run_robustness(cfg, out, progress=False, models=models)
    rows = read_rows(out)

    def row(model, check):
        return next(r for r in rows if r["model"] == model and r["kind"] == "attack" and r["check"] == check)

    base, double, x4 = (row("wiggly", c) for c in (None, "double-steps", "steps-x4"))
    assert base["accuracy"] - double["accuracy"] >= 0.01  # the doubling still found more: escalate
    assert x4["notes"]["steps"] == 80 and x4["notes"]["attacked"] == double["correct"]
    assert not x4.get("skipped")
    base, double, x4 = (row("cnn", c) for c in (None, "double-steps", "steps-x4"))
    assert base["accuracy"] - double["accuracy"] < 0.01
    assert x4["skipped"].startswith("not needed") and x4["notes"]["attacked"] == 0
    assert set(x4["survival"]) == {"-"} and x4["correct"] == double["correct"]  # the worst case is unchanged
    st, it = _status(checklist.evaluate(rows), "double-steps", "cnn")
    assert st == {"pass"} and "converged at 1x steps" in _details(it, "cnn")
    assert "4x steps" in _details(it, "wiggly")


def _effort_rows(accuracies: list[float], skipped_last: bool = False) -> list[dict]:
    checks = [None, "double-steps", "steps-x4", "steps-x8"][: len(accuracies)]
    rows = [
        {"kind": "attack", "model": "m", "attack": "pgd", "eps": 0.5, "seed": 0, "check": c, "accuracy": a}
        for c, a in zip(checks, accuracies)
    ]
    if skipped_last:
        rows[-1]["skipped"] = "not needed"
    return rows


@pytest.mark.parametrize(
    ("accuracies", "skipped_last", "status", "says"),
    [
        ([0.50, 0.485, 0.485], False, "pass", "converged at 2x steps"),
        ([0.50, 0.485, 0.47], False, "FAIL", "still falling"),
        ([0.50, 0.499, 0.499], True, "pass", "converged at 1x steps"),
        ([0.50, 0.485], False, "FAIL", "still falling"),
    ],
)
def test_the_steps_check_passes_where_the_escalation_converged(accuracies, skipped_last, status, says):
    check = checklist.evaluate(_effort_rows(accuracies, skipped_last))
    st, it = _status(check, "double-steps", "m")
    assert st == {status} and says in _details(it, "m"), it
