"""The lava backends against the digital euler iteration, and their process hygiene."""

from __future__ import annotations

import os
import signal
import threading
import time
from importlib.util import find_spec

import pytest
import torch

import ephw
from ephw.backends.lava import Lava, LavaFixed
from ephw.errors import InputError
from ephw.lava.network import LavaRuntimeError

pytestmark = pytest.mark.skipif(find_spec("lava") is None, reason="lava-nc not installed (make test installs it)")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def small(net_factory, batch_factory):
    net = net_factory(dense=(6,), init_scale=1.5)  # conv-pool, conv-pool, dense: every process kind
    x, _ = batch_factory(8)
    return net, x


def test_floating_point_lava_follows_euler_step_by_step(small):
    net, x = small
    ref = ephw.settle(net, x, "euler", steps=60, tol=1e-8)
    lava = Lava(check_every=7)  # chunks that do not divide the step count
    try:
        res = ephw.settle(net, x, lava, steps=60, tol=1e-8)
    finally:
        lava.close()
    assert torch.equal(res.steps_per_sample, ref.steps_per_sample)
    assert torch.equal(res.converged, ref.converged) and bool(res.converged.all())
    for a, b in zip(res.states, ref.states):
        assert (a - b).abs().max() < 1e-12
    n = ref.residuals.shape[0]
    assert torch.allclose(res.residuals[:n], ref.residuals, atol=1e-12)
    assert bool((res.residuals[n:] == 0).all())  # rest of the last chunk: every sample frozen
    assert res.steps % 7 == 0 or res.steps == 60
    assert res.energies.shape == (1 + -(-res.steps // 7), 8)  # start + one row per chunk
    assert torch.allclose(res.energies[-1], ref.energies[-1], atol=1e-10)
    assert torch.equal(res.predictions, ref.predictions)


def test_fixed_steps_from_given_initial_states_and_damping(small):
    net, x = small
    init = ephw.settle(net, x, "euler", steps=3, tol=None).states
    ref = ephw.settle(net, x, "euler", steps=12, tol=None, init=init, dt=0.5)
    lava = Lava(dt=0.5, check_every=5)
    try:
        res = ephw.settle(net, x, lava, steps=12, tol=None, init=init)
    finally:
        lava.close()
    assert res.steps == 12 and res.converged is None
    for a, b in zip(res.states, ref.states):
        assert (a - b).abs().max() < 1e-12


def test_fixed_point_lava_lands_near_the_digital_fixed_point(small):
    net, x = small
    ref = ephw.settle(net, x, "euler", steps=200, tol=1e-8)
    lava = LavaFixed(frac_bits=12)
    try:
        res = ephw.settle(net, x, lava, steps=200, tol=1e-8)
    finally:
        lava.close()
    assert bool(res.converged.all())
    scale = 2.0**12
    for s in res.states:  # states are integers at the documented scale
        assert torch.equal(s * scale, (s * scale).round())
    err = max(float((a - b).abs().max()) for a, b in zip(res.states, ref.states))
    assert 0 < err < 0.05
    assert float((res.predictions == ref.predictions).float().mean()) >= 0.85


def test_network_is_reused_across_batches_and_smaller_batches_are_padded(small):
    net, x = small
    lava = Lava()
    try:
        first = ephw.settle(net, x, lava, steps=50, tol=1e-8)
        pids = lava.network(net, 8).child_pids()
        part = ephw.settle(net, x[:3], lava, steps=50, tol=1e-8)
        assert lava.network(net, 3).child_pids() == pids  # same processes, no rebuild
        for a, b in zip(part.states, first.states):
            assert (a - b[:3]).abs().max() < 1e-12
        with torch.no_grad():
            net.convs[0].weight.mul_(0.5)  # a weight update is loaded into the running network
        moved = ephw.settle(net, x, lava, steps=50, tol=1e-8)
        assert lava.network(net, 8).child_pids() == pids
        ref = ephw.settle(net, x, "euler", steps=50, tol=1e-8)
        for a, b in zip(moved.states, ref.states):
            assert (a - b).abs().max() < 1e-12
        assert max(float((a - b).abs().max()) for a, b in zip(moved.states, first.states)) > 1e-3
    finally:
        lava.close()
    assert not any(alive(p) for p in pids)


def test_nudged_phase_without_target_is_an_input_error(small):
    net, x = small
    with pytest.raises(InputError, match="target"):
        ephw.settle(net, x, "lava", beta=0.5)


@pytest.mark.parametrize("cls", [Lava, LavaFixed])
def test_error_inside_a_process_model_reaches_the_caller_and_no_child_survives(small, cls):
    net, x = small
    lava = cls(fail_at_step=4, check_every=3)
    network = lava.network(net, 8)
    with pytest.raises(LavaRuntimeError, match="injected failure.*timestep 4"):
        ephw.settle(net, x, lava, steps=50, tol=1e-8)
    pids = network.child_pids()
    assert pids and not any(alive(p) for p in pids)
    assert network.closed and lava._cache is None


def test_keyboard_interrupt_stops_every_lava_process(small):
    net, x = small
    lava = Lava(check_every=200)
    network = lava.network(net, 8)
    pids: list[int] = []

    def interrupt() -> None:
        # wait until the run is under way (lava's children ignore SIGINT; this process tears them down)
        deadline = time.monotonic() + 120
        while not network.child_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        pids.extend(network.child_pids())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.0, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ephw.settle(net, x, lava, steps=100_000, tol=None)  # far longer than 3 s
    finally:
        timer.cancel()
    assert pids and not any(alive(p) for p in pids)
    assert network.closed


def test_resources_of_the_small_model(small):
    net, _ = small
    res = Lava().resources(net)
    # input 64, conv1 out 3x8x8, unpool2 and conv2 out 4x4x4, s1 3x4x4, s2 4x2x2, dense s3 6
    assert res["neurons"] == 64 + 192 + 48 + 64 + 64 + 16 + 6
    assert res["neuro_cores"] == 7 and res["chips"] == 1


def test_bench_reports_the_lava_timestep_against_euler():
    from ephw.bench.settle_bench import bench_backend_steps

    r = bench_backend_steps(["euler", "lava"], "digits", batch=16, repeats=1)
    rows = {row["backend"]: row for row in r["rows"]}
    assert rows["euler"]["ratio_to_reference"] == 1.0
    assert rows["lava"]["step_ms"] > 0 and rows["lava"]["ratio_to_reference"] > 0
