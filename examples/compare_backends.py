"""Settle the same test images on every registered backend and compare the fixed points.

    python examples/compare_backends.py [--model CKPT] [--n 256] [--out compare_backends.png]

Prints the comparison table (reference = first backend) and saves a figure:
left, the residual max|delta s| against the step for each backend (median over
images, band = 10-90 %); right, the per-layer max |s - s_ref| to the reference.
Backends added to the registry later (lava, crossbar, ...) and those of installed plugins
(``ephw backends``; ``backends/README.md``) appear automatically; the
lava backends' steps are lava timesteps (one per synchronous update), so `lava`'s residual
curve lies on top of `euler`'s.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ephw.backends import DEFAULT_TOL, backend_names  # noqa: E402
from ephw.checkpoint import BUNDLED_MODEL, load_checkpoint  # noqa: E402
from ephw.cli.common import print_table  # noqa: E402
from ephw.cli.settle import COMPARE_COLUMNS  # noqa: E402
from ephw.compare import compare_backends  # noqa: E402
from ephw.data import load_dataset  # noqa: E402
from ephw.outputs import save_figure  # noqa: E402


def residual_band(residuals: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Median and 10/90 % quantiles per step of the residual of the images still settling.

    Frozen (converged) images record residual 0 and batches that stopped have no row:
    both count as "not settling" (NaN) here.
    """
    steps = max(r.shape[0] for r in residuals)
    padded = torch.full((steps, sum(r.shape[1] for r in residuals)), float("nan"))
    col = 0
    for r in residuals:
        padded[: r.shape[0], col : col + r.shape[1]] = r.float().masked_fill(r == 0, float("nan"))
        col += r.shape[1]
    q = torch.nanquantile(padded, torch.tensor([0.1, 0.5, 0.9]), dim=1)
    return q[1], q[0], q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(BUNDLED_MODEL))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=DEFAULT_TOL)
    ap.add_argument("--backends", default=",".join(backend_names()))
    ap.add_argument("--out", default="compare_backends.png")
    ap.add_argument("--crossbar-preset", default="pcm", help="preset of the crossbar backend (ideal, rram, pcm)")
    args = ap.parse_args()

    ckpt = load_checkpoint(args.model)
    net = ckpt.model()
    data = load_dataset(ckpt.meta.get("data", "digits"), "test").subset(args.n)
    options = {"crossbar": {"preset": args.crossbar_preset}}
    report, runs = compare_backends(
        net, data, args.backends.split(","), steps=args.steps, tol=args.tol, options=options
    )
    print(f"reference: {report['reference']}  ({data.name}, n={len(data)})")
    print_table(report["rows"], COMPARE_COLUMNS)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        med, lo, hi = residual_band(run.residuals)
        steps = torch.arange(1, med.shape[0] + 1)
        (line,) = left.semilogy(steps, med, label=run.backend)
        left.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
    left.axhline(args.tol, color="k", ls=":", lw=1, label="tol")
    left.set(xlabel="step", ylabel="residual max|Δs|", title="images still settling: median, 10–90 %")
    left.legend()

    layers = len(report["rows"][0]["layer_max_abs_diff"])
    width = 0.8 / max(1, len(report["rows"]) - 1)
    for k, row in enumerate(report["rows"][1:]):
        xs = [i + k * width for i in range(layers)]
        right.bar(xs, [max(d, 1e-12) for d in row["layer_max_abs_diff"]], width, label=row["backend"])
    right.set_yscale("log")
    positive = [d for row in report["rows"][1:] for d in row["layer_max_abs_diff"] if d > 0]
    if positive:
        right.set_ylim(bottom=min(positive) / 3)
    right.set_xticks([i + width * (len(report["rows"]) - 2) / 2 for i in range(layers)])
    right.set_xticklabels([f"s{i + 1}" for i in range(layers)])
    right.set(ylabel=f"max |s − s_{report['reference']}|", title=f"fixed-point difference to {report['reference']}")
    right.legend()
    fig.tight_layout()
    save_figure(args.out, fig, dpi=120)  # atomic: never a torn figure
    print(f"figure saved to {args.out}")


if __name__ == "__main__":
    main()
