"""The unroll escalation (``checks.unroll``), APGD on every swept gradient mode, APGD-T, and its checklist item.

The escalation is shown on feed-forward nets posing as EP models whose input gradient is useful
only for unrolls of at least ``k_star`` steps (shorter ones give exactly zero, as a truncated unroll
does for a deep readout): it continues while a longer unroll still breaks more and stops once it
breaks nothing more. The committed CIFAR-10 rows are recognised as done by the new plan.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from ephw.errors import ConfigError
from ephw.robustness import checklist, survival
from ephw.robustness.attacks import AttackSpec, run_attack
from ephw.robustness.config import config_from_dict, escalation_needed, parse_unroll, unroll_check
from ephw.robustness.gradients import AdjointStats, parse_grads
from ephw.robustness.models import Classifier, EPClassifier, SettleStats
from ephw.robustness.runner import _Runner, plan, read_rows, row_key, run_robustness

REPO = Path(__file__).resolve().parents[2]


class UnrollGated(EPClassifier):
    """``net`` posing as an EP model: the logits are ``net``'s, the input gradient is ``net``'s only
    when the gradient mode unrolls at least ``k_star`` steps (``bptt:K``), else exactly zero."""

    def __init__(self, net: nn.Module, k_star: int) -> None:
        nn.Module.__init__(self)
        self.inner, self.k_star = net, k_star
        self.grads = parse_grads("bptt:1")
        self.grad = self.grads[0]
        self.backend = SimpleNamespace(name="gated")
        self.settle_stats, self.adjoint_stats = SettleStats(), AdjointStats()
        self.seen: set[str] = set()

    def forward(self, x: Tensor) -> Tensor:
        logits = self.inner(x)
        if torch.is_grad_enabled() and x.requires_grad:
            self.seen.add(self.grad.label)
            if self.grad.k < self.k_star:
                return logits.detach() + 0.0 * x.flatten(1)[:, :1]
        return logits


APGD = {"method": "autoattack", "norm": "L2", "eps": [0.5], "version": "custom", "cascade": True, "restarts": 1}


def _config(unroll=(2, 4, 8), n=50, **checks):
    return config_from_dict(
        {
            "run": {"data": "digits", "n": n, "seeds": [0]},
            "models": [{"name": "late"}, {"name": "early"}, {"name": "cnn"}],
            "attacks": [
                {"name": "pgd", "method": "pgd", "norm": "L2", "eps": [0.5], "steps": 10, "restarts": 1},
                {"name": "apgd", **APGD, "attacks": ["apgd-ce"]},
                {"name": "apgd-t", **APGD, "attacks": ["apgd-t"]},
            ],
            "checks": {
                "double_steps": False,
                "double_restarts": False,
                "zero_grad_images": 0,
                "unroll": list(unroll),
                "escalate_drop": 0.06,
                **checks,
            },
        }
    )


def _status(check, item, model):
    it = next(i for i in check["items"] if i["id"] == item)
    return {f["status"] for f in it["findings"] if f["model"] == model}, it


def _details(it, model):
    return " ".join(f["detail"] for f in it["findings"] if f["model"] == model)


# ------------------------------------------------------------------ config and plan
def test_unroll_checks_are_named_and_the_rule_is_the_escalations():
    assert unroll_check(60) == "unroll:60" and parse_unroll("unroll:60") == 60
    assert parse_unroll("grad:bptt:60") is None and parse_unroll(None) is None
    assert escalation_needed(0.01, 0.01) and not escalation_needed(0.0099, 0.01)


@pytest.mark.parametrize(
    ("checks", "match"),
    [
        ({"unroll": [29]}, "at least two"),
        ({"unroll": [60, 29]}, "increasing"),
        ({"unroll": [0, 29]}, "K >= 1"),
        ({"unroll": [29, 29]}, "increasing"),
        ({"cascade_sweep": ["pgd"]}, "not a white-box cascade attack"),
        ({"cascade_sweep": ["nope"]}, "not a white-box cascade attack"),
    ],
)
def test_bad_unroll_settings_are_refused(checks, match):
    with pytest.raises(ConfigError, match=match):
        _config(**checks)


def test_plan_puts_the_sweeps_and_the_escalation_after_every_cascade_row_of_ep_models_only():
    cfg = _config(grad_sweep=["bptt:3", "bptt:4", "implicit"])
    tasks = plan(cfg, ep_models=frozenset({"late", "early"}))
    rows = [(t.attack, t.check) for t in tasks if t.model == "late" and t.kind == "attack"]
    assert rows == [
        ("pgd", None),
        ("pgd", "grad:bptt:3"),
        ("pgd", "grad:bptt:4"),
        ("pgd", "grad:implicit"),
        ("apgd", "cascade"),
        ("apgd-t", "cascade"),
        # the cascade attacks with each swept mode (bptt:4 is an unroll level: the escalation runs it)
        ("apgd", "grad:bptt:3"),
        ("apgd-t", "grad:bptt:3"),
        ("apgd", "grad:implicit"),
        ("apgd-t", "grad:implicit"),
        # the escalation, level by level
        ("apgd", "unroll:2"),
        ("apgd-t", "unroll:2"),
        ("apgd", "unroll:4"),
        ("apgd-t", "unroll:4"),
        ("apgd", "unroll:8"),
        ("apgd-t", "unroll:8"),
    ]
    ff = [(t.attack, t.check) for t in tasks if t.model == "cnn" and t.kind == "attack"]
    assert ff == [("pgd", None), ("apgd", "cascade"), ("apgd-t", "cascade")]
    only = plan(_config(cascade_sweep=["apgd-t"]), ep_models=frozenset({"late"}))
    assert [t.check for t in only if t.model == "late" and t.attack == "apgd"] == ["cascade"]
    assert [t.check for t in only if t.model == "late" and t.attack == "apgd-t"][1:] == [
        "unroll:2",
        "unroll:4",
        "unroll:8",
    ]


# ------------------------------------------------------------------ the escalation on gated models
@pytest.fixture(scope="module")
def gated_run(tmp_path_factory, tiny_cnn):
    """``late`` needs K >= 4, ``early`` K >= 2; levels 2 -> 4 -> 8 of APGD-CE at a 6-point threshold (APGD-T
    runs once, in the cascade: at 9 targets x 100 steps per level it would only slow the test); ``cnn`` is
    feed-forward."""
    models = {
        "late": Classifier("late", UnrollGated(tiny_cnn, 4), "ep"),
        "early": Classifier("early", UnrollGated(tiny_cnn, 2), "ep"),
        "cnn": Classifier("cnn", tiny_cnn),
    }
    out = tmp_path_factory.mktemp("unroll") / "r.jsonl"
    run_robustness(_config(cascade_sweep=["apgd"]), out, progress=False, models=models)
    return read_rows(out), models


def _row(rows, model, attack, check):
    return next(r for r in rows if r["model"] == model and r.get("attack") == attack and r.get("check") == check)


def _broke(rows, model, k):
    return _row(rows, model, "apgd", f"unroll:{k}")["survival"].count("0")


def test_the_escalation_continues_while_a_longer_unroll_breaks_more(gated_run):
    rows, models = gated_run
    assert _broke(rows, "late", 2) < 3  # a zero gradient finds (next to) nothing
    assert _broke(rows, "late", 4) >= 3  # K = 4 breaks >= the 6-point threshold (3 of 50 images) more
    x8 = _row(rows, "late", "apgd", "unroll:8")
    assert not x8.get("skipped") and x8["on_survivors"] and x8["ep"]["grad"] == "bptt:8"
    assert {"bptt:2", "bptt:4", "bptt:8"} <= models["late"].module.seen  # APGD differentiated each K
    st, it = _status(checklist.evaluate(rows), "unroll", "late")
    assert st == {"pass"} and "converged at K=4" in _details(it, "late"), it


def test_the_escalation_stops_once_a_longer_unroll_breaks_nothing_more(gated_run):
    rows, _ = gated_run
    assert _broke(rows, "early", 2) >= 3 and _broke(rows, "early", 4) < 3
    x8 = _row(rows, "early", "apgd", "unroll:8")
    assert x8["skipped"].startswith("not needed: K=4 broke") and x8["notes"]["attacked"] == 0
    assert set(x8["survival"]) == {"-"}
    alive = survival.worst_case(rows)[("early", "L2", 0.5, 0)]["alive"]  # a level not needed breaks nothing
    assert int(alive.sum()) == _row(rows, "early", "apgd", "unroll:4")["correct"] > 0
    st, it = _status(checklist.evaluate(rows), "unroll", "early")
    assert st == {"pass"} and "K=8 not needed" in _details(it, "early") and "converged at K=2" in _details(it, "early")


def test_each_level_attacks_only_the_survivors_of_every_row_before_it(gated_run):
    rows, _ = gated_run
    mine = [r for r in rows if r["model"] == "late" and r["kind"] in ("clean", "attack")]
    for i, r in enumerate(mine):
        if (r.get("check") or "").startswith("unroll:") and not r.get("skipped"):
            standing = survival.survivors([m["survival"] for m in mine[:i]], len(r["survival"]))
            assert torch.equal(torch.tensor([c != "-" for c in r["survival"]]), standing), r["check"]


def test_a_longer_unroll_still_breaking_more_fails_the_checklist(gated_run):
    rows, _ = gated_run
    cut = [r for r in rows if r.get("check") != "unroll:8"]  # as if checks.unroll stopped at K = 4
    st, it = _status(checklist.evaluate(cut), "unroll", "late")
    assert st == {"FAIL"} and "still falling at K=4" in _details(it, "late"), it
    st, it = _status(checklist.evaluate(rows), "unroll", "cnn")
    assert st == {"not checked"} and "feed-forward" in _details(it, "cnn")


def test_the_feed_forward_model_gets_apgd_t_but_no_unroll_rows(gated_run):
    rows, _ = gated_run
    cnn = [(r["attack"], r["check"]) for r in rows if r["model"] == "cnn" and r["kind"] == "attack"]
    assert cnn == [("pgd", None), ("apgd", "cascade"), ("apgd-t", "cascade")]
    assert _row(rows, "cnn", "apgd-t", "cascade")["notes"]["aa_attacks"] == ["apgd-t"]


# ------------------------------------------------------------------ the checklist item on synthetic rows
def _unroll_rows(broke: dict[int, int], n: int = 200, skipped: tuple[int, ...] = ()) -> list[dict]:
    rows = [
        {"kind": "clean", "model": "ep", "model_kind": "ep", "eps": 0.0, "seed": 0, "accuracy": 0.9},
        {"kind": "clean", "model": "ff", "model_kind": "feedforward", "eps": 0.0, "seed": 0, "accuracy": 0.9},
    ]
    for k, b in broke.items():
        record = "-" * n if k in skipped else "0" * b + "1" * (n - b)
        row = {"kind": "attack", "model": "ep", "model_kind": "ep", "attack": "apgd", "eps": 0.5, "seed": 0}
        rows.append({**row, "check": f"unroll:{k}", "survival": record})
        if k in skipped:
            rows[-1]["skipped"] = "not needed"
    return rows


@pytest.mark.parametrize(
    ("broke", "skipped", "status", "says"),
    [
        ({29: 6, 60: 1}, (), "pass", "converged at K=29"),
        ({29: 6, 60: 2}, (), "FAIL", "still falling at K=60"),  # exactly 1 point (2 of 200) fails
        ({29: 6, 60: 4, 120: 0}, (), "pass", "converged at K=60"),
        ({29: 6, 60: 4, 120: 3}, (), "FAIL", "still falling at K=120"),
        ({29: 0, 60: 1, 120: 0}, (120,), "pass", "K=120 not needed"),
        ({29: 9}, (), "not checked", "nothing to compare"),
    ],
)
def test_the_unroll_item_fails_exactly_when_a_longer_unroll_still_breaks_more(broke, skipped, status, says):
    check = checklist.evaluate(_unroll_rows(broke, skipped=skipped))
    st, it = _status(check, "unroll", "ep")
    assert st == {status} and says in _details(it, "ep"), it
    assert _status(check, "unroll", "ff")[0] == {"not checked"}


def test_an_ep_model_without_unroll_rows_is_not_checked():
    rows = _unroll_rows({})
    st, it = _status(checklist.evaluate(rows), "unroll", "ep")
    assert st == {"not checked"} and "checks.unroll" in _details(it, "ep")


# ------------------------------------------------------------------ APGD-T
def test_apgd_t_is_deterministic_given_a_seed(cnn, images):
    x, y = images
    spec = AttackSpec("apgd-t", "autoattack", "L2", (1.0,), version="custom", attacks=("apgd-t",), restarts=1)
    a, b = (run_attack(cnn, spec, x[:32], y[:32], 1.0, seed=3) for _ in range(2))
    assert torch.equal(a.adv, b.adv) and torch.equal(a.correct, b.correct)
    assert a.notes["aa_attacks"] == ["apgd-t"]
    assert (~a.correct).sum() > (cnn.predict(x[:32]) != y[:32]).sum()  # it breaks images
    assert float((a.adv - x[:32]).flatten(1).norm(dim=1).max()) <= 1.0 + 1e-4


# ------------------------------------------------------------------ the committed CIFAR-10 rows
@pytest.mark.parametrize("part", ["white-box", "probe"])
def test_the_committed_cifar10_rows_stay_done_under_the_new_plan(part, monkeypatch):
    """Every committed row of the part is still planned and matches its fingerprint (the run would skip
    it, not refuse it); the new rows are APGD-T-l2's cascade and, for the EP-CNN, the sweeps and levels."""
    from ephw.reproduce.pipeline import Pipeline
    from ephw.reproduce.robustness import part_configs, results_path
    from ephw.robustness import shards
    from ephw.robustness.naming import family
    from ephw.robustness.runner import dedupe

    monkeypatch.chdir(REPO)  # the rows' fingerprints hold the models' paths as `ephw reproduce` spells them
    run_dir = Path("reproduce") / "cifar10"
    if not (run_dir / f"robustness-{part}.json").is_file():
        pytest.skip("no committed CIFAR-10 run")
    pipe = Pipeline("cifar10", "cpu", run_dir, ship_dir=None)
    raw = dict(part_configs(pipe))[part]
    cfg = config_from_dict(json.loads(json.dumps(raw)))
    rows, _ = dedupe(shards.read_all(results_path(pipe, part), read_rows))
    done = {row_key(r): r for r in rows}
    ep_families = {s.model for s in pipe.steps if s.stage == "train-ep"}
    ep = frozenset(m.name for m in cfg.models if family(m.name) in ep_families)
    tasks = plan(cfg, frozenset(), ep)
    runner = _Runner(cfg, torch.float32, None)
    assert set(done) <= {t.key for t in tasks}  # every committed row is still planned ...
    assert all(runner.matches(done[t.key], t) for t in tasks if t.key in done)  # ... and still holds
    new = [t for t in tasks if t.key not in done]
    for t in new:
        assert t.attack == "APGD-T-l2" or t.model in ep, t
    if part == "white-box":
        (ep_cnn,) = ep
        at = sorted((t.attack, t.check) for t in new if t.model == ep_cnn and abs(t.eps - 0.4932) < 1e-9)
        assert at == sorted(
            [("APGD-T-l2", "cascade")]
            + [(a, f"grad:{g}") for a in ("APGD-l2", "APGD-T-l2") for g in ("bptt:3", "bptt:10", "implicit")]
            + [(a, f"unroll:{k}") for a in ("APGD-l2", "APGD-T-l2") for k in (29, 60, 120)]
        )


