"""Runs: rows, resume after a kill, refusing mixed settings; the checklist catches an obfuscated model."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import scipy.stats
import torch
from robust_models import Quantised

from ephw.cli.main import main
from ephw.errors import ConfigError
from ephw.robustness import checklist
from ephw.robustness.config import config_from_dict, load_config
from ephw.robustness.models import Classifier
from ephw.robustness.report import write_report
from ephw.robustness.runner import plan, read_rows, row_key, run_robustness

REPO = Path(__file__).resolve().parents[2]


def _config(**run):
    return config_from_dict(
        {
            "run": {"data": "digits", "n": 64, "seeds": [0, 1], **run},
            "models": [{"name": "cnn"}, {"name": "quantised"}],
            "attacks": [
                {"name": "pgd-l2", "method": "pgd", "norm": "L2", "eps": [0.5, 1.5, 3.0], "steps": 20, "restarts": 1},
                {"name": "square-l2", "method": "square", "norm": "L2", "eps": [0.5, 1.5, 3.0], "n_queries": 200},
            ],
            "checks": {"transfer_from": "cnn", "check_eps": {"pgd-l2": 3.0}, "zero_grad_images": 32},
        }
    )


def test_plan_runs_a_models_checked_eps_first_and_keeps_each_eps_order():
    tasks = plan(_config())
    rows = [t for t in tasks if t.model == "quantised" and t.seed == 0 and t.kind == "attack"]
    assert [t.eps for t in rows[:5]] == [3.0] * 5 and 3.0 not in [t.eps for t in rows[5:]]
    assert [t.check for t in rows[:5]] == [None, None, "double-steps", "double-restarts", "transfer:cnn"]
    for e in (0.5, 1.5):  # rows at one eps: the main attacks in config order
        assert [t.attack for t in rows if t.eps == e] == ["pgd-l2", "square-l2"]


def test_escalated_reruns_follow_their_doubling_and_bad_levels_are_refused():
    raw = {
        "run": {"data": "digits", "n": 8, "seeds": [0]},
        "models": [{"name": "cnn"}],
        "attacks": [{"name": "pgd", "method": "pgd", "norm": "L2", "eps": [1.0], "steps": 20}],
        "checks": {"escalate": 2, "zero_grad_images": 0},
    }
    checks = [t.check for t in plan(config_from_dict(raw)) if t.kind == "attack"][1:]
    assert checks == ["double-steps", "steps-x4", "steps-x8", "double-restarts", "restarts-x4", "restarts-x8"]
    for bad in ({"escalate": -1}, {"escalate": 9}, {"escalate_drop": 2.0}):
        with pytest.raises(ConfigError, match="escalate"):
            config_from_dict({**raw, "checks": {**raw["checks"], **bad}})


@pytest.fixture(scope="module")
def obfuscation_run(tmp_path_factory, tiny_cnn):
    out = tmp_path_factory.mktemp("run") / "results.jsonl"
    models = {"cnn": Classifier("cnn", tiny_cnn), "quantised": Classifier("quantised", Quantised(tiny_cnn))}
    summary = run_robustness(_config(), out, progress=False, models=models)
    return summary, read_rows(out)


def test_first_models_rows_run_first_in_their_own_order(tmp_path, tiny_cnn):
    models = {"cnn": Classifier("cnn", tiny_cnn), "quantised": Classifier("quantised", Quantised(tiny_cnn))}
    cfg = _config(seeds=[0])
    out = tmp_path / "results.jsonl"
    run_robustness(cfg, out, progress=False, limit=3, models=models, first=["quantised", "not-a-model"])
    planned = [t.key for t in plan(cfg) if t.model == "quantised"][:3]
    assert [row_key(r) for r in read_rows(out)] == planned
    run_robustness(cfg, out, progress=False, limit=1, models=models, first=["cnn", "quantised"])
    assert row_key(read_rows(out)[-1]) == next(t.key for t in plan(cfg) if t.model == "cnn")


def test_one_row_per_task_and_eps_zero_free_rows(obfuscation_run):
    summary, rows = obfuscation_run
    assert summary.computed == summary.total == len(rows) == len(plan(_config()))
    assert len({row_key(r) for r in rows}) == len(rows)
    clean = {(r["model"], r["seed"]): r["accuracy"] for r in rows if r["kind"] == "clean"}
    assert clean[("cnn", 0)] >= 0.9
    for r in rows:
        assert sum(r["per_class_total"]) == r["n"]
        if "correct" in r:
            assert sum(r["per_class_correct"]) == r["correct"]


def test_checklist_flags_the_quantised_model(obfuscation_run):
    summary, rows = obfuscation_run
    check = json.loads(summary.checklist.read_text())
    assert check == json.loads(checklist.dumps(checklist.evaluate(rows)))
    items = {it["id"]: it for it in check["items"]}
    assert check["suspect_models"] == ["quantised"]

    def status(item, model):
        return {f["status"] for f in items[item]["findings"] if f["model"] == model}

    assert status("zero-gradients", "quantised") == {"FAIL"}
    assert "FAIL" in status("blackbox", "quantised")  # blind PGD, Square still finds examples
    assert status("zero-gradients", "cnn") == {"pass"}
    assert items["transfer"]["status"] == "FAIL"  # the CNN's own PGD examples beat blind PGD on the copy


def test_report_flags_it_and_its_intervals_are_scipys(obfuscation_run, tmp_path):
    summary, rows = obfuscation_run
    files = write_report(summary.results, tmp_path / "report")
    md = files["report"].read_text()
    assert "quantised ⚠" in md and "**FAIL ⚠**" in md and "cnn ⚠" not in md
    assert files["attacks"].stat().st_size > 10_000
    accs = [
        r["accuracy"]
        for r in rows
        if r["model"] == "cnn" and r["attack"] == "pgd-l2" and r["eps"] == 0.5 and r["check"] is None
    ]
    lo, hi = scipy.stats.t.interval(0.95, len(accs) - 1, loc=sum(accs) / len(accs), scale=scipy.stats.sem(accs))
    mean = sum(accs) / len(accs)
    # the seeds' t-interval and the 64 test images' Wilson interval, in quadrature
    wilson = scipy.stats.binomtest(round(mean * 64), 64).proportion_ci(method="wilson")
    half = math.hypot(hi - mean, max(mean - wilson.low, wilson.high - mean))
    assert f"| 0.5 | {100 * mean:.1f} ± {100 * half:.1f} |" in md


def test_rerun_skips_and_changed_settings_are_refused(obfuscation_run, tiny_cnn):
    summary, rows = obfuscation_run
    models = {"cnn": Classifier("cnn", tiny_cnn), "quantised": Classifier("quantised", Quantised(tiny_cnn))}
    again = run_robustness(_config(), summary.results, progress=False, models=models)
    assert again.computed == 0 and again.skipped == again.total
    assert read_rows(summary.results) == rows
    with pytest.raises(ConfigError, match="different settings"):
        run_robustness(_config(n=32), summary.results, progress=False, models=models)


def test_torn_last_line_is_cut(tmp_path):
    path = tmp_path / "r.jsonl"
    row = '{"eps": 0, "kind": "clean", "model": "m", "seed": 0}'
    path.write_text(row + '\n{"b": ')
    assert read_rows(path, repair=True) == [json.loads(row)]
    assert path.read_text() == row + "\n"


def test_kill_9_then_resume_redoes_nothing(tmp_path):
    """The acceptance check: a killed `ephw robustness run` resumes without redoing rows."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[run]\ndata = "digits"\nn = 16\nseeds = [0, 1]\n'
        '[[models]]\nname = "ep"\ntol = 1e-3\ngrad = "bptt:10"\n'
        '[[attacks]]\nname = "pgd"\nmethod = "pgd"\nnorm = "L2"\neps = [0.3, 0.6, 1.0, 1.5, 2.0, 3.0]\nsteps = 40\n'
        "restarts = 1\n"
        "[checks]\ndouble_steps = false\nzero_grad_images = 0\n"
    )
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "ephw.cli.main",
        "robustness",
        "run",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600  # a loaded machine can take minutes for the first rows
        while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = read_rows(out, repair=True)
    total = len(plan(load_config(cfg)))
    assert 3 <= len(before) < total, "the run finished before it could be killed"
    assert main(["robustness", "run", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    after = read_rows(out)
    assert after[: len(before)] == before  # untouched, incl. their timestamps
    assert len(after) == total and len({row_key(r) for r in after}) == total


def test_cli_report_and_grad_override(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[run]\ndata = "digits"\nn = 8\nseeds = [0]\n[[models]]\nname = "ep"\ntol = 1e-3\n'
        '[[attacks]]\nname = "pgd"\nmethod = "pgd"\nnorm = "L2"\neps = [1.0]\nsteps = 3\nrestarts = 1\n'
        "[checks]\ndouble_steps = false\nzero_grad_images = 4\n"
    )
    out = tmp_path / "r.jsonl"
    assert (
        main(["robustness", "run", "--config", str(cfg), "--out", str(out), "--grad", "implicit", "--no-progress"]) == 0
    )
    rows = read_rows(out)
    assert {r["ep"]["grad"] for r in rows} == {"implicit"}
    assert any(r["ep"]["adjoint_solves"] > 0 for r in rows)
    capsys.readouterr()
    assert main(["robustness", "report", str(out)]) == 0
    files = json.loads(capsys.readouterr().out)
    assert Path(files["report"]).exists() and Path(files["attacks"]).exists()
    assert main(["robustness", "run", "--config", str(cfg), "--out", str(out), "--grad", "newton"]) == 2
    assert main(["robustness", "report", str(tmp_path / "missing.jsonl")]) == 2
    assert torch.get_num_threads() >= 1
