"""Honest records: weights hashed by content, duplicates never reach a report, one writer per file,
and one-line errors for bad input (issue 10 items of the robustness commands)."""

from __future__ import annotations

import json

import pytest
import torch

from ephw.cli.main import main
from ephw.errors import ConfigError, OutputError
from ephw.outputs import OutputLock
from ephw.robustness.config import config_from_dict
from ephw.robustness.report import write_report
from ephw.robustness.runner import read_rows, run_robustness


def _ff_checkpoint(path, seed: int):
    from ephw.feedforward import CNNSpec, EPTopologyCNN, save_feedforward
    from ephw.model import named_config

    torch.manual_seed(seed)
    return save_feedforward(path, EPTopologyCNN(CNNSpec(named_config("digits"))), {"data": "digits"})


def _cfg(path) -> dict:
    return {
        "run": {"data": "digits", "n": 16, "seeds": [0]},
        "models": [{"name": "ff", "path": str(path)}],
        "attacks": [
            {"name": "pgd", "method": "pgd", "norm": "L2", "eps": [1.0], "steps": 4, "restarts": 1, "rel_stepsize": 0.5}
        ],
        "checks": {"zero_grad_images": 0, "double_steps": False, "double_restarts": False},
    }


def test_resume_with_changed_weights_at_the_same_path_is_refused(tmp_path):
    ckpt = _ff_checkpoint(tmp_path / "ff.pt", seed=0)
    out = tmp_path / "r.jsonl"
    run_robustness(config_from_dict(_cfg(ckpt)), out, progress=False, limit=1)
    rows = read_rows(out)
    assert len(rows[0]["weights_sha256"]) == 64
    assert run_robustness(config_from_dict(_cfg(ckpt)), out, progress=False).skipped == 1  # same weights: resumes
    _ff_checkpoint(ckpt, seed=1)  # retrained in place
    with pytest.raises(ConfigError, match="different weights"):
        run_robustness(config_from_dict(_cfg(ckpt)), out, progress=False)


def test_a_meta_only_edit_keeps_the_rows_a_weight_change_does_not(tmp_path):
    from ephw.checkpoint import META_EDITED_FROM, read_meta, update_meta

    ckpt = _ff_checkpoint(tmp_path / "ff.pt", seed=0)
    out = tmp_path / "r.jsonl"
    cfg = _cfg(ckpt)
    cfg["checks"]["transfer_from"] = "ff"  # a row that also hashes a surrogate (itself here)
    run_robustness(config_from_dict(cfg), out, progress=False)
    n = len(read_rows(out))
    old = read_rows(out)[0]["weights_sha256"]
    update_meta(ckpt, {"command": "ephw train bp ...", "seed": 0})  # a provenance stamp rewrites the file
    assert old in read_meta(ckpt)[META_EDITED_FROM]
    again = run_robustness(config_from_dict(cfg), out, progress=False)
    assert again.skipped == n and again.computed == 0  # every row, the transfer row too, still holds
    _ff_checkpoint(ckpt, seed=1)  # new weights (and a fresh meta): refused as before
    with pytest.raises(ConfigError, match="different weights"):
        run_robustness(config_from_dict(cfg), out, progress=False)


def test_duplicate_rows_never_enter_a_report(tmp_path):
    ckpt = _ff_checkpoint(tmp_path / "ff.pt", seed=0)
    out = tmp_path / "r.jsonl"
    run_robustness(config_from_dict(_cfg(ckpt)), out, progress=False)
    once = write_report(out, tmp_path / "once")["report"].read_text()
    out.write_text(out.read_text() * 2)  # two runs appended the same rows
    warnings: list[str] = []
    twice = write_report(out, tmp_path / "twice", warn=warnings.append)["report"].read_text()
    assert len(warnings) == 1 and "dropped 2 duplicate rows" in warnings[0] and "ff / pgd / eps 1" in warnings[0]
    assert twice.startswith(once.rstrip("\n")) and "## Dropped duplicate rows" in twice


def test_a_results_file_in_use_is_refused(tmp_path):
    ckpt = _ff_checkpoint(tmp_path / "ff.pt", seed=0)
    out = tmp_path / "r.jsonl"
    with OutputLock(out):
        with pytest.raises(OutputError, match="in use by another ephw run"):
            run_robustness(config_from_dict(_cfg(ckpt)), out, progress=False)
    assert not out.exists()


