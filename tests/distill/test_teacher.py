"""Teachers on different backends: the same targets from euler and async, recorded backend parameters."""

from __future__ import annotations

import json

import torch

from ephw.loading import load_model
from ephw.compare import sample_differences
from ephw.data import load_dataset
from ephw.distill.teacher import Teacher

TOL = 1e-6
#: Two settles stopped at residual < tol are each within tol * rho / (1 - rho) of the fixed point
#: (rho: contraction per step). Against a float64 reference settled to 1e-13, the bundled model's
#: 1257 training images were within 21 tol (euler) and 6 tol (async); 100 tol leaves a margin and
#: is still 1000x below the differences between two basins of attraction (> 1e-2).
SAME = 100 * TOL


def test_async_and_euler_teachers_give_the_same_targets():
    net = load_model()
    train = load_dataset("digits", "train")
    x, _ = train.batch(slice(None))  # every image a digits student sees
    ta = Teacher(net, "async", steps=500, tol=TOL).targets(x)
    te = Teacher(net, "euler", steps=500, tol=TOL).targets(x)
    assert bool(ta.converged.all()) and bool(te.converged.all())
    diff = sample_differences(ta.hidden, te.hidden)
    same = diff <= SAME
    # a few training images have two stable fixed points and the backends reach different ones
    # (9 of 1257, docs/distillation.md); all others agree to the settle tolerance
    assert 0 < int((~same).sum()) <= 0.01 * len(train)
    assert bool((diff[~same] > 1e-2).all())
    assert float((ta.output - te.output).abs()[same].max()) <= SAME
    assert torch.equal(ta.predictions, te.predictions)
    # the differences are a settle-tolerance effect: a 100x looser tol gives larger ones
    loose = Teacher(net, "euler", steps=500, tol=100 * TOL).targets(x)
    loose_diff = sample_differences(loose.hidden, ta.hidden)[same]
    assert float(loose_diff.max()) > float(diff[same].max())


def test_crossbar_teacher_describes_its_preset_and_chip():
    net = load_model()
    teacher = Teacher(net, "crossbar", {"preset": "pcm", "overrides": ["chip_seed=3"]}, steps=300, tol=1e-4)
    d = teacher.describe()
    json.dumps(d)  # goes into checkpoint meta as JSON
    assert d["backend"] == "crossbar" and d["backend_options"]["preset"] == "pcm"
    params = d["backend_params"]["params"]
    assert params["chip_seed"] == 3 and params["programming_noise"]["kind"] == "pcm"
    x, _ = load_dataset("digits", "test").batch(slice(0, 16))
    t = teacher.targets(x)
    assert [tuple(h.shape[1:]) for h in t.hidden] == net.state_shapes()


def test_a_stopped_dataset_settle_resumes_at_its_first_missing_batch(tmp_path, monkeypatch):
    """The teacher cache keeps each settled batch until the entry is complete: nothing settled is lost."""
    monkeypatch.setenv("EPHW_CACHE", str(tmp_path))
    net = load_model()
    data = load_dataset("digits", "test").subset(350)  # 4 batches of at most 100
    teacher = Teacher(net, "async", steps=200, tol=1e-4)
    settled: list[int] = []
    real = teacher.targets

    def stop_at_third(x):
        if len(settled) == 2:
            raise KeyboardInterrupt  # a session's end
        settled.append(len(x))
        return real(x)

    monkeypatch.setattr(teacher, "targets", stop_at_third)
    try:
        teacher.dataset_targets(data, batch_size=100, reuse=True)
    except KeyboardInterrupt:
        pass
    (partial,) = (tmp_path / "teachers").glob("*.partial")
    assert len(list(partial.glob("*.pt"))) == 2
    settled.clear()
    monkeypatch.setattr(teacher, "targets", lambda x: (settled.append(len(x)), real(x))[1])
    resumed = teacher.dataset_targets(data, batch_size=100, reuse=True)
    assert len(settled) == -(-len(data) // 100) - 2  # only the batches not settled before
    assert not partial.exists() and len(list((tmp_path / "teachers").glob("*.pt"))) == 1
    whole = Teacher(net, "async", steps=200, tol=1e-4).targets(data.batch(slice(None))[0])
    assert torch.equal(resumed.predictions, whole.predictions)
    assert max(float((a - b).abs().max()) for a, b in zip(resumed.hidden, whole.hidden)) < 1e-6
    settled.clear()
    teacher.dataset_targets(data, batch_size=100, reuse=True)  # complete: read, not settled
    assert settled == []
