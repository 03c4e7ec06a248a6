"""ephw reproduce: plan, skip/resume logic, provenance in the meta, shipping, the results page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from ephw.checkpoint import read_meta, save_model
from ephw.cli.main import main
from ephw.errors import ConfigError, OutputError
from ephw.model import EnergyModel, named_config
from ephw.reproduce.pipeline import Pipeline, step_options
from ephw.reproduce.plan import BUDGETS, build_plan
from ephw.reproduce.report import Measure, write_results_page
from ephw.robustness.shards import parse_shard


def test_plan_has_every_model_of_the_paper() -> None:
    steps = build_plan("cifar10", "cpu")
    models = {s.model for s in steps}
    assert {"EP-CNN", "BP-CNN", "BP-CNN (ReLU+BN)", "Adv-CNN", "Distilled BP-CNN", "Distilled BP-CNN (ll)"} <= models
    assert {"Distilled ResNet-18", "Distilled BP-CNN (PCM teacher)", "Distilled BP-CNN (Loihi-2 teacher)"} <= models
    for model in models - {"EP-CNN"}:
        assert len([s for s in steps if s.model == model]) >= 3  # >= 3 seeds of every feed-forward model
    shipped = [s.ship_as for s in steps if s.ship_as]
    assert len(shipped) == len(set(shipped)) == len(models)
    # every student of the EP-CNN; claim 7's controls are taught by the BP-CNN of their seed (test_bp_teacher_control)
    controls = {"Distilled BP-CNN (BP teacher)", "Distilled BP-CNN (ll, BP teacher)"}
    assert all(s.needs == ("ep-s0",) for s in steps if s.stage == "distill" and s.model not in controls)
    lava, control = (next(s for s in steps if s.name == n) for n in ("distilled-lava-fixed-s0", "distilled-subset-s0"))
    subset = lava.argv[lava.argv.index("--train-n") : lava.argv.index("--train-n") + 2]
    assert subset == ("--train-n", "5000") and control.argv[control.argv.index("--train-n") :][:2] == subset
    assert "--teacher-backend" not in control.argv  # the same images, the digital teacher
    ep = next(s for s in steps if s.name == "ep-s0")
    assert ep.argv == ("train", "ep", "--data", "cifar10", "--config", "cpu-small", "--epochs", "20", "--seed", "0")


def test_unknown_budget_and_stage() -> None:
    with pytest.raises(ConfigError, match="unknown budget"):
        build_plan("cifar10", "huge")
    with pytest.raises(ConfigError, match="unknown stage"):
        Pipeline("cifar10", "smoke", "/tmp/x").run_steps(["training"])


def fake_runner(calls: list[list[str]], fail: set[str] = frozenset(), code: int = 2):
    """Writes a minimal model.pt into --out instead of training (stage logic only); the steps in
    ``fail`` leave a partial checkpoint and exit with ``code``."""
    from ephw.checkpoint import save_model
    from ephw.model import EnergyModel, named_config

    def run(argv: list[str]) -> int:
        calls.append(argv)
        if argv[:2] == ["bench", "students"]:  # the timing stage: a speedup.json over every model folder
            from ephw.checkpoint import file_sha256

            run = Path(argv[argv.index("--run-dir") + 1])
            timed = {p.parent.name: {"model_sha256": file_sha256(p), "speedup": 9.0} for p in run.glob("*/model.pt")}
            Path(argv[argv.index("--out") + 1]).write_text(json.dumps({"students": timed}))
            return 0
        out = Path(argv[argv.index("--out") + 1])
        if out.name in fail:
            out.mkdir(parents=True, exist_ok=True)
            (out / "checkpoint.pt").write_bytes(b"partial")
            return code
        net = EnergyModel(named_config("digits"))
        save_model(out / "model.pt", net, {"metrics": {"test_accuracy": 0.5, "test_n": 20}, **trainer_meta(argv)})
        return 0

    return run


def trainer_meta(argv: list[str]) -> dict:
    """The provenance a real trainer records for command ``argv``: trainer, data and every setting."""
    settings = {"data_root": None, **step_options(argv)}
    trainer = "distill" if argv[0] == "distill" else argv[1]
    return {"data": settings.get("data", "digits"), "trainer": trainer, "settings": settings}


def _stamped_model(folder: Path) -> None:
    """A finished step's model.pt that already carries the pipeline's provenance stamp."""
    from ephw.checkpoint import save_model
    from ephw.model import EnergyModel, named_config

    save_model(folder / "model.pt", EnergyModel(named_config("digits")), {"pipeline_step": folder.name})


def test_skip_resume_and_wait(tmp_path: Path, tiny_tree: Path) -> None:
    calls: list[list[str]] = []
    pipe = Pipeline("cifar10", "smoke", tmp_path / "run", str(tiny_tree), fake_runner(calls, {"ep-s0"}), ship_dir=None)
    statuses = pipe.run_steps(["train-ep", "distill"], log=lambda _: None)
    assert [s.status for s in statuses] == ["failed"]  # stops at the first failure
    calls.clear()
    pipe.runner = fake_runner(calls)
    statuses = pipe.run_steps(["train-ep"], log=lambda _: None)
    assert statuses[0].status == "resumed" and calls[0][-1] == "--resume"
    statuses = pipe.run_steps(["train-ep", "baselines", "distill"], log=lambda _: None)
    assert statuses[0].status == "done"
    assert all(s.status == "ran" for s in statuses[1:])
    distill = [c for c in calls if c[0] == "distill"]
    teachers = {c[c.index("--teacher") + 1] for c in distill}  # the EP-CNN, and each BP seed for claim 7's controls
    assert distill and teachers == {str(tmp_path / "run" / n / "model.pt") for n in ("ep-s0", "bp-s0", "bp-s1")}
    calls.clear()
    assert all(s.status == "done" for s in pipe.run_steps(["train-ep", "baselines", "distill"], log=lambda _: None))
    assert calls == []
    rows = [json.loads(x) for x in (tmp_path / "run" / "pipeline.jsonl").read_text().splitlines()]
    assert {r["event"] for r in rows} == {"start", "failed", "finished"}


def test_an_interrupted_step_is_stopped_not_failed(tmp_path: Path, tiny_tree: Path) -> None:
    calls: list[list[str]] = []
    runner = fake_runner(calls, {"ep-s0"}, code=128 + 15)  # ephw's exit code after SIGTERM
    pipe = Pipeline("cifar10", "smoke", tmp_path / "run", str(tiny_tree), runner, ship_dir=None)
    assert [s.status for s in pipe.run_steps(["train-ep", "distill"], log=lambda _: None)] == ["stopped"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "pipeline.jsonl").read_text().splitlines()]
    assert [r["event"] for r in rows] == ["start", "stopped"] and rows[-1]["code"] == 143


def test_distill_waits_for_its_teacher(tmp_path: Path, tiny_tree: Path) -> None:
    calls: list[list[str]] = []
    pipe = Pipeline("cifar10", "smoke", tmp_path / "run", str(tiny_tree), fake_runner(calls), ship_dir=None)
    statuses = pipe.run_steps(["distill"], log=lambda _: None)
    assert statuses and all(s.status == "waiting" for s in statuses) and calls == []


def test_meta_provenance_and_shipping(tmp_path: Path, tiny_tree: Path) -> None:
    calls: list[list[str]] = []
    ship = tmp_path / "pretrained"
    pipe = Pipeline("cifar10", "smoke", tmp_path / "run", str(tiny_tree), fake_runner(calls), ship_dir=ship)
    pipe.run_steps(["train-ep"], log=lambda _: None)
    shipped = ship / "cifar10-ep.pt"
    blob = torch.load(shipped, weights_only=True)
    meta = json.loads(blob["meta"])
    assert meta["command"].startswith("ephw train ep --data cifar10") and meta["seed"] == 0
    assert len(meta["data_sha256"]) == 64 and meta["model"] == "EP-CNN"
    assert shipped.read_bytes() == (tmp_path / "run" / "ep-s0" / "model.pt").read_bytes()


def test_shipped_ep_model_gets_the_users_settle_check_once(
    tmp_path: Path, tiny_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ephw.reproduce import pipeline as pipeline_module
    from ephw.reproduce.report import write_results_page

    calls: list[list[str]] = []

    def settle_row(model: Path, data: str, data_root: str | None, n: int, device: str | None) -> dict:
        calls.append(["settle", "--model", str(model), "--data", data, "--data-root", str(data_root), "--n", str(n)])
        return {"backend": "euler", "n": n, "accuracy": 0.5, "steps_mean": 9.0}

    monkeypatch.setattr(pipeline_module, "shipped_settle_row", settle_row)
    run = tmp_path / "run"
    pipe = Pipeline("cifar10", "smoke", run, str(tiny_tree), fake_runner(calls), ship_dir=tmp_path / "pretrained")
    pipe.run_steps(["train-ep"], log=lambda _: None)
    settles = [c for c in calls if c[0] == "settle"]
    assert settles == [
        [
            "settle",
            "--model",
            str(run / "ep-s0" / "model.pt"),
            "--data",
            "cifar10",
            "--data-root",
            str(tiny_tree),
            "--n",
            "1000",
        ]
    ]
    record = json.loads((run / "ep-s0" / "shipped-settle.json").read_text())
    assert record["command"] == f"ephw settle --model cifar10-ep --data cifar10 --data-root {tiny_tree} --n 1000"
    assert (tmp_path / "pretrained" / "cifar10-ep.pt").read_bytes() == (run / "ep-s0" / "model.pt").read_bytes()
    calls.clear()
    pipe.run_steps(["train-ep"], log=lambda _: None)
    assert calls == []  # same model file: kept, not settled again
    page = write_results_page("cifar10", pipe.steps, run, tmp_path / "docs").read_text()
    assert f"| `{record['command']}` | 50.0 | 1000 |" in page
    Pipeline("cifar10", "smoke", run, str(tiny_tree), fake_runner(calls), ship_dir=None).run_steps(["train-ep"])
    assert calls == []  # --no-ship: nothing shipped, nothing to check


def test_model_trained_by_hand_gets_provenance(tmp_path: Path, tiny_tree: Path) -> None:
    """A step's model.pt made outside the pipeline (same command, run by hand) is stamped when first seen."""
    from ephw.checkpoint import read_meta

    calls: list[list[str]] = []
    run = tmp_path / "run"
    pipe = Pipeline("cifar10", "smoke", run, str(tiny_tree), fake_runner(calls), ship_dir=tmp_path / "pretrained")
    step = next(s for s in pipe.steps if s.name == "bp-s0")
    fake_runner([])(pipe.command(step))  # trained "by hand" with the step's command: no pipeline meta
    assert "command" not in read_meta(run / "bp-s0" / "model.pt")
    pipe.run_steps(["baselines"], log=lambda _: None)
    assert all(c[c.index("--out") + 1] != str(run / "bp-s0") for c in calls)  # not retrained
    meta = read_meta(tmp_path / "pretrained" / "cifar10-bp.pt")
    assert meta["command"].startswith("ephw train bp") and meta["command"].endswith(str(run / "bp-s0"))
    assert meta["seed"] == 0 and meta["pipeline_step"] == "bp-s0" and len(meta["data_sha256"]) == 64


