"""Summary statistics reported across seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the ``level`` confidence interval (Student t, ``n - 1`` dof).

    With a single value the half-width is ``nan`` (no spread can be estimated).
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * math.sqrt(var / n)
    return mean, float(half)


def seeds_for_half_width(sd: float, half: float, level: float = 0.95, most: int = 1000) -> int | None:
    """Fewest seeds ``k >= 2`` whose t-interval of a mean of spread ``sd`` is narrower than ``half``.

    ``None`` when even ``most`` seeds leave it wider (or ``half <= 0``).
    """
    if half <= 0:
        return None
    if sd <= 0:
        return 2
    for k in range(2, most + 1):
        if stats.t.ppf(0.5 + level / 2, k - 1) * sd / math.sqrt(k) < half:
            return k
    return None


def paired_difference_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of ``a - b`` measured on the same items (``a[i]``, ``b[i]``: item ``i``).

    The t-interval over the per-item differences: the image-to-image variation both models
    share cancels, which an interval per model cannot see. ``nan`` half-width for one item.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values of different lengths ({len(a)} and {len(b)})")
    return mean_ci([x - y for x, y in zip(a, b)], level)


def accuracy_ci(values: Sequence[float], images: int | None = None, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of an accuracy measured once per seed (fractions in ``[0, 1]``).

    Two uncertainties, added in quadrature: which training seed (the t-interval over
    ``values``, :func:`mean_ci`; none for one value) and, when ``images`` (per seed) is given,
    which test images (the longer side of the Wilson interval of the mean accuracy over
    ``images``: every seed is measured on the same images, so more seeds do not shrink it).
    ``nan`` when neither is known.
    """
    mean, seeds = mean_ci(values, level)
    if not images:
        return mean, seeds
    low, high = binomial_ci(round(min(max(mean, 0.0), 1.0) * images), images, level)
    part = max(mean - low, high - mean)
    return mean, part if math.isnan(seeds) else math.hypot(seeds, part)


def binomial_ci(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a proportion ``correct / n`` (fractions in ``[0, 1]``).

    The uncertainty of one accuracy measured on ``n`` images (one seed): what the images alone
    leave open, before any seed-to-seed spread.
    """
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"binomial_ci needs 0 <= correct <= n and n > 0, got {correct}/{n}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high
