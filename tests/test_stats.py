"""Confidence intervals across seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ephw.stats import mean_ci


def test_known_values():
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert half == pytest.approx(2.776445 * math.sqrt(2.5 / 5), rel=1e-6)  # t_{0.975, 4}
    assert math.isnan(mean_ci([0.7])[1])


def test_coverage_is_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        m, h = mean_ci(list(rng.normal(1.0, 2.0, size=5)))
        hits += abs(m - 1.0) <= h
    assert 0.93 < hits / 2000 < 0.97