def test_appending_a_cascade_attack_and_unroll_keeps_a_finished_runs_rows(tmp_path, tiny_cnn):
    """A cascade row depends on the attacks before it: one appended after it (and ``checks.unroll``,
    whose rows come after every cascade row) leave it done; one inserted before it is refused."""
    pgd = {"name": "pgd", "method": "pgd", "norm": "L2", "eps": [0.5], "steps": 10, "restarts": 1}
    apgd = {"name": "apgd", **APGD, "attacks": ["apgd-ce"]}
    apgd_t = {"name": "apgd-t", **APGD, "attacks": ["apgd-t"]}

    def cfg(attacks, **checks):
        return config_from_dict(
            {
                "run": {"data": "digits", "n": 16, "seeds": [0]},
                "models": [{"name": "ep"}],
                "attacks": attacks,
                "checks": {"double_steps": False, "double_restarts": False, "zero_grad_images": 0, **checks},
            }
        )

    models = {"ep": Classifier("ep", UnrollGated(tiny_cnn, 1), "ep")}
    out = tmp_path / "r.jsonl"
    run_robustness(cfg([pgd, apgd]), out, progress=False, models=models)
    before = read_rows(out)
    summary = run_robustness(cfg([pgd, apgd, apgd_t], unroll=[2, 4]), out, progress=False, models=models)
    after = read_rows(out)
    assert after[: len(before)] == before and summary.skipped == len(before)
    assert [(r["attack"], r["check"]) for r in after[len(before) :]] == [
        ("apgd-t", "cascade"),
        ("apgd", "unroll:2"),
        ("apgd-t", "unroll:2"),
        ("apgd", "unroll:4"),
        ("apgd-t", "unroll:4"),
    ]
    with pytest.raises(ConfigError, match="different settings"):
        run_robustness(cfg([pgd, apgd_t, apgd], unroll=[2, 4]), tmp_path / "r.jsonl", progress=False, models=models)
