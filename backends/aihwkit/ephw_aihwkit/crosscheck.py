"""Cross-check ephw's ``crossbar`` PCM model against aihwkit's tiles: accuracy over chips and read times.

    python -m ephw_aihwkit.crosscheck [--model digits-ep] [--n 540] [--seeds 5] [--times 3600,86400,31536000]
        [--drift-curve 1,3600,86400,31536000] [--json out.json]

For every read time ``t`` and chip seed: the same test images settled on ``euler`` (the digital
reference), on ``crossbar`` with the ``pcm`` preset (``drift.t_seconds = t``, ``chip_seed`` and
``read_seed`` = the seed) and on
``aihwkit`` with its ``pcm`` preset (``t``, ``chip_seed``); per backend and ``t`` the mean accuracy,
prediction agreement with euler and mean |s − s_euler| over the seeds with 95 % Student-t CIs
(:func:`ephw.stats.mean_ci`). ``--drift-curve`` adds, without settling, the relative weight error
``‖W_read − W‖ / ‖W‖`` (Frobenius, over all layers) of both chips at each time: the two models'
statistics side by side, free of the dynamics.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch

from ephw.backends.crossbar import CrossbarSynapses, unrolled
from ephw.checkpoint import load_checkpoint
from ephw.compare import mean_abs_difference
from ephw.crossbar import load_params
from ephw.data import load_dataset
from ephw.inference import DatasetSettle, settle_dataset
from ephw.model import EnergyModel
from ephw.stats import mean_ci
from ephw_aihwkit.config import AIHWKitOptions, rpu_config_for
from ephw_aihwkit.synapses import AIHWKitSynapses

METRICS = ("accuracy", "prediction_agreement", "mean_abs_state_diff")


def crossbar_pcm(t: float, seed: int) -> list[str]:
    """Overrides of ephw's ``pcm`` preset for chip ``seed`` read at ``t``.

    ``read_seed`` follows ``chip_seed``: ephw seeds its frozen 1/f draw by ``read_seed``, aihwkit draws
    it with the chip; with a fixed ``read_seed`` every crossbar chip would share one 1/f realisation.
    """
    return [f"drift.t_seconds={t}", f"chip_seed={seed}", f"read_seed={seed}"]


def weight_error(net: EnergyModel, t: float, seed: int) -> dict[str, float]:
    """Relative weight error ``‖W_read − W‖_F / ‖W‖_F`` over all layers of crossbar and aihwkit PCM chips at ``t``."""
    ref = torch.cat([unrolled(m).flatten() for m in net.synapses])
    xbar = CrossbarSynapses(net, load_params("pcm", overrides=crossbar_pcm(t, seed)))
    xw = torch.cat([a.sampled_weights().flatten() for a in xbar.arrays])  # frozen 1/f draw included
    options = AIHWKitOptions(preset="pcm", t=t, chip_seed=seed)
    tiles = AIHWKitSynapses(net, options, rpu_config_for(options))
    aw = torch.cat([m.effective_weights().flatten() for m in tiles.matrices])
    norm = float(ref.norm())
    return {"crossbar": float((xw - ref).norm()) / norm, "aihwkit": float((aw - ref).norm()) / norm}


def row(run: DatasetSettle, ref: DatasetSettle) -> dict[str, float]:
    """Accuracy, agreement with and mean state deviation from the reference ``ref``, and mean steps."""
    return {
        "accuracy": run.accuracy,
        "prediction_agreement": float((run.predictions == ref.predictions).float().mean()),
        "mean_abs_state_diff": mean_abs_difference(run.states, ref.states),
        "steps_mean": float(run.steps_per_sample.float().mean()),
        "seconds": run.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits-ep", help="checkpoint path or shipped model name")
    ap.add_argument("--data", default=None, help="dataset (default: the model's)")
    ap.add_argument("--n", type=int, default=540, help="test images (class-balanced first n)")
    ap.add_argument("--seeds", type=int, default=5, help="chips per backend and time")
    ap.add_argument("--times", default="3600,86400,31536000", help="read times since programming, s")
    ap.add_argument(
        "--drift-curve", default="1,60,3600,86400,2592000,31536000", help="times of the weight-error curve, s"
    )
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--batch", type=int, default=256, help="images settled at once")
    ap.add_argument(
        "--aihwkit-reads",
        default="tile",
        choices=("tile", "linear"),
        help="aihwkit backend's reads option (linear: one-hot read-outs of the tiles, same numbers, faster)",
    )
    ap.add_argument("--json", default=None, help="write the raw rows and the summary here")
    args = ap.parse_args(argv)

    ckpt = load_checkpoint(args.model)
    net = ckpt.model()
    data = load_dataset(args.data or ckpt.meta.get("data", "digits"), "test").subset(args.n)
    times = [float(t) for t in args.times.split(",") if t]
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def run(backend: str, **options: Any) -> DatasetSettle:
        return settle_dataset(
            net, data, backend, steps=args.steps, tol=args.tol, batch_size=args.batch, keep_states=True, **options
        )

    ref = run("euler")  # deterministic: settled once, the reference of every chip
    for t in times:
        rows.append({"t": t, "seed": None, "backend": "euler", **row(ref, ref)})
        for seed in range(args.seeds):
            xbar = run("crossbar", params=load_params("pcm", overrides=crossbar_pcm(t, seed)))
            aihw = run("aihwkit", preset="pcm", t=t, chip_seed=seed, reads=args.aihwkit_reads)
            rows += [{"t": t, "seed": seed, "backend": r.backend, **row(r, ref)} for r in (xbar, aihw)]
            print(json.dumps(rows[-2:]), flush=True)
    summary = []
    for t in times:
        for backend in ("euler", "crossbar", "aihwkit"):
            sel = [r for r in rows if r["t"] == t and r["backend"] == backend]
            entry: dict[str, Any] = {"t": t, "backend": backend}
            for k in (*METRICS, "steps_mean", "seconds"):
                m, h = mean_ci([r[k] for r in sel])
                entry[k] = [m, None if math.isnan(h) else h]
            summary.append(entry)
    curve = [{"t": float(t), **weight_error(net, float(t), 0)} for t in args.drift_curve.split(",") if t]
    seconds = time.perf_counter() - start
    print(f"n={len(data)} seeds={args.seeds} seconds={seconds:.0f} threads={torch.get_num_threads()}")
    print("| t | backend | accuracy | agreement with euler | mean abs state diff | steps | seconds per settle |")
    print("|---|---|---|---|---|---|---|")
    for e in summary:
        cells = [f"{e[k][0]:.4f} ± {e[k][1] or 0:.4f}" for k in METRICS]
        print(f"| {e['t']:g} s | {e['backend']} | {' | '.join(cells)} | {e['steps_mean'][0]:.1f} | {e['seconds'][0]:.1f} |")
    print("| t | crossbar weight error | aihwkit weight error |")
    print("|---|---|---|")
    for c in curve:
        print(f"| {c['t']:g} s | {c['crossbar']:.4f} | {c['aihwkit']:.4f} |")
    if args.json:
        with open(args.json, "w") as fh:
            report = {"n": len(data), "seconds": seconds, "rows": rows, "summary": summary, "curve": curve}
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
