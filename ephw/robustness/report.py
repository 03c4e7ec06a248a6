"""``ephw robustness report``: markdown tables and paper-style figures from a results file.

* ``report.md`` -- the obfuscation checklist first (failed items flagged), then the headline:
  the **worst case per image** over every attack run at each norm and eps (an image counts as
  robust only if it survived all of them), then every attack and rerun side by side at each
  check eps, clean accuracy, robust accuracy per attack and eps (mean +- 95% CI over seeds and test images,
  :func:`ephw.stats.accuracy_ci`), the checklist reruns, corruption accuracy and a class-wise
  robust-accuracy table (the seed paper's proposed future work).
* ``attacks.png`` -- first one "worst case per image" panel per norm, then one panel per attack
  (the paper's Fig. 1): accuracy vs eps on a log axis, one line per model, 95% CI bands (seeds and images).

Rows with the same key (two runs appended to one file) are counted once: the first is kept
and every dropped duplicate is named in a warning and in the report.
* ``corruptions.png`` -- accuracy per corruption (mean over severities) and vs severity.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ephw.errors import InputError
from ephw.outputs import atomic_write, ensure_dir
from ephw.robustness import checklist, shards, survival
from ephw.robustness.config import parse_effort
from ephw.robustness.naming import families
from ephw.robustness.runner import dedupe, pending_key, read_rows, write_json_atomic
from ephw.stats import accuracy_ci, mean_ci


def _fmt(values: list[float], images: int | None = None) -> str:
    """``"93.5 ± 1.2"`` in percent: the 95 % interval over seeds and, given ``images`` per seed,
    over the test images (:func:`ephw.stats.accuracy_ci`); ``± n/a`` for one seed without images."""
    mean, half = accuracy_ci(values, images)
    spread = "n/a" if math.isnan(half) else f"{100 * half:.1f}"
    return f"{100 * mean:.1f} ± {spread}"


def _order(rows: list[dict[str, Any]], key: str) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r.get(key) is not None and r[key] not in seen:
            seen.append(r[key])
    return seen


def curves(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[float, list[float]]]]:
    """``attack -> model -> eps -> [accuracy per seed]`` of the main attack rows."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r["kind"] == "attack" and r.get("check") is None:
            out[r["attack"]][r["model"]][float(r["eps"])].append(float(r["accuracy"]))
    return out


#: ``(model, norm, eps rounded to 9 digits, seed) -> `` attack rows of the plan not run yet.
Pending = Mapping[tuple[str, str, float, int], int]


def worst_curves(
    rows: list[dict[str, Any]], pending: Pending | None = None
) -> dict[str, dict[str, dict[float, list[float]]]]:
    """``norm -> model -> eps -> [worst-case accuracy per seed]`` over every attack row with a survival record.

    A worst case with attack rows still in ``pending`` is left out: over fewer attacks than
    planned it is only an upper bound (the report's tables show it as one).
    """
    return _worst_split(rows, pending or {})[0]


