"""Class-balanced, deterministic image order: every prefix of a split is a stratified sample.

Image-folder sources (the shared CIFAR-10 tarball among them) list a split class by class, so
"the first N images" of the raw order would be one class. :func:`load_dataset` therefore hands
every split out in :func:`stratified_order` (seed :data:`DATASET_ORDER_SEED`), whatever the source
format: the first N images of any split hold each class in proportion to its share of the split
(``N / K`` per class, to within one image, for the balanced CIFAR splits).
"""

from __future__ import annotations

import numpy as np

DATASET_ORDER_SEED = 0
"""Seed of the fixed order every split of :func:`~ephw.data.load_dataset` is returned in."""


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of ``range(len(labels))`` whose every prefix is stratified by class.

    Within each class the images are shuffled with ``numpy.random.default_rng(seed)``; the
    classes are then interleaved by the fraction of their images already placed (image ``r`` of a
    class with ``n_c`` images sits at key ``(r + 0.5) / n_c``, ties broken by label), so a prefix
    of length ``N`` holds ``round(N * n_c / len(labels))`` images of class ``c``, to within one.

    Args:
        labels: ``(N,)`` integer class labels.
        seed: shuffling seed; the same labels and seed give the same order.

    Returns:
        ``(N,)`` ``int64`` indices into ``labels``.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keys[rng.permutation(members)] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((labels, keys)).astype(np.int64)
