"""The datasets ephw knows: their names, how to load a split, and normalisation constants."""

from __future__ import annotations

import os

from ephw.data.imageset import SPLITS, ImageSet
from ephw.data.order import DATASET_ORDER_SEED, stratified_order
from ephw.errors import InputError

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100")
"""Names accepted by :func:`load_dataset` and :func:`dataset_stats`."""

# Per-channel (mean, std) of images in [0, 1]. For CIFAR the std is 3x the usual value, as in
# Laborieux et al. 2021 (scaled inputs suit the hard-sigmoid EP dynamics).
_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # digits pixels have mean ~0.3: centring them (with a matching scale) lets a
    # freshly initialised EP network reach non-trivial fixed points.
    "digits": ((0.3,), (0.3,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (3 * 0.2023, 3 * 0.1994, 3 * 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (3 * 0.2673, 3 * 0.2564, 3 * 0.2762)),
}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return name


def load_dataset(name: str, split: str = "test", root: str | os.PathLike[str] | None = None) -> ImageSet:
    """Load one split of a dataset.

    Args:
        name: ``"digits"`` (scikit-learn 8x8 digits, bundled; ``root`` is ignored),
            ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` or ``"test"``.
        root: where the CIFAR data is (see :func:`ephw.data.sources.resolve_root`); ``None``
            searches ``$EPHW_DATA``, ``./data`` and ``../shared/data``.

    Returns:
        :class:`ImageSet`; digits: ``float32`` ``(N, 1, 8, 8)`` in [0, 1] (1,257 train / 540
        test); CIFAR: ``uint8`` ``(N, 3, 32, 32)`` (decoded once, then loaded from the cache).
        Every split comes in the fixed class-stratified order of :mod:`ephw.data.order`, so its
        first ``n`` images (:meth:`ImageSet.subset`) are a class-balanced sample.

    Raises:
        InputError: unknown name or split.
        DataError: the CIFAR data cannot be found or read.
    """
    _check_name(name)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if name == "digits":
        from ephw.data.digits import load_digits_split

        data = load_digits_split(split)
    else:
        from ephw.data.cifar import load_cifar

        data = load_cifar(name, split, root)
    return data.reordered(stratified_order(data.labels.numpy(), DATASET_ORDER_SEED))


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` normalisation constants (for images in [0, 1]) of ``name``."""
    return _STATS[_check_name(name)]