def test_the_robustness_stage_stamps_a_hand_trained_model_before_it_hashes_it(tmp_path: Path, tiny_tree: Path) -> None:
    """The stamp rewrites model.pt: made after robustness rows, it would orphan them (another sha256)."""
    from ephw.reproduce.robustness import trained_models

    run = tmp_path / "run"
    pipe = Pipeline("cifar10", "smoke", run, str(tiny_tree), fake_runner([]), ship_dir=None)
    fake_runner([])(pipe.command(next(s for s in pipe.steps if s.name == "bp-s0")))
    assert [m["name"] for m in trained_models(pipe, {}, stamp=True)] == ["BP-CNN [s0]"]
    before = (run / "bp-s0" / "model.pt").read_bytes()
    assert read_meta(run / "bp-s0" / "model.pt")["pipeline_step"] == "bp-s0"
    pipe.run_steps(["baselines"], log=lambda _: None)  # a later training-stage call: the file stays as hashed
    assert (run / "bp-s0" / "model.pt").read_bytes() == before


def test_same_stage_twice_on_one_run_dir_is_refused_other_stages_run(tmp_path: Path) -> None:
    pipe = Pipeline("cifar10", "smoke", tmp_path / "run")
    with pipe.lock(["train-ep"]):
        with pytest.raises(OutputError, match="in use by another ephw run"):
            Pipeline("cifar10", "smoke", tmp_path / "run").lock(["robustness", "train-ep"])
        with Pipeline("cifar10", "smoke", tmp_path / "run").lock(["robustness"]):
            pass
        with pytest.raises(OutputError, match="in use by another ephw run"):  # train-ep is still held
            Pipeline("cifar10", "smoke", tmp_path / "run").lock(["train-ep"])
    with Pipeline("cifar10", "smoke", tmp_path / "run").lock():
        pass