def _worst_split(rows: list[dict[str, Any]], pending: Pending) -> tuple[dict, dict]:
    done: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    partial: dict = defaultdict(lambda: defaultdict(dict))
    for (model, norm, eps, seed), wc in sorted(survival.worst_case(rows).items(), key=lambda kv: str(kv[0])):
        left = pending.get(pending_key(model, norm, eps, seed), 0)
        if left:
            accs, before = partial[norm][model].get(eps, ([], 0))
            partial[norm][model][eps] = ([*accs, wc["accuracy"]], before + left)
        else:
            done[norm][model][eps].append(wc["accuracy"])
    return done, partial


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def markdown(
    rows: list[dict[str, Any]], check: dict[str, Any], figures: dict[str, str], pending: Pending | None = None
) -> str:
    """The report's text (module docstring); ``pending`` marks worst cases still waiting for attack rows."""
    models = _order(rows, "model")
    attacks = _order([r for r in rows if r["kind"] == "attack"], "attack")
    suspect = set(check["suspect_models"])
    label = {m: m + (" ⚠" if m in suspect else "") for m in models}
    first = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    n = max((int(r["n"]) for r in rows if r["kind"] == "clean"), default=None)  # test images per seed
    out = [
        "# Robustness report",
        "",
        f"Data: {first['data']}, {first['n']} test images per seed, seeds {seeds}. "
        "Accuracies in %, mean ± half-width of the 95% confidence interval: over seeds (Student t) and over "
        "the test images (Wilson), added in quadrature.",
        "",
    ]
    info = []
    for m in models:
        r = next(r for r in rows if r["model"] == m)
        ep = r.get("ep")
        how = f"EP, backend {ep['backend']}, grad {ep['grad']}" if ep else r.get("model_kind", "?")
        info.append([label[m], how])
    out += _table(["model", "kind"], info) + [""]

    out += ["## Obfuscation checklist (Carlini et al. 2019)", ""]
    if not any(r["kind"] == "attack" for r in rows):
        out += ["No attack rows (corruptions or clean accuracy only): the checklist does not apply.", ""]
    else:
        out += _checklist_table(check, suspect)

    out += _worst_case_tables(rows, models, label, n, pending or {})

    clean = defaultdict(list)
    for r in rows:
        if r["kind"] == "clean":
            clean[r["model"]].append(float(r["accuracy"]))
    if clean:
        out += ["## Clean accuracy", ""]
        out += _table(["model", "accuracy"], [[label[m], _fmt(clean[m], n)] for m in models if clean[m]]) + [""]

    cur = curves(rows)
    if figures.get("attacks"):
        out += ["## Adversarial robustness", "", f"![accuracy vs eps]({figures['attacks']})", ""]
    for a in attacks:
        if a not in cur:
            continue
        r0 = next(r for r in rows if r.get("attack") == a and r["kind"] == "attack")
        out += [f"### {a} ({r0.get('method')}, {r0.get('norm')})", ""]
        eps_all = sorted({e for m in cur[a] for e in cur[a][m]})
        body = [[f"{e:.4g}"] + [_fmt(cur[a][m][e], n) if cur[a][m].get(e) else "-" for m in models] for e in eps_all]
        out += _table(["eps"] + [label[m] for m in models], body) + [""]
        secs = defaultdict(float)
        for r in rows:
            if r.get("attack") == a and r["kind"] == "attack":
                secs[r["model"]] += r["seconds"]
        out += [
            "Attack time (all eps and seeds): " + ", ".join(f"{m} {secs[m]:.0f} s" for m in models if m in secs),
            "",
        ]

    checks = [r for r in rows if r["kind"] == "attack" and r.get("check")]
    if checks:
        out += ["## Checklist reruns", ""]
        groups = defaultdict(list)
        for r in checks:
            if r["check"] == "cascade":
                continue
            groups[(r["model"], r["attack"], r["check"], r["eps"], r.get("surrogate"))].append(float(r["accuracy"]))
        body = []
        for (m, a, c, e, s), accs in sorted(groups.items()):
            base = cur.get(a, {}).get(m, {}).get(float(e), [])
            what = _rerun_label(c)
            body.append([label[m], a, what, f"{e:.4g}", _fmt(accs, n), _fmt(base, n) if base else "-"])
        out += _table(["model", "attack", "rerun", "eps", "rerun accuracy", "white-box accuracy"], body) + [""]

    corr = [r for r in rows if r["kind"] == "corruption"]
    if corr:
        out += _corruption_tables(corr, models, label, figures, n)
    out += _classwise(rows, models, label, cur)
    return "\n".join(out) + "\n"


def _checklist_table(check: dict[str, Any], suspect: set[str]) -> list[str]:
    """The checklist's lines: a warning naming suspect models, then one row per item."""
    out = []
    if suspect:
        out += [
            f"**⚠ Suspect (a checklist item failed): {', '.join(sorted(suspect))}.** "
            "Their robustness numbers may reflect gradient obfuscation, not robustness.",
            "",
        ]
    body = []
    for it in check["items"]:
        status = "**FAIL ⚠**" if it["status"] == checklist.FAIL else it["status"]
        shown = [f for f in it["findings"] if f["status"] == checklist.FAIL] or it["findings"]
        detail = "<br>".join(f"{f['model']}{' / ' + f['attack'] if f['attack'] else ''}: {f['detail']}" for f in shown)
        body.append([it["title"], status, detail])
    return out + _table(["item", "status", "details"], body) + [""]


