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
