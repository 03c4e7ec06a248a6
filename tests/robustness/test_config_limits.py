"""Robustness TOML values that were silently accepted (issue 34 items 5 and 9): one-line ConfigErrors."""

from __future__ import annotations

import pytest

from ephw.errors import ConfigError
from ephw.robustness.config import MAX_STEPS, config_from_dict
from ephw.robustness.runner import run_robustness


def config(run: dict | None = None, model: dict | None = None, attack: dict | None = None) -> dict:
    return {
        "run": {"data": "digits", "n": 4, "seeds": [0], **(run or {})},
        "models": [{"name": "ep", "path": "bundled", **(model or {})}],
        "attacks": [{"name": "pgd", "method": "pgd", "norm": "L2", "eps": [0.5], **(attack or {})}],
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (config(run={"seeds": [-1]}), "[run] seeds must be integers 0..4294967295, got -1"),
        (config(run={"seeds": [0, 2**40]}), "[run] seeds must be integers 0..4294967295, got 1099511627776"),
        (config(model={"steps": 10**12}), f"model 'ep': steps must be at most {MAX_STEPS:,}, got 1,000,000,000,000"),
        (config(attack={"steps": 10**7}), f"attack 'pgd': steps must be at most {MAX_STEPS:,}, got 10,000,000"),
        (
            config(attack={"method": "square", "norm": "Linf", "n_queries": 10**9}),
            f"attack 'pgd': n_queries must be at most {MAX_STEPS:,}, got 1,000,000,000",
        ),
        (
            config(attack={"norm": "Linf", "eps": [float("inf")]}),
            "attacks[0] (pgd): eps must be finite numbers, got inf",
        ),
        (config(attack={"eps": [0.5, float("nan")]}), "attacks[0] (pgd): eps must be finite numbers, got nan"),
    ],
)
def test_out_of_range_values_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert str(info.value) == message


def test_the_limits_themselves_are_accepted() -> None:
    cfg = config_from_dict(config(run={"seeds": [0, 2**32 - 1]}, model={"steps": MAX_STEPS}))
    assert cfg.seeds == (0, 2**32 - 1) and cfg.models[0].steps == MAX_STEPS


def test_n_larger_than_the_split_is_refused_not_capped(tmp_path) -> None:
    out = tmp_path / "r" / "results.jsonl"
    with pytest.raises(ConfigError) as info:
        run_robustness(config_from_dict(config(run={"n": 541})), out, progress=False)
    assert str(info.value) == "[run] n = 541 but the digits test split has 540 images: ask for at most that"
    assert not (tmp_path / "r").exists()  # refused before any row: nothing left behind
