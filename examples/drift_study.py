"""Drift study: accuracy and state deviation vs time since programming, EP-CNN on chip vs distilled student on chip.

For every model (EP-CNNs settled on the ``crossbar`` backend, feed-forward students deployed
with :func:`ephw.crossbar.deploy.deploy`), with and without global drift compensation, and for
every read time, ``--seeds`` chips are programmed (``chip_seed = seed``, the same chips for
every model) and the test images are evaluated; the report gives mean ± 95 % Student-t CI
over chips (:func:`ephw.stats.mean_ci`). The state deviation is ``mean |s_chip − s_digital|``
over all states: the EP-CNN's fixed point against its ``euler`` fixed point, the student's
hidden states and logits against its digital forward pass.

    python examples/drift_study.py \\
        --ep ephw/pretrained/digits-ep.pt --ep-na runs/hwaware/ep-na/model.pt \\
        --student runs/hwaware/student-plain/model.pt --student-na runs/hwaware/student-na/model.pt \\
        --preset pcm --seeds 5 --out runs/drift_study

writes ``OUT/drift_study.json``, ``OUT/drift_study.png`` (one panel per metric, one line
per model × compensation, log time axis) and ``OUT/drift_study.md`` (the tables of the docs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ephw.checkpoint import load_checkpoint
from ephw.crossbar.deploy import run_feedforward_sweep
from ephw.data import load_dataset
from ephw.feedforward.checkpoint import load_feedforward
from ephw.outputs import atomic_write
from ephw.sweep import run_sweep

TIMES = (1.0, 3600.0, 86_400.0, 2.6e6, 3.15e7)
TIME_LABELS = {1.0: "1 s", 3600.0: "1 h", 86_400.0: "1 day", 2.6e6: "1 month", 3.15e7: "1 year"}


def study(args: argparse.Namespace) -> dict[str, Any]:
    models: list[tuple[str, str, str]] = []  # (label, kind, path); an empty path skips the model
    for label, kind, path in (
        ("EP-CNN", "ep", args.ep),
        ("EP-CNN, noise-aware", "ep", args.ep_na),
        ("EP-CNN, chip in the loop", "ep", args.ep_chip),
        ("student", "ff", args.student),
        ("student, noise-aware", "ff", args.student_na),
    ):
        if path:
            models.append((label, kind, path))
    times = [float(t) for t in args.times.split(",")]
    results = []
    data_cache: dict[str, Any] = {}
    for label, kind, path in models:
        for comp in {"both": (True, False), "on": (True,), "off": (False,)}[args.compensation]:
            options = {
                "preset": args.preset,
                "overrides": [f"drift.compensation={str(comp).lower()}", *args.crossbar_set],
            }
            t0 = time.perf_counter()
            if kind == "ep":
                ckpt = load_checkpoint(path)
                net = ckpt.model()
                name = ckpt.meta.get("data", "digits")
                data = data_cache.setdefault(name, load_dataset(name, "test").subset(args.n))
                report = run_sweep(
                    net, data, "crossbar", "drift.t_seconds", times, seeds=args.seeds, steps=args.steps, tol=args.tol,
                    options=options,
                )  # fmt: skip
            else:
                model, meta = load_feedforward(path)
                name = meta.get("data", "digits")
                data = data_cache.setdefault(name, load_dataset(name, "test").subset(args.n))
                report = run_feedforward_sweep(model, data, "drift.t_seconds", times, seeds=args.seeds, options=options)
            report.update(label=label, kind=kind, path=str(path), compensation=comp, seconds=time.perf_counter() - t0)
            results.append(report)
            acc = ", ".join(f"{r['accuracy']['mean']:.3f}" for r in report["rows"])
            print(f"{label:24s} compensation={comp!s:5s}: accuracy {acc} ({report['seconds']:.0f} s)", flush=True)
    return {"preset": args.preset, "seeds": args.seeds, "n": args.n, "times": times, "results": results}


def merge(specs: list[str]) -> dict[str, Any]:
    """One report from parts: drift_study.json files, or ``LABEL|on|off|PATH`` ``ephw sweep --json`` reports."""
    results: list[dict[str, Any]] = []
    head: dict[str, Any] = {}
    for spec in specs:
        parts = spec.split("|")
        if len(parts) == 3:
            label, comp, path = parts
            rep = json.loads(Path(path).read_text())
            kind = "ff" if rep.get("model") == "feedforward" else "ep"
            rep.update(label=label, kind=kind, path=path, compensation=comp == "on")
            results.append(rep)
            head.setdefault("n", rep["n"])
            head.setdefault("seeds", rep["rows"][0]["seeds"])
            head.setdefault("times", [r["value"] for r in rep["rows"]])
        else:
            part = json.loads(Path(spec).read_text())
            results += part["results"]
            for key in ("preset", "seeds", "n", "times"):
                head.setdefault(key, part[key])
    head.setdefault("preset", "pcm")
    order = ["EP-CNN", "EP-CNN, noise-aware", "EP-CNN, chip in the loop", "student", "student, noise-aware"]
    results.sort(key=lambda r: (order.index(r["label"]) if r["label"] in order else 99, not r["compensation"]))
    return {**head, "results": results}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {
        "EP-CNN": "C0",
        "EP-CNN, noise-aware": "C1",
        "EP-CNN, chip in the loop": "C4",
        "student": "C2",
        "student, noise-aware": "C3",
    }
    for res in report["results"]:
        xs = [r["value"] for r in res["rows"]]
        style = "-" if res["compensation"] else "--"
        for ax, metric in zip(axes, ("accuracy", "mean_abs_state_diff")):
            mean = [r[metric]["mean"] for r in res["rows"]]
            half = [r[metric]["ci95"] or 0.0 for r in res["rows"]]
            label = f"{res['label']}{'' if res['compensation'] else ', no compensation'}"
            ax.plot(xs, mean, style, marker="o", ms=3, color=colors.get(res["label"]), label=label)
            lo = [m - h for m, h in zip(mean, half)]
            hi = [m + h for m, h in zip(mean, half)]
            ax.fill_between(xs, lo, hi, color=colors.get(res["label"]), alpha=0.15)
    times = report["times"]
    for ax, ylabel in zip(axes, ("test accuracy", "mean |s_chip − s_digital|")):
        ax.set_xscale("log")
        ax.set_xticks(times, [TIME_LABELS.get(t, f"{t:g} s") for t in times])
        ax.set(xlabel="time since programming", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"{report['preset']} chips: mean ± 95 % CI over {report['seeds']} chips, {report['n']} test images "
        "(solid: global drift compensation)"
    )
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    """Two tables (accuracy %, state deviation), rows model × compensation, columns read times; mean ± 95 % CI."""
    times = report["times"]
    head = "| model | drift compensation | " + " | ".join(TIME_LABELS.get(t, f"{t:g} s") for t in times) + " |"
    rule = "|---|---|" + "---|" * len(times)
    out = []
    for metric, title, fmt in (
        ("accuracy", "test accuracy (%)", lambda m, h: f"{100 * m:.1f} ± {100 * h:.1f}"),
        ("mean_abs_state_diff", "mean state deviation from the digital states", lambda m, h: f"{m:.4f} ± {h:.4f}"),
    ):
        out += [f"**{title}**", "", head, rule]
        for res in report["results"]:
            cells = [fmt(r[metric]["mean"], r[metric]["ci95"] or 0.0) for r in res["rows"]]
            out.append(f"| {res['label']} | {'on' if res['compensation'] else 'off'} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ep", default="ephw/pretrained/digits-ep.pt", help="EP checkpoint settled on chip")
    p.add_argument("--ep-na", default=None, help="EP checkpoint trained with --noise-aware")
    p.add_argument("--ep-chip", default=None, help="EP checkpoint trained with --backend crossbar (chip in the loop)")
    p.add_argument("--student", default=None, help="feed-forward student (model.pt of ephw distill)")
    p.add_argument("--student-na", default=None, help="student distilled with --noise-aware")
    p.add_argument("--preset", default="pcm")
    p.add_argument("--crossbar-set", action="append", default=[], help="extra crossbar overrides")
    p.add_argument("--times", default=",".join(f"{t:g}" for t in TIMES), help="read times, s")
    p.add_argument("--seeds", type=int, default=5, help="chips per point")
    p.add_argument("--n", type=int, default=540, help="test images")
    p.add_argument("--steps", type=int, default=500, help="EP settle budget")
    p.add_argument("--tol", type=float, default=1e-5, help="EP settle tolerance")
    p.add_argument("--compensation", default="both", choices=("both", "on", "off"), help="drift compensation runs")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="instead of running: merge drift_study.json files and/or 'LABEL|on|off|SWEEP.json' ephw sweep reports "
        "(drift.t_seconds sweeps) into one report",
    )
    p.add_argument("--out", default="runs/drift_study")
    args = p.parse_args()
    report = merge(args.merge) if args.merge else study(args)
    out = Path(args.out)
    atomic_write(out / "drift_study.json", json.dumps(report, indent=1) + "\n")
    plot(report, out / "drift_study.png")
    atomic_write(out / "drift_study.md", markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'drift_study.json'}, {out / 'drift_study.png'} and {out / 'drift_study.md'}")


if __name__ == "__main__":
    main()