def _err(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ephw: error: ") and "\n" not in err, err
    return err


def test_one_line_errors(tmp_path, capsys):
    row = tmp_path / "nonrow.jsonl"
    row.write_text('{"kind": "clean", "model": "m", "eps": 0, "seed": 0}\n[1, 2, 3]\n')
    assert "nonrow.jsonl:2: not a results row" in _err(capsys, ["robustness", "report", str(row)])
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\x00\x01\xff\xfe binary")
    assert "not a text" in _err(capsys, ["robustness", "run", "--config", str(binary)])
    ten = tmp_path / "ten.toml"
    ten.write_text('[run]\nn = "ten"\n[[models]]\nname = "a"\n')
    assert "n must be an integer, got 'ten'" in _err(capsys, ["robustness", "run", "--config", str(ten)])
    steps = tmp_path / "steps.toml"
    steps.write_text('[[models]]\nname = "a"\nsteps = 2.5\n')
    assert "steps must be an integer" in _err(capsys, ["robustness", "run", "--config", str(steps)])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[run]\ndata = "digits"\nn = 4\nseeds = [0]\n[[models]]\nname = "a"\n')
    assert "is a file" in _err(capsys, ["robustness", "run", "--config", str(cfg), "--out", str(blocker / "r.jsonl")])
    valid = tmp_path / "valid.jsonl"
    valid.write_text(json.dumps({"kind": "clean", "model": "m", "eps": 0, "seed": 0, "data": "digits", "n": 1}) + "\n")
    assert "Not a directory" in _err(capsys, ["robustness", "report", str(valid), "--out", str(blocker / "rep")])
    assert "device" in _err(capsys, ["robustness", "run", "--config", str(cfg), "--device", "tpu"])


def test_device_option_is_accepted(tmp_path, capsys):
    ckpt = _ff_checkpoint(tmp_path / "ff.pt", seed=0)
    cfg = tmp_path / "c.toml"
    raw = _cfg(ckpt)
    cfg.write_text(
        '[run]\ndata = "digits"\nn = 8\nseeds = [0]\n'
        f'[[models]]\nname = "ff"\npath = "{ckpt}"\n'
        '[[attacks]]\nname = "pgd"\nmethod = "pgd"\nnorm = "L2"\neps = [1.0]\nsteps = 4\n'
        "restarts = 1\nrel_stepsize = 0.5\n"
        "[checks]\nzero_grad_images = 0\n"
    )
    assert raw["run"]["n"] == 16
    out = tmp_path / "r.jsonl"
    assert main(["robustness", "run", "--config", str(cfg), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert main(["robustness", "report", str(out), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["report"].endswith("report.md")


def test_a_corruptions_only_report_says_the_checklist_does_not_apply(tmp_path):
    ckpt = _ff_checkpoint(tmp_path / "ff.pt", seed=0)
    cfg = _cfg(ckpt)
    cfg["attacks"] = []
    cfg["corruptions"] = {"names": ["gaussian_noise"], "severities": [1]}
    out = tmp_path / "r.jsonl"
    run_robustness(config_from_dict(cfg), out, progress=False)
    assert any(r["kind"] == "corruption" for r in read_rows(out))
    text = write_report(out, tmp_path / "report")["report"].read_text()
    assert "the checklist does not apply" in text and "not checked" not in text
    assert "gaussian_noise" in text


def test_a_worst_case_with_attacks_still_to_run_is_an_upper_bound_and_not_plotted(tmp_path, capsys):
    from ephw.robustness.config import load_config
    from ephw.robustness.report import worst_curves
    from ephw.robustness.runner import pending_attacks

    ckpt = _ff_checkpoint(tmp_path / "ff.pt", seed=0)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[run]\ndata = "digits"\nn = 16\nseeds = [0]\n[[models]]\nname = "ff"\npath = "{ckpt}"\n'
        '[[attacks]]\nname = "pgd"\nmethod = "pgd"\nnorm = "L2"\neps = [1.0]\nsteps = 4\nrestarts = 1\n'
        '[[attacks]]\nname = "square"\nmethod = "square"\nnorm = "L2"\neps = [1.0]\nn_queries = 10\ncascade = true\n'
        "[checks]\nzero_grad_images = 0\ndouble_steps = false\ndouble_restarts = false\n"
    )
    out = tmp_path / "r.jsonl"
    run = ["robustness", "run", "--config", str(cfg), "--out", str(out), "--no-progress"]
    assert main([*run, "--limit", "2"]) == 0  # clean and PGD: the Square cascade is still to run
    rows = read_rows(out)
    pending = pending_attacks(load_config(cfg), rows)
    assert pending == {("ff", "L2", 1.0, 0): 1}
    assert worst_curves(rows)["L2"]["ff"][1.0] and "L2" not in worst_curves(rows, pending)
    wc = 100 * rows[-1]["accuracy"]  # one attack row so far: the worst case is its accuracy
    assert main(["robustness", "report", str(out), "--out", str(tmp_path / "plain")]) == 0
    assert f"| 1 | {wc:.1f} ± " in (tmp_path / "plain" / "report.md").read_text()  # no plan: looks finished
    assert main(["robustness", "report", str(out), "--config", str(cfg), "--out", str(tmp_path / "partial")]) == 0
    partial = (tmp_path / "partial" / "report.md").read_text()
    assert f"| 1 | ≤ {wc:.1f} (1 to run) |" in partial and "only an upper bound" in partial
    assert main(run) == 0  # the cascade runs: the worst case is final
    assert pending_attacks(load_config(cfg), read_rows(out)) == {}
    capsys.readouterr()