def _rerun_label(check: str) -> str:
    effort = parse_effort(check)
    if effort:
        what, factor = effort
        return f"{factor}x {what}{', same step size' if what == 'steps' else ''} (on survivors)"
    kind, _, arg = check.partition(":")
    return {
        "transfer": f"transfer from {arg}",
        "warm": f"warm-started from {arg}",
        "grad": f"gradient {arg}",
        "eot": f"EOT {arg}",
        "cascade": "cascade (on survivors)",
        "unroll": f"unroll bptt:{arg} (on survivors)",
    }.get(kind, check)


def _worst_case_tables(rows, models, label, n: int | None = None, pending: Pending | None = None) -> list[str]:
    """The headline (worst case per image) and, at each eps with reruns, every attack side by side."""
    wc, partial = _worst_split(rows, pending or {})
    if not wc and not partial:
        return []

    def cell(norm: str, m: str, eps: float) -> str:
        if wc.get(norm, {}).get(m, {}).get(eps):
            return _fmt(wc[norm][m][eps], n)
        if eps in partial.get(norm, {}).get(m, {}):
            accs, left = partial[norm][m][eps]
            return f"≤ {100 * sum(accs) / len(accs):.1f} ({left} to run)"
        return "-"

    out = [
        "## Worst case per image (headline)",
        "",
        "An image counts as robust at eps only if it survived **every** attack run on it at that norm and "
        "eps (standalone attacks, restarts, transfer, warm-started transfer, sweeps, cascade stages) and "
        'is classified correctly when clean — AutoAttack\'s "ensemble" robust accuracy.',
        "",
    ]
    if partial:
        out += [
            "`≤ x (k to run)`: the run has not made every planned attack at that eps yet (k rows left); "
            "a worst case over fewer attacks is only an upper bound, and the figure leaves it out.",
            "",
        ]
    for norm in sorted({*wc, *partial}):
        eps_all = sorted({e for part in (wc, partial) for m in part.get(norm, {}) for e in part[norm][m]})
        body = [[f"{e:.4g}"] + [cell(norm, m, e) for m in models] for e in eps_all]
        out += [f"### {norm}", ""] + _table(["eps"] + [label[m] for m in models], body) + [""]
    # every attack at each eps that has reruns
    groups: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r["kind"] == "attack" and r.get("survival"):
            groups[(r.get("norm"), float(r["eps"]))][survival.label(r)][r["model"]].append(float(r["accuracy"]))
    for (norm, eps), by_label in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if len(by_label) < 2:
            continue
        body = [
            [lab] + [_fmt(by_label[lab][m], n) if by_label[lab].get(m) else "-" for m in models] for lab in by_label
        ]
        body.append(["**worst case per image**"] + [cell(norm, m, eps) for m in models])
        out += [
            f"### Every attack at {norm} eps {eps:.4g}",
            "",
            "`[double-steps]`, `[double-restarts]` (and their escalations `[steps-x4]`, ...) and `[cascade]` "
            "rows ran on the survivors of the rows before them: their accuracy is the worst case so far.",
            "",
        ]
        out += _table(["attack"] + [label[m] for m in models], body) + [""]
    cost = _cost(rows)
    if cost:
        out += ["### Cost (seconds per attacked image, mean over rows)", ""]
        out += _table(["attack", *models], [[a] + [cost[a].get(m, "-") for m in models] for a in cost]) + [""]
    return out


