"""Confidence intervals across seeds, and of one accuracy over its images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from ephw.stats import accuracy_ci, binomial_ci, mean_ci, paired_difference_ci


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


def test_wilson_interval_known_value_and_edges():
    low, high = binomial_ci(10, 100)  # Wilson 95 %: 0.0552 .. 0.1744
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    assert binomial_ci(0, 50)[0] == 0.0 and binomial_ci(0, 50)[1] > 0.05  # zero successes still leave room
    assert binomial_ci(50, 50)[1] == 1.0
    with pytest.raises(ValueError):
        binomial_ci(3, 2)


def test_wilson_coverage_is_at_least_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        k = int(rng.binomial(100, 0.1))
        low, high = binomial_ci(k, 100)
        hits += low <= 0.1 <= high
    assert 0.93 < hits / 2000 < 0.99


def test_accuracy_ci_adds_the_images_wilson_interval_to_the_seeds_spread():
    wilson = scipy.stats.binomtest(15, 100).proportion_ci(method="wilson")
    one = max(0.15 - wilson.low, wilson.high - 0.15)
    assert accuracy_ci([0.15], 100)[1] == pytest.approx(one, rel=1e-6)
    assert accuracy_ci([0.15, 0.15, 0.15], 100)[1] == pytest.approx(one, rel=1e-6)  # same images: not shrunk
    seeds = mean_ci([0.1, 0.15, 0.2])[1]
    assert accuracy_ci([0.1, 0.15, 0.2], 100)[1] == pytest.approx(math.hypot(seeds, one), rel=1e-6)
    assert accuracy_ci([0.1, 0.15, 0.2])[1] == seeds and math.isnan(accuracy_ci([0.15])[1])


def test_paired_difference_ci_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        paired_difference_ci([1.0, 0.0], [1.0])
    mean, half = paired_difference_ci([1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0])
    assert mean == pytest.approx(0.5) and half > 0


def test_seeds_for_half_width_is_the_fewest_seeds_that_narrow_the_t_interval() -> None:
    from scipy import stats as sps

    from ephw.stats import seeds_for_half_width

    k = seeds_for_half_width(2.0, 1.0)
    assert k is not None and sps.t.ppf(0.975, k - 1) * 2.0 / k**0.5 < 1.0
    assert sps.t.ppf(0.975, k - 2) * 2.0 / (k - 1) ** 0.5 >= 1.0
    assert seeds_for_half_width(0.0, 1.0) == 2
    assert seeds_for_half_width(1.0, 0.0) is None and seeds_for_half_width(100.0, 0.1, most=50) is None
