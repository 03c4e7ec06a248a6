"""Feed-forward models on a chip (deploy) and noise-aware training's weight draws."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ephw.crossbar import load_params
from ephw.crossbar.deploy import analog_layers, deploy
from ephw.errors import ConfigError
from ephw.feedforward import CNNSpec, EPTopologyCNN
from ephw.model import named_config
from ephw.training.noise_aware import NoiseAware, perturbed, sample_weights, wrap_step


def _student() -> EPTopologyCNN:
    torch.manual_seed(0)
    cfg = named_config(
        "digits", classes=10, output="softmax", activation="laborieux", input_mean=(0.3,), input_std=(0.3,)
    )
    return EPTopologyCNN(CNNSpec(cfg)).double().eval()


def _images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_ideal_chip_reproduces_the_digital_model() -> None:
    model, x = _student(), _images()
    chip = deploy(model, load_params("ideal", overrides=["mapping.tile_rows=16"]))
    for a, b in zip(chip.states(x), model.states(x)):
        assert torch.allclose(a, b, atol=1e-10)
    # the tile-by-tile path (non-ideal ADC that never saturates) gives the same products
    tiles = deploy(model, load_params("ideal", overrides=["adc_forward.bound=1e9", "mapping.tile_rows=16"]))
    assert torch.allclose(tiles(x), model(x), atol=1e-8)
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())  # the original is untouched


def test_pcm_chip_perturbs_and_frozen_reads_repeat() -> None:
    model, x = _student(), _images()
    chip = deploy(model, "pcm")
    y = chip(x)
    assert float((y - model(x).detach()).abs().max()) > 1e-3
    assert torch.equal(chip(x), y)  # pcm: frozen read noise at the preset's t
    assert len(chip.layers) == len(model.synapses)


def test_resnet_style_modules_are_found() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).double()
    assert len(analog_layers(net)) == 2
    x = _images()
    chip = deploy(net, load_params("ideal", overrides=["adc_forward.bound=1e9"]))  # im2col path with a stride
    assert torch.allclose(chip(x), net(x), atol=1e-8)


def test_calibrated_adc_through_the_model() -> None:
    model, x = _student(), _images(32)
    over = ["adc_forward.bits=8", "adc_forward.calibration=column", "mapping.tile_rows=32"]
    chip = deploy(model, load_params("ideal", overrides=over))
    chip.calibrate(x)
    err = (chip(x) - model(x)).abs().max()
    assert float(err) < 0.05 * float(model(x).abs().max())


def test_noise_aware_draws_restore_the_clean_weights() -> None:
    model = _student()
    layers = analog_layers(model)
    clean = [m.weight.detach().clone() for m in layers]
    params = NoiseAware.parse("pcm@86400").params()
    assert params.drift.t_seconds == 86400.0
    with perturbed(layers, params, seed=3):
        inside = [m.weight.detach().clone() for m in layers]
        loss = model(_images()).sum()
        loss.backward()
    for c, i, m in zip(clean, inside, layers):
        assert torch.equal(m.weight, c)  # restored
        assert not torch.equal(i, c)  # perturbed inside
        assert m.weight.grad is not None  # the gradient computed on the drawn weights stays
    # reproducible per seed, different across seeds
    a, b = sample_weights(layers, params, 5), sample_weights(layers, params, 5)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = sample_weights(layers, params, 6)
    assert not torch.equal(a[0], c[0])
    # relative size: pcm at 1 day perturbs a weight by a few % of its layer's max|w|
    rel = float((a[0] - clean[0]).std() / clean[0].abs().max())
    assert 0.005 < rel < 0.2


def test_wrap_step_records_the_option() -> None:
    model, meta, seen = _student(), {}, []

    def step(x, y, idx, epoch, b):
        seen.append(model.synapses[0].weight.detach().clone())
        return {"loss": 0.0}

    noisy = wrap_step(step, model, "pcm@3600", seed=0, meta=meta)
    noisy(None, None, None, 0, 0)
    noisy(None, None, None, 0, 1)
    assert meta["noise_aware"]["preset"] == "pcm" and meta["noise_aware"]["t_seconds_used"] == 3600.0
    assert not torch.equal(seen[0], seen[1])  # a new chip per batch
    assert wrap_step(step, model, None, 0, {}) is step
    with pytest.raises(ConfigError):
        NoiseAware.parse("pcm@soon")
    with pytest.raises(ConfigError):
        NoiseAware.parse("flash")


@pytest.mark.slow
def test_feedforward_sweep_over_drift_time_and_cli(tmp_path) -> None:
    import json
    import subprocess
    import sys

    from ephw.crossbar.deploy import run_feedforward_sweep
    from ephw.data import load_dataset
    from ephw.feedforward import save_feedforward
    from ephw.sweep import plot_sweep

    model = _student().float()
    data = load_dataset("digits", "test").subset(40)
    report = run_feedforward_sweep(model, data, "drift_time", [20, 86400], seeds=2, options={"preset": "pcm"})
    assert report["reference"] == "digital" and [r["value"] for r in report["rows"]] == [20, 86400]
    dev = [r["mean_abs_state_diff"]["mean"] for r in report["rows"]]
    assert 0 < dev[0] and len(report["rows"][0]["accuracy"]["values"]) == 2
    plot_sweep(report, str(tmp_path / "sweep.png"))
    assert (tmp_path / "sweep.png").stat().st_size > 0

    path = save_feedforward(tmp_path / "student.pt", model, {"data": "digits"})
    cmd = [sys.executable, "-m", "ephw", "sweep", "--model", str(path), "--crossbar-preset", "pcm", "--n", "24"]
    cmd += ["--param", "drift.t_seconds", "--values", "1,3.15e7", "--seeds", "2", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)["rows"]
    assert [r["value"] for r in rows] == [1, 3.15e7]


def test_noise_aware_bp_run_records_the_option_in_its_checkpoint(tmp_path) -> None:
    from ephw.feedforward.checkpoint import read_feedforward_checkpoint
    from ephw.training.train_bp import BPTrainSettings, train_bp

    s = BPTrainSettings(epochs=1, max_batches=2, test_n=32, progress=False, out=str(tmp_path / "bp"))
    s.noise_aware = "pcm@86400"
    train_bp(s)
    meta = read_feedforward_checkpoint(tmp_path / "bp" / "model.pt").meta
    assert meta["settings"]["noise_aware"] == "pcm@86400"
    assert meta["noise_aware"]["t_seconds_used"] == 86400.0 and meta["noise_aware"]["crossbar"]["chip_seed"] == 0


def test_crossbar_backend_refuses_adc_calibration() -> None:
    from ephw.backends import Crossbar
    from ephw.errors import BackendError

    with pytest.raises(BackendError, match="calibration needs calibration inputs"):
        Crossbar(overrides=["adc_forward.calibration=tile", "adc_forward.bits=8"])
