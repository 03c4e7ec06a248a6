"""Hostile input to the ``ephw`` command: one line on stderr, exit status 2, never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

import ephw
from ephw.checkpoint import BUNDLED_MODEL, FORMAT, VERSION, load_checkpoint, save_checkpoint
from ephw.cli.main import main
from ephw.errors import CheckpointError, InputError
from ephw.inference import settle_dataset
from ephw.outputs import OutputLock
from ephw.pretrained import catalog


def error_of(capsys, *argv: str) -> str:
    """The one error line ``ephw ARGV`` prints (argparse prints its usage first)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: usage + one error line, status 2
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["settle", "--batch", "0"], "argument --batch: must be >= 1, got 0"),
        (["settle", "--batch", "-1"], "argument --batch: must be >= 1, got -1"),
        (["settle", "--tol", "inf"], "argument --tol: must be a finite number > 0, got inf"),
        (["settle", "--n", str(10**9)], "asked for 1000000000 images but the digits test split has 540"),
        (["sweep", "--backend", "euler", "--param", "dt", "--values", "0.5", "--seeds", "0"], "--seeds: must be >= 1"),
        (["sweep", "--backend", "euler", "--param", "dt", "--values", ""], "--values needs at least one value"),
        (["sweep", "--backend", "euler", "--param", "dt", "--values", " , "], "--values needs at least one value"),
        (["train", "ep", "--beta", "0"], "beta must be > 0 (EP nudges at +beta and -beta), got 0.0"),
        (["train", "ep", "--checkpoint-every", "0"], "checkpoint_every must be >= 1"),
        (["train", "bp", "--checkpoint-every", "0"], "checkpoint_every must be >= 1"),
        (["train", "ep", "--tol", "inf"], "argument --tol: must be a finite number > 0, got inf"),
        (["distill", "--timing-batch", "0"], "timing_batch and timing_repeats must be >= 1, got 0 and 5"),
        (
            ["settle", "--backend", "euler", "--set", "async.dt=0.5"],
            "async.dt=0.5: options for backend async, which this command does not run (it runs euler)",
        ),
        (
            ["settle", "--backend", "euler", "--crossbar-preset", "bogus"],
            "--crossbar-* flags: options for backend crossbar, which this command does not run (it runs euler)",
        ),
        (
            ["compare", "--backends", "euler,async", "--crossbar-set", "read_noise.proportional=0.1"],
            "options for backend crossbar, which this command does not run (it runs euler, async)",
        ),
        (["train", "ep", "--backend", "euler", "--crossbar-preset", "pcm"], "options for backend crossbar"),
    ],
)
def test_bad_arguments_are_one_line_errors(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # default run folders land here (and none may be created)
    assert message in error_of(capsys, *argv)
    assert not (tmp_path / "runs").exists()


def test_train_ep_help_offers_only_backends_that_nudge(capsys):
    with pytest.raises(SystemExit):
        main(["train", "ep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("backend of both phases:")
    offered = text[start : text.index("(default async", start)]
    assert "euler, async" in offered and "lava, lava-fixed" in offered  # lava settles nudged phases too


def test_output_that_is_a_file_or_read_only(capsys, tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["train", "ep"], ["train", "bp"], ["distill"]):
        assert (
            error_of(capsys, *argv, "--out", str(afile))
            == f"ephw: error: output folder {afile} is a file: choose another path"
        )
    line = error_of(
        capsys, "sweep", "--backend", "euler", "--param", "dt", "--values", "1", "--plot", str(afile / "x.png")
    )
    assert line == f"ephw: error: output folder {afile} is a file: choose another path"

    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    ro = tmp_path / "ro" / "run"
    for argv in (["train", "ep"], ["distill"]):
        assert (
            error_of(capsys, *argv, "--out", str(ro))
            == f"ephw: error: cannot create folder {ro}: Read-only file system"
        )
    line = error_of(
        capsys, "sweep", "--backend", "euler", "--param", "dt", "--values", "1", "--plot", str(ro / "x.png")
    )
    assert line == f"ephw: error: cannot create folder {ro}: Read-only file system"


def test_lava_unknown_option_and_empty_batch(capsys, net_factory, batch_factory):
    pytest.importorskip("lava")
    line = error_of(capsys, "settle", "--backend", "lava", "--set", "lava.nokey=1", "--n", "4")
    assert (
        line
        == "ephw: error: invalid options for backend 'lava': Lava.__init__() got an unexpected keyword argument 'nokey'"
    )
    net = net_factory()
    x, _ = batch_factory(4)
    with pytest.raises(InputError, match=r"lava: an empty batch \(0 images\): nothing to settle"):
        ephw.settle(net, x[:0], "lava", steps=5, tol=1e-6)


def test_images_in_0_255_are_refused(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory(4)
    with pytest.raises(InputError, match=r"images must lie in \[0, 1\], these range over \[.*\] \(divide 0..255"):
        ephw.settle(net, x * 255, "euler", steps=5, tol=1e-6)
    ephw.settle(net, x, "euler", steps=5, tol=1e-6)  # [0, 1] passes


def test_checkpoint_with_nan_weights_is_refused_at_load(capsys, tmp_path):
    ckpt = load_checkpoint(BUNDLED_MODEL)
    state = dict(ckpt.state_dict)
    key = next(iter(state))
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    bad = tmp_path / "nan.pt"
    save_checkpoint(bad, ckpt.__class__(ckpt.config, state, ckpt.meta))
    with pytest.raises(CheckpointError, match=rf"non-finite \(NaN or infinite\) weights in {key}"):
        load_checkpoint(bad)
    assert "non-finite (NaN or infinite) weights" in error_of(capsys, "settle", "--model", str(bad))


def test_settle_dataset_batch_size_is_checked(net_factory):
    from ephw.data import load_dataset

    with pytest.raises(InputError, match="batch size must be an integer >= 1, got 0"):
        settle_dataset(
            net_factory(), load_dataset("digits", "test").subset(4), "euler", steps=3, tol=None, batch_size=0
        )


def test_a_second_run_on_a_locked_output_is_refused(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    busy = f"{run} is in use by another ephw run (pid {os.getpid()}): wait for it, or choose another output"
    with OutputLock(run):
        for argv in (["train", "ep"], ["train", "bp"], ["train", "adv"], ["distill"]):
            assert error_of(capsys, *argv, "--out", str(run)) == f"ephw: error: {busy}"
    plot = tmp_path / "sweep.png"
    with OutputLock(plot):
        line = error_of(capsys, "sweep", "--backend", "euler", "--param", "dt", "--values", "1", "--plot", str(plot))
    assert line.startswith(f"ephw: error: {plot} is in use by another ephw run")


def test_sweep_with_one_seed_prints_means_without_an_interval(capsys, tmp_path):
    plot = tmp_path / "new" / "sweep.png"  # a missing folder is created
    assert (
        main(["sweep", "--backend", "euler", "--param", "dt", "--values", "0.5", "--n", "4", "--plot", str(plot)]) == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split()[:2] == ["0.5", "1"] and "±" not in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


ROBUSTNESS_TOML = '[run]\ndata = "digits"\nn = 4\nseeds = [0]\n[[models]]\nname = "ep"\npath = "bundled"\n'


def test_a_full_disk_at_start_is_one_line_and_leaves_no_lock_file(capsys, tmp_path, full_disk):
    """Issue 34 item 4, on a real full tmpfs: every command that locks its output first."""
    config = tmp_path / "r.toml"
    config.write_text(ROBUSTNESS_TOML)
    runs = {
        "train bp": (["train", "bp", "--out", str(full_disk / "bp")], full_disk / "bp" / ".ephw.lock"),
        "distill": (["distill", "--out", str(full_disk / "st")], full_disk / "st" / ".ephw.lock"),
        "robustness run": (
            ["robustness", "run", "--config", str(config), "--out", str(full_disk / "r.jsonl"), "--no-progress"],
            full_disk / "r.jsonl.lock",
        ),
        "reproduce": (
            ["reproduce", "cifar10", "--budget", "smoke", "--stage", "train-ep", "--run-dir", str(full_disk / "rep")],
            full_disk / "rep" / ".stage-train-ep.lock",
        ),
        "sweep --plot": (
            ["sweep", "--backend", "euler", "--param", "dt", "--values", "1", "--plot", str(full_disk / "s.png")],
            full_disk / "s.png.lock",
        ),
    }
    for what, (argv, lock) in runs.items():
        line = error_of(capsys, *argv)
        assert line == f"ephw: error: cannot create lock {lock}: No space left on device", what
        assert not lock.exists(), what
    assert {p.name for p in full_disk.iterdir()} <= {"filler", "rep"}  # reproduce made its run folder first


def test_commands_refused_by_validation_leave_no_output_folder(capsys, tmp_path):
    """Issue 34 item 10: no ``--out`` folder (nor its ``.ephw.lock``) is left behind by a refused command."""
    cases = [
        (["train", "bp", "--data", "nonsense"], "unknown dataset 'nonsense'"),
        (["train", "ep", "--config", "cpu-small", "--data", "digits"], "config 'cpu-small' expects images"),
        (["distill", "--teacher", str(tmp_path / "missing.pt")], "checkpoint not found"),
    ]
    for i, (argv, message) in enumerate(cases):
        out = tmp_path / f"new-{i}" / "run"
        assert message in error_of(capsys, *argv, "--out", str(out))
        assert not (tmp_path / f"new-{i}").exists(), argv
    config = tmp_path / "r.toml"
    config.write_text(ROBUSTNESS_TOML.replace("n = 4", "n = 100000"))
    results = tmp_path / "rob" / "r.jsonl"
    line = error_of(capsys, "robustness", "run", "--config", str(config), "--out", str(results), "--no-progress")
    assert line == "ephw: error: [run] n = 100000 but the digits test split has 540 images: ask for at most that"
    assert not (tmp_path / "rob").exists()


def test_a_set_option_of_the_wrong_type_names_the_option_and_its_type(capsys):
    line = error_of(capsys, "settle", "--backend", "euler", "--n", "2", "--set", 'euler.dt="fast"')
    assert line == "ephw: error: option euler.dt must be a number, got 'fast' (str)"
    line = error_of(capsys, "settle", "--backend", "anderson", "--n", "2", "--set", "anderson.m=2.5")
    assert line == "ephw: error: option anderson.m must be an integer, got 2.5 (float)"


def test_a_checkpoint_holding_code_is_refused_without_torchs_advice(capsys, tmp_path):
    """Issue 34 item 10: never relay "weights_only=False will likely succeed"; name the blocked global."""
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "ephw.checkpoint", "version": 1, "payload": Payload()}, evil)
    line = error_of(capsys, "settle", "--model", str(evil), "--n", "2")
    assert line == (
        f"ephw: error: {evil} holds code or objects ephw will not load (the global posix.system): an ephw file "
        "holds only weights and plain data, so this one is foreign or tampered with"
    )
    assert "weights_only" not in line and "pwned" not in capsys.readouterr().out


def test_weights_of_another_shape_name_the_file_and_the_parameter(capsys, tmp_path):
    ckpt = load_checkpoint(BUNDLED_MODEL)
    name = "convs.1.weight"
    state = dict(ckpt.state_dict)
    want = tuple(state[name].shape)
    state[name] = torch.zeros(want[0] + 1, *want[1:])
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, type(ckpt)(ckpt.config, state, ckpt.meta))
    line = error_of(capsys, "settle", "--model", str(bad), "--n", "2")
    got = (want[0] + 1, *want[1:])
    assert line == (
        f"ephw: error: {bad}: weights do not match the stored architecture: {name} has shape {got} in the file "
        f"but the architecture needs {want}"
    )


def test_meta_that_is_not_json_is_one_line(capsys, tmp_path):
    """Issue 34 item 5: ``bench students``, ``reproduce --list``, ``--stage report`` on a model.pt with damaged meta."""
    ckpt = load_checkpoint(BUNDLED_MODEL)
    run = tmp_path / "run"
    (run / "ep-s0").mkdir(parents=True)
    model = run / "ep-s0" / "model.pt"
    blob = {"format": FORMAT, "version": VERSION, "config": ckpt.config.to_json(), "state_dict": ckpt.state_dict}
    torch.save({**blob, "meta": "{not json"}, model)
    damaged = f"ephw: error: {model} has a damaged meta entry (not JSON: "
    assert error_of(capsys, "bench", "students", "--run-dir", str(run)).startswith(damaged)
    reproduce = ["reproduce", "cifar10", "--budget", "smoke", "--run-dir", str(run), "--no-ship"]
    assert error_of(capsys, *reproduce, "--stage", "report", "--docs", str(tmp_path / "docs")).startswith(damaged)
    assert not (tmp_path / "docs").exists()
    code = main([*reproduce, "--list"])  # lists without reading (or stamping) any meta
    out, err = capsys.readouterr()
    assert code == 0 and "ep-s0" in out and "Traceback" not in err


def test_ephw_models_skips_a_stray_file_with_one_warning(capsys, tmp_path, monkeypatch):
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    (shipped / "digits-ep.pt").write_bytes(BUNDLED_MODEL.read_bytes())
    (shipped / "stray.pt").write_bytes(b"not a checkpoint at all")
    (shipped / "truncated.pt").write_bytes(BUNDLED_MODEL.read_bytes()[:100])
    monkeypatch.setattr(catalog, "PRETRAINED_DIR", shipped)
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["digits-ep"]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ephw: warning: skipped unreadable files in {shipped}: stray.pt (")
    assert "truncated.pt (" in lines[0]
