"""load_dataset argument checks and normalisation constants."""

from __future__ import annotations

import pytest

from ephw.data import DATASETS, dataset_stats, load_dataset
from ephw.errors import InputError


def test_names() -> None:
    assert DATASETS == ("digits", "cifar10", "cifar100")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(InputError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert "mnist" in msg and all(name in msg for name in DATASETS) and "\n" not in msg
    with pytest.raises(InputError):
        dataset_stats("mnist")


def test_bad_split() -> None:
    with pytest.raises(InputError, match="train, test"):
        load_dataset("digits", "val")


def test_stats() -> None:
    assert dataset_stats("digits") == ((0.3,), (0.3,))
    mean, std = dataset_stats("cifar10")
    assert mean == (0.4914, 0.4822, 0.4465)
    assert std == pytest.approx((0.6069, 0.5982, 0.6030))
    mean, std = dataset_stats("cifar100")
    assert mean == (0.5071, 0.4865, 0.4409)
    assert std == pytest.approx((3 * 0.2673, 3 * 0.2564, 3 * 0.2762))
