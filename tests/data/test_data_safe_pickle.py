"""The restricted unpickler loads CIFAR-style data and refuses everything else."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from ephw.data import load_dataset
from ephw.data.safe_pickle import UnsafePickleError, restricted_loads
from ephw.errors import DataError


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_loads_numpy_arrays_and_plain_data(protocol: int) -> None:
    data = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3], "k": (1.5, b"x")}
    out = restricted_loads(pickle.dumps(data, protocol=protocol))
    assert np.array_equal(out[b"data"], data[b"data"]) and out[b"data"].dtype == np.uint8
    assert out[b"labels"] == [1, 2, 3] and out["k"] == (1.5, b"x")


def test_refuses_os_system() -> None:
    payload = pickle.dumps({b"data": Exploit()}, protocol=2)
    with pytest.raises(UnsafePickleError, match="system"):
        restricted_loads(payload)


def test_refuses_other_globals() -> None:
    for obj in (Path("/tmp"), pickle.Pickler, np.random.default_rng):
        with pytest.raises(UnsafePickleError):
            restricted_loads(pickle.dumps(obj))


def test_malicious_batch_file_is_a_data_error(tmp_path: Path, make_cifar10_pickles) -> None:
    folder, _ = make_cifar10_pickles(tmp_path)
    marker = tmp_path / "executed"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Touch(str(marker))}, protocol=2))
    with pytest.raises(DataError, match="refusing to load global"):
        load_dataset("cifar10", "test", root=folder)
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mknod, (self.path,))
