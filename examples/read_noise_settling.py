"""What the time structure of read noise does to settling: residual floor and fixed-point deviation.

Settles the bundled digits EP-CNN on ``pcm`` chips read at ``--t`` for a fixed budget of
``--steps`` Euler steps (no early stop) with ``read_noise.time_structure`` = ``per_read``,
``correlated`` (``tau_reads`` = 5 and 50) and ``frozen``, on ``--seeds`` chips, and prints per
structure: the median residual ``max|Δs|`` over the last 20 steps (the floor), the mean state
deviation from the ``euler`` fixed point, the accuracy, and the deviation of a time-averaged
state (mean of the last 20 steps: what averaging the noise away would give).

    python examples/read_noise_settling.py --n 256 --seeds 3 [--json runs/read_noise_settling.json]
"""

from __future__ import annotations

import argparse
import json

import torch

import ephw
from ephw.backends import Crossbar
from ephw.data import load_dataset
from ephw.outputs import atomic_write
from ephw.stats import mean_ci

STRUCTURES = {
    "per_read": ["read_noise.time_structure=per_read"],
    "correlated, tau 5 reads": ["read_noise.time_structure=correlated", "read_noise.tau_reads=5"],
    "correlated, tau 50 reads": ["read_noise.time_structure=correlated", "read_noise.tau_reads=50"],
    "frozen": ["read_noise.time_structure=frozen"],
}


def _mean_dev(states: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    total = sum(float((s - r).abs().sum()) for s, r in zip(states, ref))
    return total / sum(r.numel() for r in ref)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--t", type=float, default=86_400.0, help="read time since programming, s")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args()

    net = ephw.load_model()
    x, y = load_dataset("digits", "test").batch(slice(0, args.n))
    ref = ephw.settle(net, x, backend="euler", steps=2000, tol=1e-6)
    rows = []
    for name, overrides in STRUCTURES.items():
        per: dict[str, list[float]] = {"floor": [], "deviation": [], "accuracy": [], "averaged_deviation": []}
        for seed in range(args.seeds):
            over = [*overrides, f"drift.t_seconds={args.t}", f"chip_seed={seed}", f"read_seed={seed + 10_000}"]
            backend = Crossbar(preset="pcm", overrides=over)
            tail: list[list[torch.Tensor]] = []
            init = None
            res = None
            for k in range(args.steps):  # one step at a time to keep the last 20 states
                res = ephw.settle(net, x, backend=backend, steps=1, tol=None, init=init)
                init = res.states
                if k >= args.steps - 20:
                    tail.append([s.clone() for s in res.states])
            assert res is not None
            deltas = [max(float((a - b).abs().amax()) for a, b in zip(s1, s0)) for s0, s1 in zip(tail, tail[1:])]
            per["floor"].append(float(torch.tensor(deltas).median()))
            per["deviation"].append(_mean_dev(res.states, ref.states))
            per["accuracy"].append(float((res.predictions == y).float().mean()))
            averaged = [torch.stack([t[j] for t in tail]).mean(0) for j in range(len(ref.states))]
            per["averaged_deviation"].append(_mean_dev(averaged, ref.states))
        row = {"structure": name}
        for k, vals in per.items():
            mean, half = mean_ci(vals)
            row[k] = {"mean": mean, "ci95": half, "values": vals}
        rows.append(row)
        print(
            f"{name:26s} floor {row['floor']['mean']:.3g} ± {row['floor']['ci95']:.2g}  "
            f"deviation {row['deviation']['mean']:.4f} ± {row['deviation']['ci95']:.2g}  "
            f"time-averaged deviation {row['averaged_deviation']['mean']:.4f}  "
            f"accuracy {row['accuracy']['mean']:.4f} ± {row['accuracy']['ci95']:.2g}",
            flush=True,
        )
    print(f"euler reference accuracy {float((ref.predictions == y).float().mean()):.4f}")
    if args.json:
        atomic_write(args.json, json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