def _cost(rows) -> dict[str, dict[str, str]]:
    """``attack label -> model -> "s/image"`` (seconds per attacked image, pooled over eps and seeds)."""
    secs: dict = defaultdict(lambda: defaultdict(float))
    imgs: dict = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if r["kind"] == "attack":
            attacked = (r.get("notes") or {}).get("attacked", r["n"])
            lab = survival.label(r).split(" [")[0] + (f" [{r['check'].split(':')[0]}]" if r.get("check") else "")
            secs[lab][r["model"]] += float(r["seconds"])
            imgs[lab][r["model"]] += int(attacked)
    return {lab: {m: f"{secs[lab][m] / imgs[lab][m]:.3g}" if imgs[lab][m] else "-" for m in secs[lab]} for lab in secs}


def _corruption_tables(corr, models, label, figures, n: int | None = None) -> list[str]:
    table = corr[0].get("table", "?")
    out = [
        "## Natural corruptions",
        "",
        f"Severity table: `{table}`. Mean over severities per seed, then over seeds.",
        "",
    ]
    if figures.get("corruptions"):
        out += [f"![corruptions]({figures['corruptions']})", ""]
    by = defaultdict(lambda: defaultdict(list))  # (model, corruption) -> seed -> [acc over severities]
    sev = defaultdict(lambda: defaultdict(list))  # (model, severity) -> seed -> [acc over corruptions]
    for r in corr:
        by[(r["model"], r["attack"])][r["seed"]].append(float(r["accuracy"]))
        sev[(r["model"], int(r["eps"]))][r["seed"]].append(float(r["accuracy"]))
    names = _order(corr, "attack")

    def cell(d) -> str:
        return _fmt([sum(v) / len(v) for v in d.values()], n) if d else "-"

    body = [[name] + [cell(by.get((m, name), {})) for m in models] for name in names]
    body.append(["**mean**"] + [cell(_pool(by, m, names)) for m in models])
    out += _table(["corruption"] + [label[m] for m in models], body) + [""]
    levels = sorted({int(r["eps"]) for r in corr})
    body = [[str(s)] + [cell(sev.get((m, s), {})) for m in models] for s in levels]
    out += _table(["severity"] + [label[m] for m in models], body) + [""]
    return out


def _pool(by, model, names) -> dict[int, list[float]]:
    pooled: dict[int, list[float]] = defaultdict(list)
    for n in names:
        for seed, accs in by.get((model, n), {}).items():
            pooled[seed] += accs
    return pooled


def _classwise(rows, models, label, cur) -> list[str]:
    """Per-class robust accuracy at each attack's middle eps (pooled over seeds)."""
    out = ["## Class-wise robust accuracy", ""]
    any_rows = False
    classes = int(rows[0].get("classes", 10))
    for a in cur:
        eps_all = sorted({e for m in cur[a] for e in cur[a][m]})
        e = eps_all[(len(eps_all) - 1) // 2]
        tot = defaultdict(lambda: [0] * classes)
        cor = defaultdict(lambda: [0] * classes)
        for r in rows:
            if r["kind"] == "attack" and r.get("check") is None and r["attack"] == a and float(r["eps"]) == e:
                for k in range(classes):
                    tot[r["model"]][k] += r["per_class_total"][k]
                    cor[r["model"]][k] += r["per_class_correct"][k]
        if not tot:
            continue
        any_rows = True
        out += [f"### {a} at eps {e:.4g} (all seeds pooled)", ""]
        body = []
        for k in range(classes):
            body.append(
                [str(k)]
                + [f"{100 * cor[m][k] / tot[m][k]:.0f} ({tot[m][k]})" if tot[m][k] else "-" for m in models if m in tot]
            )
        worst = ["**worst**"] + [
            f"{min(100 * cor[m][k] / tot[m][k] for k in range(classes) if tot[m][k]):.0f}" for m in models if m in tot
        ]
        out += _table(["class"] + [label[m] for m in models if m in tot], body + [worst]) + [""]
    return out if any_rows else []


def _palette(k: int) -> list[str]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(cmap(i % cmap.N)) for i in range(k)]


def _legend_name(fam: str, members: list[str], suspect: set[str]) -> str:
    seeds = f" ({len(members)} seeds)" if len(members) > 1 else ""
    return fam + seeds + (" ⚠" if any(m in suspect for m in members) else "")


