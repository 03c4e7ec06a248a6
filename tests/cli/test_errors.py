"""Hostile input to the ``ephw`` command: one line on stderr, exit status 2, never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import ephw
from ephw.checkpoint import BUNDLED_MODEL, load_checkpoint, save_checkpoint
from ephw.cli.main import main
from ephw.errors import CheckpointError, InputError
from ephw.inference import settle_dataset
from ephw.outputs import OutputLock


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
