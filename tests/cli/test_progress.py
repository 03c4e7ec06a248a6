"""``settle`` and ``compare`` show a progress bar on stderr (lava takes seconds per batch)."""

from __future__ import annotations

import json

import pytest

from ephw.cli.main import main


def test_settle_on_lava_shows_progress_and_keeps_stdout_clean(capsys):
    pytest.importorskip("lava")
    assert main(["settle", "--backend", "lava", "--n", "8", "--batch", "4", "--json", "--progress"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["n"] == 8  # --json output untouched
    assert "settling on lava" in err and "8/8" in err


def test_compare_progress_per_backend_and_off_on_request(capsys):
    assert main(["compare", "--backends", "euler,async", "--n", "6", "--batch", "3", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "settling on euler" in err and "settling on async" in err and "6/6" in err
    assert main(["compare", "--backends", "euler,async", "--n", "6", "--no-progress"]) == 0
    assert "settling on" not in capsys.readouterr().err