def plotted_members(
    groups: dict[str, list[str]], curves_by_attack: dict[str, dict[str, dict[float, Any]]], attacks: list[str]
) -> dict[str, list[str]]:
    """Per family, the members with a point at some ε > 0 on one of ``attacks``' panels: the seeds a
    legend may count (a seed with only its clean row so far has no line yet)."""
    return {
        fam: [m for m in members if any(e > 0 for a in attacks for e in curves_by_attack[a].get(m, {}))]
        for fam, members in groups.items()
    }


def _plot_attacks(rows, path: Path, suspect: set[str], pending: Pending | None = None) -> bool:
    """One panel per norm's worst case, then per attack; one line per model family (its seeds pooled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    cur = dict(curves(rows))
    attacks = [a for a in _order([r for r in rows if r["kind"] == "attack"], "attack") if a in cur]
    meta = {r["attack"]: r for r in rows if r["kind"] == "attack"}
    wc = worst_curves(rows, pending)
    for norm in sorted(wc, key=str, reverse=True):  # the headline panels first
        name = f"worst case per image ({'ℓ2' if norm == 'L2' else 'ℓ∞'})"
        cur[name] = wc[norm]
        meta[name] = {"norm": norm}
        attacks.insert(0, name)
    if not attacks:
        return False
    groups = families(_order(rows, "model"))
    n = max((int(r["n"]) for r in rows if r["kind"] == "clean"), default=None)  # test images per seed
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.6 * len(attacks), 4.2), squeeze=False, layout="constrained")
    colors = _palette(len(groups))
    plotted = plotted_members(groups, cur, attacks)
    for ax, a, letter in zip(axes[0], attacks, "abcdefghij"):
        for i, (fam, members) in enumerate(groups.items()):
            pooled: dict[float, list[float]] = defaultdict(list)  # eps -> accuracy per (training, image) seed
            for m in members:
                for e, v in cur[a].get(m, {}).items():
                    pooled[e] += v
            pts = sorted((e, v) for e, v in pooled.items() if e > 0)
            if not pts:
                continue
            eps = [e for e, _ in pts]
            stats = [accuracy_ci(v, n) for _, v in pts]
            mean = [100 * s[0] for s in stats]
            half = [0.0 if math.isnan(s[1]) else 100 * s[1] for s in stats]
            c = colors[i]
            ax.plot(eps, mean, "o-", color=c, label=_legend_name(fam, plotted[fam], suspect), ms=3.5)
            ax.fill_between(
                eps, [u - h for u, h in zip(mean, half)], [u + h for u, h in zip(mean, half)], color=c, alpha=0.2, lw=0
            )
        norm = meta[a].get("norm", "")
        ax.set_xscale("log")
        grid = sorted({e for m in cur[a].values() for e in m if e > 0})
        ax.xaxis.set_major_locator(FixedLocator(grid) if grid else LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))  # the attacked ε, e.g. 0.0314
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"ε ({'ℓ2' if norm == 'L2' else 'ℓ∞'})")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"{letter}) {a}", fontweight="bold" if a.startswith("worst case") else "normal")
        ax.grid(alpha=0.3)
    handles, names = _legend_entries(axes[0])
    ncol = min(4, len(names), max(2, int(4.6 * len(attacks) / 2.8)))  # about 2.8 in per legend column
    fig.legend(handles, names, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle("Accuracy vs ε (bands: 95% CI over seeds and test images)", fontsize=10)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=130, bbox_inches="tight"))
    plt.close(fig)
    return True


def _legend_entries(axes) -> tuple[list, list[str]]:
    """Every line label of ``axes``, once each, in first-seen order (a family may miss some panels)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen)


