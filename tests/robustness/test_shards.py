"""Sharded and unsharded runs on one results file exclude each other (issue 34 item 7)."""

from __future__ import annotations

import pytest

from ephw.errors import OutputError
from ephw.robustness.config import config_from_dict
from ephw.robustness.runner import run_robustness
from ephw.robustness.shards import Shard, lock_rows


def test_an_unsharded_run_and_shards_of_the_same_results_exclude_each_other(tmp_path) -> None:
    results = tmp_path / "results.jsonl"
    with lock_rows(results, Shard(0, 2)), lock_rows(results, Shard(1, 2)):  # one split's shards: side by side
        with pytest.raises(OutputError, match=f"{results} is in use by another ephw run"):
            lock_rows(results, None)
        with pytest.raises(OutputError, match="is in use by another ephw run"):  # each shard runs once
            lock_rows(results, Shard(0, 2))
        with pytest.raises(OutputError) as info:  # another split's groups overlap this one's
            lock_rows(results, Shard(2, 3))
        assert str(info.value) == (
            f"{results} is being computed as shard 0/2 by another ephw run: every shard of one run must use "
            "the same N (--shard K/2), or wait for it"
        )
    with lock_rows(results, None):
        for shard in (Shard(0, 2), Shard(1, 2)):
            with pytest.raises(OutputError, match=f"{results} is in use by another ephw run"):
                lock_rows(results, shard)
    with lock_rows(results, Shard(1, 3)):  # everything released: any split may start again
        pass


def test_run_robustness_takes_the_rows_lock(tmp_path) -> None:
    raw = {"run": {"data": "digits", "n": 4, "seeds": [0]}, "models": [{"name": "ep", "path": "bundled"}]}
    results = tmp_path / "results.jsonl"
    with lock_rows(results, Shard(0, 2)):
        with pytest.raises(OutputError, match="is in use by another ephw run"):
            run_robustness(config_from_dict(raw), results, progress=False)
    with lock_rows(results, None):
        with pytest.raises(OutputError, match="is in use by another ephw run"):
            run_robustness(config_from_dict(raw), results, progress=False, shard=Shard(1, 2))
    assert not (tmp_path / "results.jsonl.shard-1-of-2.jsonl").exists()
