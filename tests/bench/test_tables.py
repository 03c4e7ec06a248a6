"""``ephw bench table``: markdown from bench --json reports, ratios only."""

from __future__ import annotations

import json

from ephw.bench.tables import report_table
from ephw.cli.main import main

SETTLE = {
    "config": "digits",
    "batch": 4,
    "threads": 1,
    "model": "m",
    "tol": 1e-4,
    "async_sweep_over_euler_step": 0.9,
    "settle_overhead_euler": 0.031,
    "settle_overhead_async": -0.02,
    "speedup_vs_autograd": 1.5,
    "reference_steps": 250,
    "rows": [
        {"solver": "euler", "steps_mean": 20.0, "steps_max": 30, "converged_fraction": 1.0, "seconds": 2.0,
         "over_reference": 0.2, "over_euler": 1.0, "over_async": 2.0, "samples_differing": 1},
        {"solver": "async", "steps_mean": 10.25, "steps_max": 15, "converged_fraction": 0.75, "seconds": 1.0,
         "over_reference": 0.1, "over_euler": 0.5, "over_async": 1.0, "samples_differing": 0},
    ],
}  # fmt: skip


def test_settle_report_becomes_ratio_rows_without_seconds():
    text = report_table(SETTLE)
    assert "**0.90**" in text and "euler **+3 %**" in text and "async **-2 %**" in text
    assert "| `async` | 10.2 / 15 | 0.75 | 0.100 | 0.50 | 1.00 | 0 / 4 |" in text
    assert "| `euler` | 20.0 / 30 | 1.00 | 0.200 | 1.00 | 2.00 | 1 / 4 |" in text
    assert " s " not in text and "seconds" not in text


def test_bench_table_cli_reads_reports(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text("progress noise\n" + json.dumps(SETTLE) + "\n")
    assert main(["bench", "table", str(path)]) == 0
    assert "| `async` |" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert main(["bench", "table", str(bad)]) == 2
    assert "not a bench --json report" in capsys.readouterr().err