def _plot_corruptions(rows, path: Path, suspect: set[str]) -> bool:
    """Accuracy per corruption (mean over severities) and vs severity; one bar/line per model family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corr = [r for r in rows if r["kind"] == "corruption"]
    if not corr:
        return False
    groups = families(_order(corr, "model"))
    fam_of = {m: f for f, ms in groups.items() for m in ms}
    names = _order(corr, "attack")
    by = defaultdict(lambda: defaultdict(list))  # (family, corruption) -> (model, image seed) -> accuracies
    sev = defaultdict(lambda: defaultdict(list))  # (family, severity) -> (model, image seed) -> accuracies
    for r in corr:
        unit = (r["model"], r["seed"])
        by[(fam_of[r["model"]], r["attack"])][unit].append(float(r["accuracy"]))
        sev[(fam_of[r["model"]], int(r["eps"]))][unit].append(float(r["accuracy"]))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [3, 1]}, layout="constrained")
    colors = _palette(len(groups))
    width = 0.8 / len(groups)
    for i, (fam, members) in enumerate(groups.items()):
        stats = [
            mean_ci([sum(v) / len(v) for v in by[(fam, n)].values()]) if by[(fam, n)] else (math.nan, 0) for n in names
        ]
        mean = [100 * s[0] for s in stats]
        err = [0.0 if math.isnan(s[1]) else 100 * s[1] for s in stats]
        xs = [k + (i - (len(groups) - 1) / 2) * width for k in range(len(names))]
        ax.bar(xs, mean, width, yerr=err, capsize=1.5, color=colors[i], label=_legend_name(fam, members, suspect))
        levels = sorted({s for (f, s) in sev if f == fam})
        st = [mean_ci([sum(v) / len(v) for v in sev[(fam, s)].values()]) for s in levels]
        ax2.errorbar(
            levels,
            [100 * s[0] for s in st],
            yerr=[0 if math.isnan(s[1]) else 100 * s[1] for s in st],
            marker="o",
            ms=3.5,
            capsize=2,
            color=colors[i],
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%), mean over severities")
    ax.set_ylim(0, 102)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(4, len(groups)), fontsize=8, frameon=False)
    fig.suptitle(
        f"Natural corruptions ({corr[0].get('table', '?')} severity table; error bars: 95% CI over seeds)", fontsize=10
    )
    ax2.set_xlabel("severity")
    ax2.set_ylabel("accuracy (%), mean over corruptions")
    ax2.set_ylim(0, 102)
    ax2.grid(alpha=0.3)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=130, bbox_inches="tight"))
    plt.close(fig)
    return True


def write_report(results: str | Path, out: str | Path, warn=None, pending: Pending | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``attacks.png``, ``corruptions.png`` and ``checklist.json`` into ``out``.

    Duplicate rows (same key) are dropped, the first kept; ``warn(message)`` is called once
    naming them (default: a line on stderr), and the report lists them. ``pending`` (from the
    run's plan, :func:`ephw.robustness.runner.pending_attacks`) names the worst cases
    whose attacks are not all run yet: the tables show them as upper bounds, the figure leaves them out.
    """
    rows = shards.read_all(Path(results), read_rows)  # the results file and its shard files
    if not rows:
        raise InputError(f"{results} holds no result rows")
    rows, dropped = dedupe(rows)
    if dropped:
        msg = f"{results}: dropped {len(dropped)} duplicate rows (same key): " + "; ".join(dropped[:10])
        msg += " ..." if len(dropped) > 10 else ""
        if warn is None:
            import sys

            print(f"ephw: warning: {msg}", file=sys.stderr)
        else:
            warn(msg)
    out = ensure_dir(out)
    check = checklist.evaluate(rows)
    suspect = set(check["suspect_models"])
    files: dict[str, Path] = {}
    figures: dict[str, str] = {}
    if _plot_attacks(rows, out / "attacks.png", suspect, pending):
        files["attacks"] = out / "attacks.png"
        figures["attacks"] = "attacks.png"
    if _plot_corruptions(rows, out / "corruptions.png", suspect):
        files["corruptions"] = out / "corruptions.png"
        figures["corruptions"] = "corruptions.png"
    write_json_atomic(out / "checklist.json", checklist.dumps(check))
    files["checklist"] = out / "checklist.json"
    md = markdown(rows, check, figures, pending)
    if dropped:
        md += "\n## Dropped duplicate rows\n\n" + "\n".join(f"- {d}" for d in dropped) + "\n"
    atomic_write(out / "report.md", md)
    files["report"] = out / "report.md"
    return files
