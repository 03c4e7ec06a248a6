"""The ``aihwkit`` backend plugin (``backends/aihwkit``, distribution ``ephw-aihwkit``).

Skipped when the plugin is not installed (``make setup`` installs it); the core package's tests
never need it.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("aihwkit")
ephw_aihwkit = pytest.importorskip("ephw_aihwkit")

import ephw  # noqa: E402
from ephw.backends import BACKENDS, backend_info, get_backend  # noqa: E402
from ephw.cli.main import main  # noqa: E402
from ephw.data import load_dataset  # noqa: E402
from ephw.errors import BackendError  # noqa: E402
from ephw_aihwkit import AIHWKitOptions, AnalogMatrix, rpu_config_for  # noqa: E402


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("digits", "test").batch(slice(None))


def test_listed_by_ephw_backends(capsys):
    BACKENDS.discover(refresh=True)
    info = {i.name: i for i in backend_info()}["aihwkit"]
    assert info.origin == "ephw-aihwkit" and info.nudging and info.version == ephw_aihwkit.__version__
    assert main(["backends", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["name"] == "euler" and {"name": "aihwkit", "origin": "ephw-aihwkit"}.items() <= rows[-1].items()


def test_ideal_tiles_settle_to_euler_fixed_points(digits):
    """aihwkit's noise off (PCM model at scale 0, no drift, no compensation, perfect IO): euler's fixed points."""
    net = ephw.load_model()
    x, _ = digits
    ref = ephw.settle(net, x, "euler", tol=1e-6)
    res = ephw.settle(net, x, "aihwkit", tol=1e-6, preset="ideal")
    diff = max(float((a - b).abs().max()) for a, b in zip(res.states, ref.states))
    assert x.shape[0] == 540 and res.converged.all()
    assert diff <= 1e-4 and float((res.predictions == ref.predictions).float().mean()) == 1.0


def test_transposed_read_is_the_transpose_of_the_forward_read():
    """On a programmed and drifted PCM chip, both directions read the same tile weights."""
    torch.manual_seed(0)
    w = torch.randn(300, 270)  # 2 x 2 tiles of at most 256
    options = AIHWKitOptions(preset="pcm", t=86_400.0, chip_seed=3)
    m = AnalogMatrix(w, rpu_config_for(options), options)
    assert len(m.tiles) == 2 and len(m.tiles[0]) == 2
    fwd = m.effective_weights()
    bwd = m.read_transposed(torch.eye(300))
    torch.testing.assert_close(bwd, fwd, rtol=1e-5, atol=1e-5)
    rel = float((fwd - w).norm() / w.norm())
    assert 0.05 < rel < 0.4  # PCM at 1 day: ~0.15 relative error, not ideal, not garbage


def test_chip_seed_and_read_time_and_global_generator():
    w = torch.randn(20, 30, generator=torch.Generator().manual_seed(1))

    def weights(**kw: float) -> torch.Tensor:
        options = AIHWKitOptions(preset="pcm", **kw)
        return AnalogMatrix(w, rpu_config_for(options), options).effective_weights()

    state = torch.random.get_rng_state()
    a = weights(chip_seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # aihwkit's draws come from a forked generator
    assert torch.equal(a, weights(chip_seed=0)) and not torch.equal(a, weights(chip_seed=1))
    assert not torch.equal(a, weights(chip_seed=0, t=31_536_000.0))
    ideal = AIHWKitOptions()
    torch.testing.assert_close(AnalogMatrix(w, rpu_config_for(ideal), ideal).effective_weights(), w)


def test_options_are_checked_in_one_line(capsys):
    with pytest.raises(BackendError, match="unknown preset 'rram'"):
        get_backend("aihwkit", preset="rram")
    with pytest.raises(BackendError, match="t must be > 0"):
        get_backend("aihwkit", t=-1.0)
    assert main(["settle", "--backend", "aihwkit", "--n", "8", "--set", "aihwkit.io=noisy"]) == 2
    assert capsys.readouterr().err.strip() == "ephw: error: aihwkit: io must be one of perfect, aihwkit, got 'noisy'"


def test_pcm_on_the_command_line_and_weight_updates_reprogram(capsys, digits):
    code = main(
        ["compare", "--backends", "crossbar,aihwkit", "--crossbar-preset", "pcm", "--set", "aihwkit.preset=pcm",
         "--n", "64", "--json"]
    )
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert code == 0 and rows[1]["backend"] == "aihwkit" and rows[1]["accuracy"] > 0.85
    assert rows[1]["max_abs_state_diff"] > 1e-3  # a noisy chip: not crossbar's fixed points exactly
    # hardware in the loop: a weight update is written onto the tiles (ideal: reads follow it exactly)
    net = ephw.load_model()
    backend = get_backend("aihwkit")
    x, _ = digits
    first = backend.synapses(net)
    with torch.no_grad():
        net.synapses[2].weight.mul_(0.5)
    assert backend.synapses(net) is first
    torch.testing.assert_close(first.matrices[2].effective_weights(), net.synapses[2].weight.detach())
    assert first.matrices[2].programming == 2


def test_float64_model_and_per_read_noise(net_factory, batch_factory):
    net = net_factory()  # float64
    x, _ = batch_factory()
    ref = ephw.settle(net, x, "euler", tol=1e-10, steps=3000)
    res = ephw.settle(net, x, "aihwkit", tol=1e-10, steps=3000)
    assert max(float((a - b).abs().max()) for a, b in zip(res.states, ref.states)) < 1e-8
    noisy = ephw.settle(net, x, "aihwkit", tol=1e-10, steps=300, io="aihwkit")  # 0.06 output noise per read
    assert noisy.converged.all() and noisy.steps < 300  # stopped by the plateau rule


def test_linear_read_outs_give_the_tile_reads_fixed_points(digits):
    """``reads="linear"`` (perfect IO): one-hot read-outs of the tiles, the same settle as reading them every time."""
    net = ephw.load_model()
    x, _ = digits
    x = x[:128]
    opts = {"preset": "pcm", "t": 86_400.0, "chip_seed": 2}
    tile = ephw.settle(net, x, "aihwkit", **opts)
    linear = ephw.settle(net, x, "aihwkit", reads="linear", **opts)
    assert max(float((a - b).abs().max()) for a, b in zip(tile.states, linear.states)) < 1e-4
    assert torch.equal(tile.predictions, linear.predictions)
    with pytest.raises(BackendError, match="perfect IO"):
        ephw.settle(net, x[:2], "aihwkit", reads="linear", io="aihwkit")
    with pytest.raises(BackendError, match="reads must be one of"):
        get_backend("aihwkit", reads="fast")
