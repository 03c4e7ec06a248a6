"""The settle API: registry, result object, per-sample convergence reporting, errors."""

from __future__ import annotations

import pytest
import torch

from ephw import BACKENDS, settle
from ephw.backends import Backend, Euler, IterativeBackend, get_backend
from ephw.errors import BackendError, InputError


def test_registry_has_digital_backends():
    assert {"euler", "async"} <= set(BACKENDS)
    for name, cls in BACKENDS.items():
        assert issubclass(cls, Backend) and cls.name == name


def test_unknown_backend_lists_valid_ones(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    with pytest.raises(BackendError) as err:
        settle(net, x, backend="loihi3")
    assert "euler" in str(err.value) and "async" in str(err.value) and "loihi3" in str(err.value)
    with pytest.raises(BackendError, match="dt"):
        get_backend("euler", dt=2.0)
    with pytest.raises(BackendError, match="invalid options"):
        get_backend("async", dt=0.5)


def test_result_fields(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory(n=5)
    res = settle(net, x, "euler", steps=3000, tol=1e-8)
    assert res.backend == "euler"
    assert [tuple(s.shape) for s in res.states] == [(5, *s) for s in net.state_shapes()]
    assert res.logits.shape == (5, 3) and res.predictions.shape == (5,)
    assert res.residuals.shape == (res.steps, 5) and res.energies.shape == (res.steps + 1, 5)
    assert res.converged.dtype == torch.bool and res.converged_fraction == 1.0
    assert (res.steps_per_sample <= res.steps).all() and res.steps_per_sample.max() == res.steps
    # the per-sample count is where the residual trace last stays below tol
    for b in range(5):
        k = int(res.steps_per_sample[b])
        assert res.residuals[k - 1, b] < 1e-8 and (k == 1 or res.residuals[k - 2, b] >= 1e-8)


def test_unconverged_samples_are_reported(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory(n=4)
    res = settle(net, x, "euler", steps=3, tol=1e-12)
    assert res.steps == 3 and not res.converged.any() and res.converged_fraction == 0.0
    assert (res.steps_per_sample == 3).all()


def test_fixed_steps_mode_and_init(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    res = settle(net, x, "async", steps=7, tol=None)
    assert res.steps == 7 and res.converged is None and res.converged_fraction is None
    fixed = settle(net, x, "async", steps=5000, tol=1e-12)
    again = settle(net, x, "async", steps=5000, tol=1e-10, init=fixed.states)
    assert again.steps == 1
    fixed.states[0].add_(1.0)  # init is copied, never aliased
    assert again.states[0].max() <= 1.0


def test_custom_backend_instance_is_accepted(net_factory, batch_factory):
    class Frozen(IterativeBackend):
        name = "frozen"

        def step(self, net, x, states, beta, target, ops):
            return list(states), net.energy(x, states)

    net = net_factory()
    x, _ = batch_factory()
    res = settle(net, x, Frozen(), steps=10, tol=1e-6)
    assert res.steps == 1 and res.backend == "frozen"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"steps": 0}, "steps"),
        ({"tol": -1.0}, "tol"),
        ({"beta": 0.5}, "target"),
    ],
)
def test_bad_arguments(net_factory, batch_factory, kwargs, match):
    net = net_factory()
    x, _ = batch_factory()
    with pytest.raises(InputError, match=match):
        settle(net, x, "euler", **kwargs)


def test_bad_images_and_init(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    with pytest.raises(InputError, match="shape"):
        settle(net, x[:, :, :4], "euler")
    nan = x.clone()
    nan[1, 0, 2, 2] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        settle(net, nan, "async")
    with pytest.raises(InputError, match="float32"):
        settle(net, x.float(), "euler")
    with pytest.raises(InputError, match="state 1"):
        settle(net, x, "euler", init=[torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)])


def test_noisy_backend_settles_on_a_residual_plateau(net_factory, batch_factory):
    """With noise the residual never reaches tol; a stationary residual counts as settled."""

    class NoisyEuler(Euler):
        name = "noisy-euler"
        plateau_window = 10

        def __init__(self):
            super().__init__()
            self.gen = torch.Generator().manual_seed(0)

        def step(self, net, x, states, beta, target, ops):
            new, energy = super().step(net, x, states, beta, target, ops)
            noise = [1e-3 * torch.randn(s.shape, generator=self.gen, dtype=s.dtype) for s in new]
            return [(s + n).clamp(0, 1) for s, n in zip(new, noise)], energy

    net = net_factory()
    x, _ = batch_factory()
    plain = settle(net, x, NoisyEuler(), steps=1000, tol=1e-9)
    assert plain.converged.all() and plain.steps < 1000
    floor = plain.residuals[-5:].max()
    assert 1e-4 < floor < 1e-2  # the noise floor is reported, not hidden
    NoisyEuler.plateau_window = None
    stuck = settle(net, x, NoisyEuler(), steps=200, tol=1e-9)
    assert not stuck.converged.any() and stuck.steps == 200


@pytest.mark.parametrize("backend", ["euler", "async", "sor", "anderson"])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_reading_convergence_every_k_steps_gives_the_same_result(net_factory, batch_factory, backend, beta):
    """``sync_every`` > 1 (CUDA's default: fewer host syncs) holds converged samples on the device:
    the states, step counts and traces are those of compacting the batch at every step."""
    net = net_factory("softmax", "laborieux", init_scale=2.0)
    x, y = batch_factory(n=12)
    results = []
    for every in (1, 5):
        impl = get_backend(backend)
        impl.sync_every = every
        results.append(settle(net, x, impl, steps=400, tol=1e-9, beta=beta, target=y))
    a, b = results
    assert a.steps_per_sample.unique().numel() > 2  # samples froze at different steps
    assert torch.equal(a.steps_per_sample, b.steps_per_sample) and torch.equal(a.converged, b.converged)
    assert all((s - t).abs().max() <= 1e-12 for s, t in zip(a.states, b.states))
    # the held run may go on until the next read (at most 4 more rows, all samples frozen there)
    n = a.steps
    assert n <= b.steps < n + 5 and (a.residuals - b.residuals[:n]).abs().max() <= 1e-12
    assert not b.residuals[n:].any() and (b.energies[n:] == b.energies[-1]).all()
    assert (a.energies - b.energies[: n + 1]).abs().max() <= 1e-10


def test_freezing_energy_is_the_energy_of_the_frozen_state(net_factory, batch_factory):
    net = net_factory("softmax", "laborieux")
    x, y = batch_factory(n=6)
    for backend in ("euler", "async", "anderson"):
        res = settle(net, x, backend, steps=400, tol=1e-9, beta=0.5, target=y)
        expect = net.energy(x, res.states, 0.5, y)
        assert (res.energies[-1] - expect).abs().max() <= 1e-10


@pytest.mark.parametrize("backend", ["euler", "async", "crossbar"])
def test_an_empty_batch_is_an_input_error(net_factory, backend) -> None:
    """Issue 34 item 5: not torch's reshape RuntimeError (lava already refused it)."""
    net = net_factory()
    with pytest.raises(InputError) as info:
        settle(net, torch.zeros(0, *net.config.in_shape, dtype=torch.float64), backend=backend)
    assert str(info.value) == f"{backend}: an empty batch (0 images): nothing to settle"
