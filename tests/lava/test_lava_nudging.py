"""Nudged phases and the EP gradient on lava, float32 payloads, and sigma-delta messaging."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
import torch

import ephw
import ephw.backends
from ephw.backends.lava import Lava, LavaFixed
from ephw.errors import BackendError
from ephw.lava.network import NetworkSpec, fanouts
from ephw.lava.resources import conv_connections
from ephw.training.ep import ep_step

pytestmark = pytest.mark.skipif(find_spec("lava") is None, reason="lava-nc not installed (make test installs it)")


def flat(grads) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


@pytest.fixture
def small(net_factory, batch_factory):
    net = net_factory(dense=(6,), init_scale=1.5)
    x, y = batch_factory(8)
    return net, x, y


@pytest.mark.parametrize("output", ["softmax", "mse"])
def test_ep_gradient_on_lava_equals_euler(net_factory, batch_factory, output):
    net = net_factory(output=output, dense=(6,), init_scale=1.5)
    x, y = batch_factory(8)
    ref = ep_step(net, x, y, backend="euler", beta=0.5, free_steps=40, nudge_steps=15)
    lava = Lava(check_every=10)
    try:
        got = ep_step(net, x, y, backend=lava, beta=0.5, free_steps=40, nudge_steps=15)
    finally:
        lava.close()
    for phase in ("plus", "minus"):
        for a, b in zip(getattr(got, phase).states, getattr(ref, phase).states):
            assert (a - b).abs().max() < 1e-12
    assert float((flat(got.grads) - flat(ref.grads)).abs().max()) <= 1e-8
    assert float(flat(ref.grads).abs().max()) > 1e-4  # a gradient worth comparing
    assert torch.allclose(got.plus.energies[-1], ref.plus.energies[-1], atol=1e-10)  # with the nudging term


def test_ep_gradient_on_lava_fixed_points_the_same_way(small):
    net, x, y = small
    ref = ep_step(net, x, y, backend="euler", beta=0.5, free_steps=200, nudge_steps=100, tol=1e-8)
    lava = LavaFixed(frac_bits=12)
    try:
        got = ep_step(net, x, y, backend=lava, beta=0.5, free_steps=200, nudge_steps=100, tol=1e-8)
    finally:
        lava.close()
    a, b = flat(got.grads), flat(ref.grads)
    assert float(torch.nn.functional.cosine_similarity(a, b, 0)) >= 0.95


def test_float32_payloads_follow_float32_euler(small):
    net, x, _ = small
    net32, x32 = net.float(), x.float()
    ref = ephw.settle(net32, x32, "euler", steps=60, tol=1e-5)
    lava = Lava()
    try:
        res = ephw.settle(net32, x32, lava, steps=60, tol=1e-5)
        assert lava.network(net32, 8, "float32").numerics.dtype == "float32"
    finally:
        lava.close()
    assert res.states[0].dtype == torch.float32
    forced = ephw.backends.get_backend("lava", payload_dtype="float64")  # not shadowed by get_backend's dtype
    assert forced.payload_dtype(x32) == "float64"
    with pytest.raises(BackendError, match="payload_dtype"):
        LavaFixed(payload_dtype="float32")
    assert max(float((a - b).abs().max()) for a, b in zip(res.states, ref.states)) < 1e-5
    assert torch.equal(res.predictions, ref.predictions)


def test_delta_threshold_zero_is_exact_and_sends_less(small):
    net, x, _ = small
    dense, delta0, delta = Lava(), Lava(delta_threshold=0.0), Lava(delta_threshold=1e-2)
    try:
        d = ephw.settle(net, x, dense, steps=80, tol=1e-8)
        z = ephw.settle(net, x, delta0, steps=80, tol=1e-8)
        t = ephw.settle(net, x, delta, steps=80, tol=1e-8)
    finally:
        for b in (dense, delta0, delta):
            b.close()
    for a, b in zip(z.states, d.states):
        assert torch.equal(a, b)
    assert torch.equal(z.steps_per_sample, d.steps_per_sample)
    dm, zm, tm = (r.activity.per_image() for r in (d, z, t))
    assert 0 < zm["messages"] < dm["messages"] and 0 < zm["synops"] < dm["synops"]
    assert tm["synops"] < zm["synops"]
    # activity decays over the settle: the last counted timestep sends far less than the first
    decay = z.activity.decay()
    assert decay[-1]["messages"] < 0.2 * decay[0]["messages"]
    err = max(float((a - b).abs().max()) for a, b in zip(t.states, d.states))
    assert 0 < err < 0.2  # the threshold costs some fixed-point accuracy


def test_fanouts_count_the_forward_and_feedback_synapses(small):
    net, _, _ = small
    spec = NetworkSpec.from_model(net)
    out = fanouts(spec)
    assert [f.shape for f in out] == [spec.input_shape, *spec.state_shapes]
    c0, c1, d2 = spec.projections
    fwd = [conv_connections(p.src, p.pre_pool[0], p.weight.shape[-1], p.padding) for p in (c0, c1)]
    # a pooled unit feeds back through one position of its 2x2 window: a quarter of the conv's links
    expected = fwd[0] + fwd[1] + 16 * 6 + fwd[1] / 4 + 16 * 6
    assert sum(float(f.sum()) for f in out) == pytest.approx(expected)
    assert float(out[0].sum()) == fwd[0]  # the input only feeds forward


def test_ep_training_steps_on_lava_follow_euler_and_reload_weights_in_place():
    """A short EP training (the small version of ``train ep --backend lava`` vs a digital backend):
    a few SGD steps of the bundled digits model on lava and on euler (the same Jacobi iteration)
    end at the same weights and test accuracy; the lava network is never rebuilt."""
    from ephw.loading import load_model
    from ephw.data.catalog import load_dataset

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    x, y = train.batch(slice(0, 48))
    xt, yt = test.batch(slice(0, 128))
    nets, accs = {}, {}
    lava = Lava()
    try:
        for name, backend in (("euler", "euler"), ("lava", lava)):
            net = load_model()
            opt = torch.optim.SGD(net.parameters(), lr=0.05)
            for k in range(3):
                step = ep_step(
                    net,
                    x[16 * k : 16 * (k + 1)],
                    y[16 * k : 16 * (k + 1)],
                    backend=backend,
                    beta=0.5,
                    free_steps=30,
                    nudge_steps=10,
                )
                for p, g in zip(net.parameters(), step.grads):
                    p.grad = g
                opt.step()
                if name == "lava" and k == 0:
                    pids = lava.network(net, 16, "float32").child_pids()
            if name == "lava":
                assert lava.network(net, 16, "float32").child_pids() == pids  # weights re-loaded, not rebuilt
            nets[name] = net
            preds = [
                ephw.settle(net, xt[i : i + 16], backend, steps=100, tol=1e-4).predictions for i in range(0, 128, 16)
            ]
            accs[name] = float((torch.cat(preds) == yt).float().mean())
    finally:
        lava.close()
    for a, b in zip(nets["lava"].parameters(), nets["euler"].parameters()):
        assert (a - b).abs().max() < 1e-4  # float32 payloads
    assert abs(accs["lava"] - accs["euler"]) <= 0.02
