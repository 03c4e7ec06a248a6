"""The lava process models' event-driven synapses (ephw.lava.procs.models.EventDriven)."""

import numpy as np

from ephw.lava.procs.models import EventDriven


def test_event_driven_map_recomputes_only_the_samples_whose_inputs_changed():
    seen = []

    def fn(a, b):
        seen.append(len(a))
        return a * 2 + b.sum(1, keepdims=True), -a

    rng = np.random.default_rng(0)
    a, b = rng.random((6, 3)), rng.random((6, 4))
    ed = EventDriven(fn)
    first = [o.copy() for o in ed(a, b)]
    assert seen == [6] and np.array_equal(first[0], a * 2 + b.sum(1, keepdims=True))
    assert all(np.array_equal(x, y) for x, y in zip(ed(a.copy(), b.copy()), first)) and seen == [6]  # nothing changed
    a2, b2 = a.copy(), b.copy()
    a2[1, 0] += 1.0  # sample 1 changes in one input, sample 4 in the other
    b2[4, 3] -= 0.5
    out = ed(a2, b2)
    assert seen == [6, 2]
    for got, want in zip(out, fn(a2, b2)):
        assert np.array_equal(got, want)
    ed.forget()  # new weights: every sample again
    ed(a2, b2)
    assert seen[-1] == 6


def test_fixed_point_sums_use_float32_only_where_it_is_exact():
    from ephw.lava.conv import conv2d
    from ephw.lava.numerics import Numerics
    from ephw.lava.procs.models import SynapticWeights

    num = Numerics("fixed_pt", "int32", frac_bits=10)
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, size=(8, 16, 3, 3))
    weights = SynapticWeights(w, num)
    assert weights.l1 == np.abs(w).reshape(8, -1).sum(1).max()
    small = rng.integers(0, 1025, size=(4, 16, 6, 6)).astype(np.int32)  # states in [0, S]
    x, wx = weights.cast(small)
    assert x.dtype == np.float32 and wx.dtype == np.float32  # l1 * 1024 < 2**24
    exact = conv2d(small.astype(np.float64), w.astype(np.float64), 1)
    assert np.array_equal(conv2d(x, wx, 1).astype(np.float64), exact)
    big = small * 64  # partial sums can pass 2**24: float64
    x, wx = weights.cast(big)
    assert x.dtype == np.float64 and np.array_equal(
        conv2d(x, wx, 1), conv2d(big.astype(np.float64), w.astype(np.float64), 1)
    )
    dense = SynapticWeights(rng.integers(-127, 128, size=(5, 7)), num, out_axis=1)
    assert dense.l1 == np.abs(dense.by_dtype[np.dtype(np.float64)]).sum(0).max()
    assert SynapticWeights(w, Numerics("floating_pt", "float32")).cast(small.astype(np.float32))[0].dtype == np.float32
