"""Search EP training recipes for CIFAR-10 ``cpu-small`` at equal cost (Optuna, TPE, SQLite storage).

Each trial trains a fresh EP-CNN for one short cosine schedule whose length is set by a fixed
budget of image-sweeps (sweeps of every phase summed over the training images; machine
independent): a recipe with fewer sweeps per image sees more images. The objective is the test
accuracy on the first ``--eval-n`` (class-balanced) test images after the budget. Every trial is
recorded in the study database and appended to ``trials.jsonl`` beside it; a killed search
resumes with the same command (Optuna re-runs the interrupted trial).

    python benchmarks/tune_ep_recipe.py --trials 12 --out benchmarks/results/ep-recipes

Short budgets rank recipes by how fast they learn early; they cannot rank ``free_init=image``
(persistent per-image states need whole epochs to revisit an image), which the curves of
``ephw bench recipe`` measure instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch

from ephw.outputs import append_line, ensure_dir
from ephw.training.train_ep import CIFAR_DEFAULTS, EPTrainSettings, train_ep

BASE_LRS = CIFAR_DEFAULTS["lrs"]


def sweeps_per_image(free_steps: int, nudge_steps: int, nudging: str) -> int:
    return free_steps + nudge_steps * (2 if nudging == "centered" else 1)


def trial_settings(trial: optuna.Trial, budget: int, batch: int, eval_n: int, out: Path) -> EPTrainSettings:
    free_init = trial.suggest_categorical("free_init", ["zero", "batch"])
    free_steps = trial.suggest_categorical("free_steps", [8, 12, 16, 24, 30])
    nudge_steps = trial.suggest_categorical("nudge_steps", [4, 6, 8, 10])
    nudging = trial.suggest_categorical("nudging", ["centered", "positive"])
    beta = trial.suggest_float("beta", 0.1, 0.6, log=True)
    lr_scale = trial.suggest_float("lr_scale", 0.5, 3.0, log=True)
    batches = max(1, budget // (batch * sweeps_per_image(free_steps, nudge_steps, nudging)))
    trial.set_user_attr("batches", batches)
    base = EPTrainSettings(data="cifar10", **CIFAR_DEFAULTS)
    return replace(
        base,
        free_init=free_init,
        free_steps=free_steps,
        nudge_steps=nudge_steps,
        nudging=nudging,
        beta=beta,
        lrs=tuple(round(lr * lr_scale, 6) for lr in BASE_LRS),
        epochs=1,
        max_batches=batches,
        batch_size=batch,
        eval_n=eval_n,
        eval_steps=250,
        checkpoint_every=10_000,
        out=str(out / f"trial-{trial.number}"),
        progress=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=12, help="trials in total (a resumed search counts the done ones)")
    ap.add_argument("--budget", type=int, default=128 * 80 * 50, help="image-sweeps per trial (default: 80 of today's batches)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eval-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    ap.add_argument("--out", default="benchmarks/results/ep-recipes")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = ensure_dir(a.out)
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.create_study(
        study_name="ep-recipe-cifar10-cpu-small",
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=a.seed, n_startup_trials=6),
    )
    # today's recipe first, so every search has the baseline at the same budget
    if not study.trials:
        study.enqueue_trial(
            {"free_init": "zero", "free_steps": 30, "nudge_steps": 10, "nudging": "centered", "beta": 0.5, "lr_scale": 1.0}
        )
    for t in study.trials:  # a trial a kill interrupted is run again
        if t.state == optuna.trial.TrialState.RUNNING:
            study.enqueue_trial(t.params)

    def objective(trial: optuna.Trial) -> float:
        s = trial_settings(trial, a.budget, a.batch, a.eval_n, out)
        shutil.rmtree(s.out, ignore_errors=True)
        t0 = time.perf_counter()
        try:
            metrics = train_ep(s)
        except Exception as exc:  # a diverged recipe scores chance and is recorded as such
            metrics = {"test_accuracy": 0.1, "error": f"{type(exc).__name__}: {exc}"}
        seconds = time.perf_counter() - t0
        rows = [json.loads(x) for x in (Path(s.out) / "metrics.jsonl").read_text().splitlines() if x.strip()]
        train_seconds = sum(r["seconds"] * _rows_batches(rows, r) for r in rows if r.get("event") == "train")
        record = {
            "trial": trial.number,
            "params": trial.params,
            "batches": s.max_batches,
            "image_sweeps": sum(r["image_sweeps"] * _rows_batches(rows, r) for r in rows if r.get("event") == "train"),
            "train_seconds": round(train_seconds, 2),
            "wall_seconds": round(seconds, 2),
            **metrics,
        }
        append_line(out / "trials.jsonl", json.dumps(record, sort_keys=True))
        shutil.rmtree(s.out, ignore_errors=True)  # the model of a short trial is not kept
        return float(metrics["test_accuracy"])

    left = a.trials - len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    if left > 0:
        study.optimize(objective, n_trials=left)
    print(json.dumps({"best": study.best_trial.params, "test_accuracy": study.best_value}))


def _rows_batches(rows: list[dict], row: dict) -> int:
    """How many batches a ``train`` row averages (rows are written every 20 batches and at an epoch's end)."""
    prev = [r["batch"] for r in rows if r.get("event") == "train" and r["epoch"] == row["epoch"] and r["batch"] < row["batch"]]
    return row["batch"] - (max(prev) if prev else 0)


if __name__ == "__main__":
    main()