def test_robustness_shards_of_one_run_lock_apart(tmp_path: Path) -> None:
    """Shards of the robustness stage run side by side; the same shard twice, or a whole stage beside one, do not."""
    run = tmp_path / "run"
    with Pipeline("cifar10", "smoke", run, shard=parse_shard("0/2")).lock(["robustness"]):
        with Pipeline("cifar10", "smoke", run, shard=parse_shard("1/2")).lock(["robustness"]):
            pass
        with pytest.raises(OutputError, match="in use by another ephw run"):
            Pipeline("cifar10", "smoke", run, shard=parse_shard("0/2")).lock(["robustness", "report"])
    with Pipeline("cifar10", "smoke", run, shard=parse_shard("0/2")).lock(["robustness", "report"]):
        pass  # released with the first


def test_robustness_parts_run_alone_and_lock_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--part black-box`` runs only that part of the grid, beside a run of another part."""
    import ephw.robustness.runner as runner_mod

    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="unknown robustness part 'nope': use one of white-box, black-box"):
        Pipeline("cifar10", "gpu", run, parts=["nope"])
    with Pipeline("cifar10", "gpu", run, parts=["white-box"]).lock(["robustness"]):
        with Pipeline("cifar10", "gpu", run, parts=["black-box"]).lock(["robustness"]):
            pass
        with pytest.raises(OutputError, match="in use by another ephw run"):
            Pipeline("cifar10", "gpu", run, parts=["white-box"]).lock(["robustness"])
    _stamped_model(run / "ep-s0")
    ran: list[tuple[str, tuple[str, ...]]] = []
    monkeypatch.setattr(
        runner_mod, "run_robustness", lambda cfg, out, shard=None, first=(): ran.append((Path(out).name, first))
    )
    monkeypatch.setattr("ephw.robustness.report.write_report", lambda *a, **k: None)
    from ephw.reproduce.robustness import run_robustness

    with pytest.raises(ConfigError, match="unknown model 'nope' for --first: use one of EP-CNN"):
        Pipeline("cifar10", "gpu", run, first=["nope"])
    run_robustness(Pipeline("cifar10", "gpu", run, parts=["black-box"], first=["EP-CNN [s0]"]), log=lambda _: None)
    assert ran == [("robustness-black-box.jsonl", ("EP-CNN [s0]",))]


def test_robustness_stage_takes_every_familys_first_seed_before_any_second(tmp_path: Path) -> None:
    from ephw.reproduce.robustness import trained_models

    pipe = Pipeline("cifar10", "smoke", tmp_path / "run")
    for name in ("ep-s0", "bp-s0", "bp-s1", "adv-s1", "distilled-s0"):
        _stamped_model(tmp_path / "run" / name)
    names = [m["name"] for m in trained_models(pipe, {"backend": "async"})]
    assert names == ["EP-CNN [s0]", "BP-CNN [s0]", "Distilled BP-CNN [s0]", "BP-CNN [s1]", "Adv-CNN [s1]"]


def test_a_feedforward_part_leaves_the_ep_cnn_out_and_its_verdicts_unasked(tmp_path: Path) -> None:
    """The cpu budget's black-box-ff part runs the cheap models on 5x the images; the EP-CNN is not in
    its plan, so no EP claim is asked on it (rather than reading "not measured")."""
    from ephw.reproduce.robustness import left_out, part_configs
    from ephw.robustness.config import config_from_dict

    pipe = Pipeline("cifar10", "cpu", tmp_path / "run")
    for name in ("ep-s0", "bp-s0"):
        _stamped_model(tmp_path / "run" / name)
    parts = dict(part_configs(pipe))
    assert [m["name"] for m in parts["black-box"]["models"]] == ["EP-CNN [s0]", "BP-CNN [s0]"]
    assert [m["name"] for m in parts["black-box-ff"]["models"]] == ["BP-CNN [s0]"]
    assert parts["black-box-ff"]["run"]["n"] == 500
    assert len(config_from_dict(parts["black-box-ff"]).models) == 1  # a valid robustness config
    with pytest.raises(ConfigError, match="models must be one of all, feedforward"):
        left_out(pipe, "energy", "x")

    label = "Square-linf ε=0.03137 (black-box-ff)"
    rob = {("BP-CNN", label): Measure([10.0], [500]), ("Distilled BP-CNN", label): Measure([30.0], [500])}
    summary = {"rows": rob, "labels": [label], "absent": {label: ["EP-CNN"]}, "markdown": ""}
    page = write_results_page("cifar10", pipe.steps, tmp_path / "run", tmp_path / "docs", summary).read_text()
    assert f"| (2) Eq. 8 student more robust than BP-CNN | {label} | holds |" in page
    assert f"| (2) EP-CNN more robust than BP-CNN | {label} |" not in page


def test_report_reads_a_sharded_robustness_run(tmp_path: Path) -> None:
    """A part computed only as shards (no plain results file) still reaches the verdicts and its report."""
    from ephw.reproduce.robustness import robustness_summary, write_part_reports

    pipe = Pipeline("cifar10", "smoke", tmp_path / "run", docs_dir=tmp_path / "docs")
    (tmp_path / "run").mkdir()

    def row(model: str, kind: str, survival: str, attack: str | None = None) -> str:
        acc = survival.count("1") / len(survival)
        fields = {"kind": kind, "model": model, "attack": attack, "eps": 0.4932 if attack else 0.0, "seed": 0}
        fields.update(norm="L2", survival=survival, accuracy=acc, n=len(survival), check=None, data="cifar10")
        per_class = [survival[c::2].count("1") for c in (0, 1)]  # images alternate classes 0 and 1
        fields.update(classes=2, correct=sum(per_class), per_class_correct=per_class, seconds=1.0)
        fields.update(per_class_total=[len(survival[c::2]) for c in (0, 1)])
        return json.dumps(fields)

    shard = tmp_path / "run" / "robustness-white-box.shard-0-of-2.jsonl"
    corrupted = [  # a corruption row names its corruption as its attack, severity as eps
        json.dumps({**json.loads(row("EP-CNN [s0]", "corruption", rec, name)), "eps": 1.0, "severity": 1})
        for rec, name in (("1100", "gaussian_noise"), ("1010", "fog"))
    ]
    lines = [row("EP-CNN [s0]", "clean", "1110"), row("EP-CNN [s0]", "attack", "1000", "PGD-l2"), *corrupted]
    shard.write_text("\n".join(lines) + "\n")
    summary = robustness_summary(pipe)
    assert summary is not None
    assert summary["rows"][("EP-CNN", "worst case per image, L2 ε=0.4932 (white-box)")].values == [25.0]
    assert summary["rows"][("EP-CNN", "PGD-l2 ε=0.4932 (white-box)")].images == [4]
    # per-image scores, so the verdicts can pair models on the same images
    assert summary["rows"][("EP-CNN", "PGD-l2 ε=0.4932 (white-box)")].per_image == [[1.0, 0.0, 0.0, 0.0]]
    assert summary["rows"][("EP-CNN", "worst case per image, L2 ε=0.4932 (white-box)")].per_image == [
        [1.0, 0.0, 0.0, 0.0]
    ]
    corruptions = summary["rows"][("EP-CNN", "corruptions, mean of every name and severity (white-box)")]
    assert corruptions.values == [50.0] and corruptions.per_image == [[1.0, 0.5, 0.5, 0.0]]
    assert write_part_reports(pipe) == [tmp_path / "run" / "robustness-white-box.jsonl"]
    assert "EP-CNN [s0]" in (tmp_path / "docs" / "cifar10" / "white-box" / "report.md").read_text()


def test_a_worst_case_over_fewer_attacks_than_planned_is_not_reported(tmp_path: Path) -> None:
    """The part's saved plan has a cascade still to run: the partial worst case (an upper bound) is held back."""
    from ephw.reproduce.robustness import robustness_summary

    pipe = Pipeline("cifar10", "smoke", tmp_path / "run")
    (tmp_path / "run").mkdir()
    pgd = {"name": "PGD-l2", "method": "pgd", "norm": "L2", "eps": [0.4932], "restarts": 1}
    square = {"name": "Square-l2", "method": "square", "norm": "L2", "eps": [0.4932], "cascade": True}
    cfg = {"run": {"data": "cifar10", "n": 4}, "models": [{"name": "EP-CNN [s0]", "path": "ep.pt"}]}
    cfg.update(attacks=[pgd, square], checks={"double_steps": False, "double_restarts": False, "zero_grad_images": 0})
    (tmp_path / "run" / "robustness-white-box.json").write_text(json.dumps(cfg))

    def row(kind: str, survival: str, attack: str | None = None, check: str | None = None) -> str:
        fields = {"kind": kind, "model": "EP-CNN [s0]", "attack": attack, "eps": 0.4932 if attack else 0.0}
        fields.update(seed=0, norm="L2", survival=survival, n=4, check=check)
        return json.dumps({**fields, "accuracy": survival.count("1") / 4})

    results = tmp_path / "run" / "robustness-white-box.jsonl"
    results.write_text(row("clean", "1110") + "\n" + row("attack", "1100", "PGD-l2") + "\n")
    label = ("EP-CNN", "worst case per image, L2 ε=0.4932 (white-box)")
    summary = robustness_summary(pipe)
    assert (
        label not in summary["rows"]
        and "EP-CNN [s0], L2 ε=0.4932 (white-box): 1 attack row still to run" in summary["markdown"]
    )
    with results.open("a") as f:
        f.write(row("attack", "1000", "Square-l2", "cascade") + "\n")
    assert robustness_summary(pipe)["rows"][label].values == [25.0]


