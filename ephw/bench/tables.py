"""Markdown tables (ratios only) from the JSON reports of ``ephw bench settle|train|warmstart --json``.

``ephw bench table REPORT.json ...`` prints them; the README's bench tables are this output.
Absolute times are left out on purpose: on a shared machine only ratios measured in one run
compare.
"""

from __future__ import annotations

from typing import Any


def _ratio(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def settle_table(r: dict[str, Any]) -> str:
    """The ``bench settle`` report: step ratios, loop overhead, and one row per solver."""
    ref = r["reference_steps"]
    lines = [
        f"`{r['config']}`, batch {r['batch']}, {r['threads']} thread(s), {r['model']}, tol {r['tol']:g}: "
        f"async sweep / euler step **{r['async_sweep_over_euler_step']:.2f}**; settle-loop overhead over the "
        f"same bare steps euler **{100 * r['settle_overhead_euler']:+.0f} %**, async "
        f"**{100 * r['settle_overhead_async']:+.0f} %**; euler step {r['speedup_vs_autograd']:.2f}× faster than "
        f"the autograd (NCHW) step.",
        "",
        f"| solver | sweeps mean / max | converged | time / {ref}-step autograd reference | / euler | / async "
        "| images in another basin than async |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        differ = row.get("samples_differing")
        basin = "–" if differ is None else f"{differ} / {r['batch']}"
        lines.append(
            f"| `{row['solver']}` | {row['steps_mean']:.1f} / {row['steps_max']} | {row['converged_fraction']:.2f} "
            f"| {_ratio(row['over_reference'], 3)} | {_ratio(row['over_euler'])} | {_ratio(row['over_async'])} "
            f"| {basin} |"
        )
    return "\n".join(lines)


def train_table(r: dict[str, Any]) -> str:
    """The ``bench train`` report as one table row (with its header)."""
    steps = " / ".join(f"{v:.1f}" for v in r["ephw_steps_mean"])
    ref = "/".join(map(str, r["reference_steps"]))
    cos = "–" if r["gradient_cosine"] is None else f"{r['gradient_cosine']:.4f} ({r['gradient_samples']} samples)"
    return "\n".join(
        [
            f"| model | config, batch | solver, tol | sweeps free / +β / −β | converged (ephw; reference at {ref}) "
            "| speed-up over the reference | EP-gradient cosine, both converged | cosine, all samples |",
            "|---|---|---|---|---|---|---|---|",
            f"| {r['model']} | `{r['config']}`, {r['batch']} | `{r['solver']}`, {r['tol']:g} | {steps} "
            f"| {r['ephw_converged_fraction']:.2f}; {r['reference_converged_fraction']:.2f} "
            f"| **{r['speedup']:.2f}×** | {cos} | {r['gradient_cosine_all_samples']:.3f} |",
        ]
    )


def warmstart_table(r: dict[str, Any]) -> str:
    """The ``bench warmstart`` report: cold vs student start, and the noise probe if run."""
    same = r.get("warm_over_cold_steps_same_basin")
    lines = [
        "| start | sweeps mean (max) | / cold steps | / cold time | images in another basin than the cold start |",
        "|---|---|---|---|---|",
        f"| null state | {r['cold_steps_mean']:.1f} ({r['cold_steps_max']}) | 1.00 | 1.00 | – |",
        f"| student (`{r['student'].rsplit('/', 1)[-1]}`) | {r['warm_steps_mean']:.1f} ({r['warm_steps_max']}) "
        f"| {r['warm_over_cold_steps']:.2f} (same-basin images {_ratio(same)}) | {r['warm_over_cold_seconds']:.2f} "
        f"| {r['samples_differing']} / {r['n']} |",
    ]
    for p in r.get("noise_probe", []):
        lines.append(
            f"| fixed point + U(±{p['eps']:g}) | {p['steps_mean']:.1f} | {p['over_cold_steps']:.2f} | – "
            f"| {p['samples_differing']} / {r['n']} |"
        )
    return "\n".join(lines)


def report_table(r: dict[str, Any]) -> str:
    """The table of any ``ephw bench`` JSON report (recognised by its keys)."""
    if "noise_probe" in r or "warm_steps_mean" in r:
        return warmstart_table(r)
    if "seconds_reference" in r:
        return train_table(r)
    return settle_table(r)
