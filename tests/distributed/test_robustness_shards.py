"""A sharded robustness run (torchrun ranks, ``--shard K/N`` jobs) gives exactly the unsharded rows, none twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ephw.errors import ConfigError
from ephw.robustness.runner import Task, row_key
from ephw.robustness.shards import Shard, assign, parse_shard, shard_file, shard_files

LIMIT_S = 300
TIMING = ("time", "seconds")  # wall-clock fields: the only ones allowed to differ

CONFIG = """
[run]
data = "digits"
n = 24
seeds = [0, 1]
device = "cpu"

[[models]]
name = "EP"
path = "bundled"
backend = "async"
steps = 40
tol = 1e-4
grad = "bptt:10"

[[models]]
name = "BP"
path = "{bp}"

[[attacks]]
name = "pgd"
method = "pgd"
norm = "L2"
eps = [0.5, 1.0]
steps = 5
restarts = 1

[[attacks]]
name = "square"
method = "square"
norm = "L2"
eps = [1.0]
n_queries = 30
cascade = true

[checks]
double_steps = true
transfer_from = "others"
check_eps = {{ "pgd" = [1.0] }}
zero_grad_images = 8
"""


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def ephw(*argv: str, ranks: int | None = None) -> dict:
    """Run ``ephw ARGV`` (under ``torchrun --nproc-per-node RANKS`` if given); its last stdout line as JSON."""
    if ranks is None:
        cmd = [sys.executable, "-m", "ephw", *argv]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m"]
        cmd += ["ephw", *argv]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows_of(*paths: Path) -> list[dict]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]


def by_key(rows: list[dict]) -> dict[tuple, dict]:
    out = {row_key(r): {k: v for k, v in r.items() if k not in TIMING} for r in rows}
    assert len(out) == len(rows), "a row appears twice"
    return out


def test_parse_shard_and_file_names(tmp_path: Path) -> None:
    assert parse_shard("2/4") == Shard(2, 4)
    for bad in ("4/4", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    results = tmp_path / "r.jsonl"
    for k in range(3):
        shard_file(results, Shard(k, 3)).write_text("")
    (tmp_path / "r.shard-x-of-3.jsonl").write_text("")
    assert [p.name for p in shard_files(results)] == [f"r.shard-{k}-of-3.jsonl" for k in range(3)]


def test_assignment_balances_cost_and_keeps_groups_whole() -> None:
    tasks = [Task("clean", m, s) for m in ("a", "b", "c") for s in range(4)]
    cost = {"a": 10.0, "b": 1.0, "c": 1.0}
    owner = assign(tasks, 2, lambda t: cost[t.model])
    load = [sum(cost[m] for (m, _), k in owner.items() if k == r) for r in range(2)]
    assert sorted(load) == [24.0, 24.0]  # 4x10 + 4x1 + 4x1 = 48, split evenly
    assert owner == assign(tasks, 2, lambda t: cost[t.model])  # the same on every process


@pytest.mark.slow
def test_sharded_runs_equal_the_unsharded_run(tmp_path: Path) -> None:
    ephw("train", "bp", "--data", "digits", "--epochs", "1", "--max-batches", "5", "--no-progress", "--out",
         str(tmp_path / "bp"))  # fmt: skip
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG.format(bp=tmp_path / "bp" / "model.pt"))
    run = ("robustness", "run", "--config", str(cfg), "--no-progress", "--out")

    plain = tmp_path / "plain.jsonl"
    ephw(*run, str(plain))
    reference = by_key(rows_of(plain))

    # torchrun, 2 ranks: one shard file per rank, disjoint, together the unsharded rows
    ranked = tmp_path / "ranked.jsonl"
    summary = ephw(*run, str(ranked), ranks=2)
    files = shard_files(ranked)
    assert [p.name for p in files] == ["ranked.shard-0-of-2.jsonl", "ranked.shard-1-of-2.jsonl"]
    parts = [by_key(rows_of(p)) for p in files]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert by_key(rows_of(*files)) == reference
    assert summary["computed"] == summary["rows"] == len(reference)
    print(f"torchrun 2 ranks: {len(parts[0])} + {len(parts[1])} rows = {len(reference)} unsharded rows")

    # independent jobs (--shard K/N), the first one stopped early and the rest resumed under torchrun
    jobs = tmp_path / "jobs.jsonl"
    ephw(*run, str(jobs), "--shard", "0/2", "--limit", "3")
    ephw(*run, str(jobs), "--shard", "1/2")
    resumed = ephw(*run, str(jobs), ranks=2)
    assert resumed["skipped"] == 3 + len(by_key(rows_of(shard_file(jobs, Shard(1, 2)))))
    assert by_key(rows_of(*shard_files(jobs))) == reference

    # a resume with another shard count (one process) finds every row, whichever shard made it
    again = ephw(*run, str(jobs))
    assert again["computed"] == 0 and again["skipped"] == len(reference)

    report = ephw("robustness", "report", str(ranked), "--out", str(tmp_path / "report"))
    assert Path(report["report"]).is_file()
    assert "duplicate" not in Path(report["report"]).read_text().lower()