@pytest.mark.slow
def test_smoke_budget_end_to_end(tmp_path: Path, tiny_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every training stage really runs (tiny sizes), then the report regenerates from the run folder alone."""
    run, docs = tmp_path / "run", tmp_path / "docs"
    args = ["reproduce", "cifar10", "--budget", "smoke", "--data-root", str(tiny_tree), "--run-dir", str(run)]
    args += ["--docs", str(docs), "--stage", "train-ep", "--stage", "baselines", "--stage", "robustness"]
    assert main([*args, "--stage", "report"]) == 0
    assert (run / "ep-s0" / "model.pt").is_file() and (run / "adv-s1" / "model.pt").is_file()
    rows = [json.loads(x) for x in (run / "robustness-white-box.jsonl").read_text().splitlines()]
    models = {r["model"] for r in rows}
    assert {"EP-CNN [s0]", "BP-CNN [s0]", "BP-CNN [s1]", "Adv-CNN [s1]"} <= models
    assert any(r.get("kind") == "corruption" for r in rows)
    assert (docs / "cifar10" / "white-box" / "report.md").is_file()
    page = (docs / "cifar10.md").read_text()
    assert "| EP-CNN |" in page and "| BP-CNN |" in page and "Adv-CNN" in page
    assert "| (2) EP-CNN more robust than BP-CNN | PGD-l2 ε=0.4932 (white-box) |" in page
    assert "worst case per image, L2 ε=0.4932" in page
    first = page
    (docs / "cifar10.md").unlink()
    assert (
        main(
            [
                "reproduce",
                "cifar10",
                "--budget",
                "smoke",
                "--run-dir",
                str(run),
                "--docs",
                str(docs),
                "--data-root",
                str(tiny_tree),
                "--stage",
                "report",
            ]
        )
        == 0
    )
    assert (docs / "cifar10.md").read_text() == first
    assert BUDGETS["smoke"].ff_seeds == (0, 1)
    # --list counts each part's rows against the plan: all done, then one row short
    listing = ["reproduce", "cifar10", "--budget", "smoke", "--run-dir", str(run), "--data-root", str(tiny_tree)]
    capsys.readouterr()
    assert main([*listing, "--list"]) == 0
    status = [line for line in capsys.readouterr().out.splitlines() if line.startswith("robustness white-box")]
    assert len(status) == 1 and "left" not in status[0]
    total = status[0].split()[2].split("/")[1]
    results = run / "robustness-white-box.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]))
    assert main([*listing, "--list"]) == 0
    status = [line for line in capsys.readouterr().out.splitlines() if line.startswith("robustness white-box")]
    assert f"{int(total) - 1}/{total} rows done; left: {json.loads(lines[-1])['model']} 1" in status[0]


@pytest.mark.slow
def test_cifar100_runs_unchanged(tmp_path: Path) -> None:
    """The same pipeline on a (synthetic) standard cifar-100-python folder: --data cifar100 --data-root DIR."""
    import pickle

    import numpy as np

    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"class{k:03d}".encode() for k in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": names, b"coarse_label_names": names[:20]}, f, protocol=2)
    for split, n in (("train", 200), ("test", 100)):
        labels = [k % 100 for k in range(n)]
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": labels,
            b"coarse_labels": [0] * n,
        }
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    run = tmp_path / "run"
    args = ["reproduce", "cifar100", "--budget", "smoke", "--data-root", str(tmp_path / "data"), "--run-dir", str(run)]
    assert main([*args, "--stage", "train-ep", "--docs", str(tmp_path / "docs")]) == 0
    meta = json.loads(torch.load(run / "ep-s0" / "model.pt", weights_only=True)["meta"])
    assert meta["data"] == "cifar100" and meta["command"].startswith("ephw train ep --data cifar100 --data-root")


def test_only_chosen_steps_run_and_lock_apart(tmp_path: Path, tiny_tree: Path) -> None:
    """``--step NAME`` runs (and stamps) only the named steps; two different steps' runs go side by side."""
    calls: list[list[str]] = []
    names = [s.name for s in Pipeline("cifar10", "smoke", tmp_path / "run").steps if s.stage == "baselines"]
    chosen = names[-1]
    pipe = Pipeline(
        "cifar10", "smoke", tmp_path / "run", str(tiny_tree), fake_runner(calls), ship_dir=None, only_steps=[chosen]
    )
    statuses = pipe.run_steps(["train-ep", "baselines"], log=lambda _: None)
    assert [(s.step.name, s.status) for s in statuses] == [(chosen, "ran")]
    assert len(calls) == 1 and calls[0][calls[0].index("--out") + 1].endswith(chosen)
    assert read_meta(tmp_path / "run" / chosen / "model.pt")["pipeline_step"] == chosen
    with pipe.lock(["baselines"]):
        other = Pipeline("cifar10", "smoke", tmp_path / "run", only_steps=[names[0]])
        with other.lock(["baselines"]):
            pass
        with pytest.raises(OutputError, match="in use by another ephw run"):
            Pipeline("cifar10", "smoke", tmp_path / "run", only_steps=[chosen]).lock(["baselines"])
    with pytest.raises(ConfigError, match="unknown step 'nope'"):
        Pipeline("cifar10", "smoke", tmp_path / "run", only_steps=["nope"])


def test_per_seed_values_are_listed_by_seed_not_by_file_order(tmp_path: Path) -> None:
    """Rows of seed 1 read before seed 0's (another shard file) still list as s0, s1."""
    from ephw.reproduce.robustness import robustness_summary

    pipe = Pipeline("cifar10", "smoke", tmp_path / "run")
    (tmp_path / "run").mkdir()
    pgd = {"name": "PGD-l2", "method": "pgd", "norm": "L2", "eps": [0.4932], "restarts": 1}
    models = [{"name": f"BP-CNN [s{s}]", "path": f"bp{s}.pt"} for s in (0, 1)]
    cfg = {"run": {"data": "cifar10", "n": 4}, "models": models, "attacks": [pgd]}
    cfg["checks"] = {"double_steps": False, "double_restarts": False, "zero_grad_images": 0}
    (tmp_path / "run" / "robustness-white-box.json").write_text(json.dumps(cfg))

    def row(seed: int, survival: str) -> str:
        fields = {"kind": "attack", "model": f"BP-CNN [s{seed}]", "attack": "PGD-l2", "eps": 0.4932, "seed": 0}
        fields.update(norm="L2", survival=survival, n=4, check=None, accuracy=survival.count("1") / 4)
        return json.dumps(fields) + "\n"

    (tmp_path / "run" / "robustness-white-box.jsonl").write_text(row(1, "1110") + row(0, "1000"))
    measure = robustness_summary(pipe)["rows"][("BP-CNN", "PGD-l2 ε=0.4932 (white-box)")]
    assert measure.values == [25.0, 75.0]


def test_timing_stage_times_every_student_once_and_again_after_a_retrain(tmp_path: Path, tiny_tree: Path) -> None:
    calls: list[list[str]] = []
    run = tmp_path / "run"
    pipe = Pipeline("cifar10", "smoke", run, str(tiny_tree), fake_runner(calls), ship_dir=None)
    assert pipe.time_students(lambda _: None) is None  # no student yet: nothing to time
    pipe.run(["train-ep", "distill", "timing"], log=lambda _: None)
    timing = [c for c in calls if c[:2] == ["bench", "students"]]
    assert len(timing) == 1 and (run / "speedup.json").is_file()
    pipe.run(["timing"], log=lambda _: None)  # covers every student's current file: skipped
    assert len([c for c in calls if c[:2] == ["bench", "students"]]) == 1
    student = next(s for s in pipe.steps if s.stage == "distill")
    from ephw.checkpoint import update_meta

    update_meta(run / student.name / "model.pt", {"retrained": True})  # retrained: its file changed
    assert pipe.timing_status()[1] == [student.name]
    pipe.run(["timing"], log=lambda _: None)
    assert len([c for c in calls if c[:2] == ["bench", "students"]]) == 2
    assert pipe.timing_status()[1] == []


@pytest.mark.parametrize("state", ["missing", "empty", "untrained"])
@pytest.mark.parametrize("stage", ["report", "robustness", "timing"])
def test_a_mistyped_run_dir_writes_nothing(
    tmp_path: Path, state: str, stage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stage that reads trained models, given a folder holding none, refuses in one line and creates nothing."""
    run, docs = tmp_path / "run", tmp_path / "docs"
    docs.mkdir()
    page = docs / "cifar10.md"
    page.write_text("the committed page\n")
    if state != "missing":
        run.mkdir()
    if state == "untrained":
        (run / "ep-s0").mkdir()
        (run / "ep-s0" / "checkpoint.pt").write_bytes(b"half a run")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = ["reproduce", "cifar10", "--budget", "smoke", "--run-dir", str(run), "--docs", str(docs), "--no-ship"]
    assert main([*args, "--stage", stage]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nothing was written" in err
    assert ("does not exist" if state == "missing" else "holds no trained model") in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert page.read_text() == "the committed page\n"


def _hand_trained_digits_bp(run: Path) -> Path:
    """A 3-epoch digits BP-CNN dropped into the run folder's ``bp-s0/`` (issue 34's case)."""
    argv = ["train", "bp", "--data", "digits", "--config", "digits", "--epochs", "3", "--seed", "0"]
    fake_runner([])([*argv, "--out", str(run / "bp-s0")])
    return run / "bp-s0" / "model.pt"


def test_list_writes_nothing_not_even_a_provenance_stamp(
    tmp_path: Path, tiny_tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 34 item 2: ``--list`` (and ``--first`` validation) read the run folder, never write it."""
    run = tmp_path / "run"
    model = _hand_trained_digits_bp(run)
    pipe = Pipeline("cifar10", "smoke", run, str(tiny_tree), fake_runner([]), ship_dir=None)
    fake_runner([])(pipe.command(next(s for s in pipe.steps if s.name == "ep-s0")))  # unstamped, but right
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    argv = ["reproduce", "cifar10", "--budget", "smoke", "--run-dir", str(run), "--data-root", str(tiny_tree)]
    assert main([*argv, "--list"]) == 0
    assert main([*argv, "--list", "--first", "BP-CNN [s0]"]) == 0
    capsys.readouterr()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing written, nothing added
    assert "pipeline_step" not in read_meta(model)


def test_stamping_refuses_a_model_its_step_did_not_train(tmp_path: Path, tiny_tree: Path) -> None:
    """Issue 34 item 2: a digits BP-CNN at ``bp-s0/`` is not labelled as the step's CIFAR-10 run."""
    run = tmp_path / "run"
    model = _hand_trained_digits_bp(run)
    before = model.read_bytes()
    pipe = Pipeline("cifar10", "smoke", run, str(tiny_tree), fake_runner([]), ship_dir=None, only_steps=["bp-s0"])
    with pytest.raises(ConfigError) as info:
        pipe.run_steps(["baselines"], log=lambda _: None)
    assert str(info.value) == (
        f"refusing to stamp {model} as step bp-s0: it was trained on 'digits', the step trains on 'cifar10'; "
        "move it away (the step then trains it) or train it with the step's command (ephw reproduce cifar10 --list)"
    )
    assert model.read_bytes() == before
    step = next(s for s in pipe.steps if s.name == "bp-s0")
    for change, reason in (
        ({"epochs": "3"}, "its epochs is '3', the step's is '1'"),
        ({"config": "digits"}, "its config is 'digits', the step's is 'cpu-small'"),
        ({"seed": "1"}, "its seed is '1', the step's is '0'"),
    ):
        meta = trainer_meta(pipe.command(step))
        meta["settings"].update(change)
        save_model(model, EnergyModel(named_config("digits")), meta)
        with pytest.raises(ConfigError, match=re.escape(reason)):
            pipe.ensure_stamped(step)
    save_model(model, EnergyModel(named_config("digits")), {"data": "cifar10", "trainer": "bp"})
    with pytest.raises(ConfigError, match="its meta records no training settings"):
        pipe.ensure_stamped(step)
    save_model(model, EnergyModel(named_config("digits")), trainer_meta(["distill", *pipe.command(step)[2:]]))
    with pytest.raises(ConfigError, match="it was made by 'distill', the step runs 'bp'"):
        pipe.ensure_stamped(step)


def test_list_and_robustness_right_after_the_first_stage(
    tmp_path: Path, tiny_tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 34 item 3: with only ``ep-s0`` trained, a feed-forward-only part waits instead of failing."""
    import ephw.robustness.runner as runner_mod

    run = tmp_path / "run"
    pipe = Pipeline("cifar10", "cpu", run, str(tiny_tree), fake_runner([]), ship_dir=None)
    fake_runner([])(pipe.command(next(s for s in pipe.steps if s.name == "ep-s0")))
    argv = ["reproduce", "cifar10", "--run-dir", str(run), "--data-root", str(tiny_tree), "--no-ship"]
    assert main([*argv, "--list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "robustness black-box-ff 0/0 rows done; waiting for its first trained model (a feed-forward model)" in out
    assert "robustness white-box" in out
    ran: list[str] = []
    monkeypatch.setattr(runner_mod, "run_robustness", lambda cfg, out, shard=None, first=(): ran.append(out.name))
    monkeypatch.setattr("ephw.reproduce.robustness._write_part_report", lambda pipe, part: None)
    logs: list[str] = []
    pipe.run(["robustness"], log=logs.append)
    assert "robustness-black-box-ff.jsonl" not in ran and ran  # the other parts ran
    assert "[robustness] black-box-ff: waiting for its first trained model (a feed-forward model)" in logs


def test_a_part_can_take_the_ep_cnns_only(tmp_path: Path) -> None:
    """``models = "ep"`` (the published protocol's unroll table): every non-EP family is left out."""
    from ephw.reproduce.robustness import left_out

    pipe = Pipeline("cifar10", "cpu", tmp_path / "run")
    ep = {s.model for s in pipe.steps if s.stage == "train-ep"}
    assert left_out(pipe, "ep", "p") == {s.model for s in pipe.steps} - ep
    assert left_out(pipe, "feedforward", "p") == ep and left_out(pipe, "all", "p") == set()
    with pytest.raises(ConfigError, match="models must be one of all, feedforward, ep"):
        left_out(pipe, "students", "p")


def test_a_part_without_verdicts_stays_out_of_the_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``verdicts = false`` (the published protocol): its rows make no measure the claims read."""
    from ephw.reproduce import robustness as part_module

    real = part_module.template
    monkeypatch.setattr(
        part_module,
        "template",
        lambda budget: {**real(budget), "parts": [{**p, "verdicts": False} for p in real(budget)["parts"]]},
    )
    pipe = Pipeline("cifar10", "smoke", tmp_path / "run", docs_dir=tmp_path / "docs")
    (tmp_path / "run").mkdir()
    fields = {"kind": "attack", "model": "EP-CNN [s0]", "attack": "PGD-l2", "eps": 0.4932, "seed": 0, "norm": "L2"}
    fields.update(survival="1000", accuracy=0.25, n=4, check=None, data="cifar10", seconds=1.0)
    (tmp_path / "run" / "robustness-white-box.jsonl").write_text(json.dumps(fields) + "\n")
    summary = part_module.robustness_summary(pipe)
    assert summary is not None and summary["rows"] == {} and summary["labels"] == []
