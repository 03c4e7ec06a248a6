"""The gradient-obfuscation checklist (Carlini et al. 2019, "On evaluating adversarial robustness").

Computed from the result rows of a run (pure functions, no model needed), stored next to
the results and printed at the top of every report. Each item has, per model (and attack),
a status ``pass`` / ``FAIL`` / ``not checked`` and a detail that says what was compared and
by how much; an item with no data is shown as ``not checked``, never dropped. Accuracies are
seed means; "points" are percentage points.

Items:

1. ``monotone`` -- accuracy does not increase with eps (tolerance ``monotone_tol``).
2. ``chance`` -- accuracy at the largest eps is near chance (<= 1/classes + ``chance_margin``);
   an attack run at a single eps is not checked (that eps is an operating point, not a large one).
3. ``blackbox`` -- per image: Square breaks at most ``blackbox_tol`` of the images that every
   pure-gradient attack of the same norm and eps left standing (PGD, or AutoAttack without its
   Square stage; ``standard`` AutoAttack contains Square and does not count as white-box).
4. ``double-steps`` -- twice the PGD iterations *at the same step size* (twice the travel),
   run on the survivors, breaks fewer than ``steps_drop`` more; with ``checks.escalate``, the
   first doubling (2x, 4x, ...) that breaks fewer than that passes (the budget converged below it).
5. ``double-restarts`` -- PGD restarts ``R..2R-1`` on the survivors break fewer than ``restarts_drop``
   more (escalated like item 4: restarts ``2R..4R-1``, ...).
6. ``transfer`` -- replayed surrogate adversarials are not stronger than the white-box
   attack: acc(transfer) >= acc(white-box) - ``transfer_tol``.
7. ``warm-start`` -- the model's own PGD started at a surrogate's adversarials is not stronger
   than from random starts: acc(warm) >= acc(white-box) - ``transfer_tol``.
8. ``grad-sweep`` (EP models) -- across gradient modes (``bptt:K`` for several K, ``implicit``,
   ``intermediate:K``) no mode is stronger than the model's own by ``sweep_tol`` or more, and
   accuracy has stopped falling between the two largest K; a cascade attack's rerun with a mode
   (on the survivors of every row before it) breaks fewer than ``sweep_tol`` more.
9. ``unroll`` (EP models) -- the unroll escalation (``checks.unroll``) converged: the last level
   run (K = 60, 120, ...) broke fewer than ``unroll_drop`` more than the shorter unroll and every
   row before it. FAIL when the longest unroll run still broke that much (the attack has not
   converged in K); ``not checked`` for feed-forward models and for EP models without those rows.
10. ``eot`` (stochastic models) -- accuracy has stopped falling between the two largest EOT counts,
    and a stochastic model was attacked with EOT at all.
11. ``zero-gradients`` -- at most ``zero_grad_max`` of the images have an identically zero
    input gradient of the loss.
12. ``library-warnings`` -- AutoAttack's own checks raised no warning.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from ephw.robustness import survival
from ephw.robustness.config import parse_effort, parse_unroll

PASS, FAIL, UNCHECKED = "pass", "FAIL", "not checked"


@dataclass(frozen=True)
class Thresholds:
    """Tolerances of the checklist (accuracies are fractions in [0, 1])."""

    monotone_tol: float = 0.01
    chance_margin: float = 0.10
    blackbox_tol: float = 0.01
    steps_drop: float = 0.01
    restarts_drop: float = 0.01
    transfer_tol: float = 0.01
    sweep_tol: float = 0.01
    eot_tol: float = 0.01
    zero_grad_max: float = 0.05
    unroll_drop: float = 0.01


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _pts(frac: float) -> str:
    return f"{100 * frac:.1f} points"


def _main(r: dict[str, Any]) -> bool:
    return r.get("kind") == "attack" and r.get("check") is None


def _by_eps(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[float, dict[int, float]]]:
    """``(model, attack) -> eps -> seed -> accuracy`` of the main (standalone, non-check) attack rows."""
    out: dict[tuple[str, str], dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if _main(r):
            out[(r["model"], r["attack"])][float(r["eps"])][int(r["seed"])] = float(r["accuracy"])
    return out


def _checks(rows: list[dict[str, Any]], prefix: str) -> dict[tuple, dict[int, dict[str, Any]]]:
    """``(model, attack, eps, check) -> seed -> row`` of the reruns whose check starts with ``prefix``."""
    out: dict[tuple, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r.get("kind") == "attack" and (r.get("check") or "").startswith(prefix):
            out[(r["model"], r["attack"], float(r["eps"]), r["check"])][int(r["seed"])] = r
    return out


def _finding(model: str, attack: str | None, ok: bool | None, detail: str) -> dict[str, Any]:
    status = UNCHECKED if ok is None else (PASS if ok else FAIL)
    return {"model": model, "attack": attack, "status": status, "detail": detail}


def _item(ident: str, title: str, findings: list[dict[str, Any]], why_unchecked: str) -> dict[str, Any]:
    statuses = {f["status"] for f in findings}
    status = FAIL if FAIL in statuses else PASS if PASS in statuses else UNCHECKED
    if not findings:
        findings = [_finding("-", None, None, why_unchecked)]
    return {"id": ident, "title": title, "status": status, "findings": findings}


def _vs_base(grid: dict, rows_by: dict[tuple, dict[int, dict[str, Any]]], tol: float) -> list[dict[str, Any]]:
    """Findings comparing standalone reruns (transfer, warm start) to their base (main) rows' accuracy."""
    found = []
    for (model, attack, eps, check), seeds in sorted(rows_by.items()):
        base = grid.get((model, attack), {}).get(eps, {})
        common = sorted(set(seeds) & set(base))
        if not common:
            found.append(_finding(model, attack, None, f"eps {eps:.4g}: {check}: no base rows to compare"))
            continue
        acc_b = _mean([base[s] for s in common])
        acc_r = _mean([float(seeds[s]["accuracy"]) for s in common])
        drop = acc_b - acc_r
        ok = acc_r >= acc_b - tol - 1e-9  # (rounding: accuracies are counts / n)
        detail = (
            f"eps {eps:.4g}: {check} {100 * acc_r:.1f} % vs white-box {100 * acc_b:.1f} % "
            f"({'stronger' if drop > 0 else 'weaker'} by {_pts(abs(drop))}; tolerance {_pts(tol)})"
        )
        found.append(_finding(model, attack, ok, detail))
    return found


def _effort(grid: dict, rows: list[dict[str, Any]], what: str, tol: float) -> list[dict[str, Any]]:
    """Findings of the effort reruns (2x, 4x, ... the PGD ``what``: steps or restarts), per attack and eps.

    Each level ran on the survivors of the level below, so its accuracy is the worst case so far and
    a level's drop is what it broke more. Pass when the last level run broke less than ``tol`` more
    (the budget had converged at the level below it); a level recorded as ``skipped`` was not needed.
    """
    levels: dict[tuple, dict[int, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        effort = parse_effort(r.get("check")) if r.get("kind") == "attack" else None
        if effort and effort[0] == what:
            levels[(r["model"], r["attack"], float(r["eps"]))][effort[1]][int(r["seed"])] = r
    found = []
    for (model, attack, eps), by_factor in sorted(levels.items()):
        below = grid.get((model, attack), {}).get(eps, {})  # seed -> accuracy of the level below
        seeds = set(below)
        parts, ok, converged = [], None, None
        for factor in sorted(by_factor):
            run = {s: r for s, r in by_factor[factor].items() if not r.get("skipped")}
            if not run:
                parts.append(f"{factor}x not needed")
                break
            common = sorted(seeds & set(run))
            if not common:
                break
            acc_b = _mean([below[s] for s in common])
            acc_r = _mean([float(run[s]["accuracy"]) for s in common])
            ok = acc_b - acc_r < tol - 1e-9  # exactly tol (e.g. 2 of 200 images) fails
            parts.append(
                f"{factor}x {what} breaks {_pts(acc_b - acc_r)} more ({100 * acc_b:.1f} % -> {100 * acc_r:.1f} %)"
            )
            if ok:
                converged = factor // 2
                break
            below, seeds = {s: float(run[s]["accuracy"]) for s in common}, set(common)
        if ok is None:
            found.append(_finding(model, attack, None, f"eps {eps:.4g}: {what} reruns: no base rows to compare"))
            continue
        verdict = (
            f"converged at {converged}x {what}" if ok else "still falling at the last level (raise checks.escalate)"
        )
        found.append(
            _finding(model, attack, ok, f"eps {eps:.4g}: {'; '.join(parts)}: {verdict} (must be < {_pts(tol)})")
        )
    return found


def _broke(row: dict[str, Any]) -> float:
    """The fraction of its seed's images a row on the survivors broke itself."""
    record = row.get("survival") or ""
    return record.count(survival.BROKEN) / max(len(record), 1)


def _survivor_sweep(rows: list[dict[str, Any]], tol: float) -> list[dict[str, Any]]:
    """Findings of the cascade attacks' gradient-mode reruns (``grad:`` rows on the survivors): each
    mode breaks fewer than ``tol`` more than every row before it (seed mean)."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("kind") == "attack" and r.get("on_survivors") and (r.get("check") or "").startswith("grad:"):
            groups[(r["model"], r["attack"], float(r["eps"]))][r["check"].split(":", 1)[1]].append(_broke(r))
    found = []
    for (model, attack, eps), by_mode in sorted(groups.items()):
        means = {m: _mean(v) for m, v in by_mode.items()}
        strong = [m for m, b in means.items() if b >= tol - 1e-9]
        shown = ", ".join(f"{m} {_pts(b)}" for m, b in sorted(means.items()))
        detail = f"eps {eps:.4g}: broke more than every row before it (on the survivors): {shown}"
        if strong:
            detail += f"; {', '.join(sorted(strong))} found >= {_pts(tol)} the model's own gradient missed"
        found.append(_finding(model, attack, not strong, detail))
    return found


def _unroll(rows: list[dict[str, Any]], tol: float) -> list[dict[str, Any]]:
    """Findings of the unroll escalation (``unroll:K`` rows, per model and eps, summed over its attacks).

    Level K's rows ran on the survivors of every row before them, so what they broke is what the
    longer unroll found more. Pass when the last level run after the first broke less than ``tol``
    (converged at the K below it); FAIL when it broke ``tol`` or more (not converged in K). Models
    with no unroll rows are ``not checked`` (feed-forward models have no unroll).
    """
    kinds: dict[str, str] = {}
    for r in rows:
        if r.get("model") is not None and r.get("model_kind"):
            kinds.setdefault(r["model"], r["model_kind"])
    levels: dict[tuple, dict[int, dict[int, list[dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in rows:
        k = parse_unroll(r.get("check")) if r.get("kind") == "attack" else None
        if k is not None:
            levels[(r["model"], float(r["eps"]))][k][int(r["seed"])].append(r)
    found = []
    for model in sorted(m for m in kinds if not any(key[0] == m for key in levels)):
        why = "feed-forward model: no unroll" if kinds[model] != "ep" else "no unroll rows (set checks.unroll)"
        found.append(_finding(model, None, None, why))
    for (model, eps), by_k in sorted(levels.items()):
        ks = sorted(by_k)
        attacks = " + ".join(sorted({r["attack"] for seeds in by_k.values() for rs in seeds.values() for r in rs}))
        parts, broke_at = [], []
        for k in ks:
            run = {s: rs for s, rs in by_k[k].items() if not all(r.get("skipped") for r in rs)}
            if not run:
                parts.append(f"K={k} not needed")
                break
            broke_at.append(_mean([sum(_broke(r) for r in rs) for rs in run.values()]))
            parts.append(f"K={k} breaks {_pts(broke_at[-1])} more")
        head = f"eps {eps:.4g} ({attacks}): {'; '.join(parts)}"
        if len(broke_at) < 2:
            found.append(_finding(model, None, None, f"{head}: one unroll length ran, nothing to compare"))
            continue
        last = len(broke_at) - 1
        ok = broke_at[last] < tol - 1e-9  # exactly tol (e.g. 5 of 500 images) fails
        verdict = (
            f"converged at K={ks[last - 1]}"
            if ok
            else f"still falling at K={ks[last]}: not converged in K (a longer unroll must run)"
        )
        found.append(_finding(model, None, ok, f"{head}: {verdict} (must be < {_pts(tol)})"))
    return found


def _sweep(grid: dict, rows: list[dict[str, Any]], prefix: str, tol: float, base_label) -> list[dict[str, Any]]:
    """Findings of a sweep (``grad:`` or ``eot:`` reruns at one eps): no setting much stronger than the
    model's own, and accuracy stopped falling between the two largest K / EOT counts."""
    groups: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    own: dict[tuple, str] = {}
    for r in rows:
        if r.get("kind") == "attack" and (r.get("check") or "").startswith(prefix) and not r.get("on_survivors"):
            key = (r["model"], r["attack"], float(r["eps"]))
            groups[key][r["check"].split(":", 1)[1]][int(r["seed"])] = float(r["accuracy"])
            own[key] = base_label(r)
    found = []
    for (model, attack, eps), by_mode in sorted(groups.items()):
        base = grid.get((model, attack), {}).get(eps, {})
        means = {m: _mean(list(v.values())) for m, v in by_mode.items()}
        problems = []
        if base:
            acc_b = _mean(list(base.values()))
            label = own[(model, attack, eps)]
            means.setdefault(label, acc_b)
            strongest = min(means, key=means.get)
            if means[strongest] < acc_b - tol:
                problems.append(
                    f"{strongest} is stronger than the model's own {label} by {_pts(acc_b - means[strongest])}"
                )
        ladder = sorted(((_order_key(m), m) for m in means if _order_key(m) is not None))
        if len(ladder) >= 2:
            (_, prev), (_, last) = ladder[-2], ladder[-1]
            fall = means[prev] - means[last]
            if fall >= tol:
                problems.append(f"still falling: {prev} {100 * means[prev]:.1f} % -> {last} {100 * means[last]:.1f} %")
        shown = ", ".join(f"{m} {100 * a:.1f}" for m, a in sorted(means.items(), key=lambda kv: str(kv[0])))
        detail = f"eps {eps:.4g}: " + ("; ".join(problems) + f" ({shown})" if problems else f"flat: {shown}")
        found.append(_finding(model, attack, not problems, detail))
    return found


def _order_key(mode: str) -> int | None:
    """K of ``bptt:K`` (the unroll ladder) or an EOT count; ``None`` for other modes."""
    parts = mode.split(":")
    if parts[0] == "bptt" and len(parts) == 2:
        return int(parts[1])
    if parts[0].isdigit():
        return int(parts[0])
    return None


def evaluate(rows: list[dict[str, Any]], th: Thresholds = Thresholds()) -> dict[str, Any]:
    """The checklist of a run's rows: ``{"items": [...], "suspect_models": [...], "thresholds": {...}}``."""
    grid = _by_eps(rows)
    meta = {(r["model"], r["attack"]): r for r in rows if r.get("kind") == "attack"}
    clean = defaultdict(list)
    for r in rows:
        if r.get("kind") == "clean":
            clean[r["model"]].append(float(r["accuracy"]))
    items = []

    # 1. monotone in eps (starting from the clean accuracy)
    found = []
    for (model, attack), eps_rows in sorted(grid.items()):
        curve = [(e, _mean(list(s.values()))) for e, s in sorted(eps_rows.items())]
        if clean[model]:
            curve.insert(0, (0.0, _mean(clean[model])))
        rises = [(a, b) for a, b in zip(curve, curve[1:]) if b[1] > a[1] + th.monotone_tol]
        detail = "; ".join(f"eps {a[0]:.4g} -> {b[0]:.4g}: {a[1]:.3f} -> {b[1]:.3f}" for a, b in rises)
        found.append(_finding(model, attack, not rises, detail or f"{len(curve)} points non-increasing"))
    items.append(_item("monotone", "accuracy non-increasing in eps", found, "no attack rows"))

    # 2. near chance at the largest eps
    found = []
    for (model, attack), eps_rows in sorted(grid.items()):
        classes = int(meta[(model, attack)].get("classes", 10))
        top = max(eps_rows)
        if len([e for e in eps_rows if e > 0]) < 2:  # one eps is a chosen operating point, not a large eps
            found.append(_finding(model, attack, None, f"eps {top:.4g} is the grid's only eps: no largest eps"))
            continue
        acc = _mean(list(eps_rows[top].values()))
        limit = 1.0 / classes + th.chance_margin
        found.append(_finding(model, attack, acc <= limit, f"eps {top:.4g}: accuracy {acc:.3f} (limit {limit:.3f})"))
    items.append(_item("chance", "accuracy at the largest eps near chance", found, "no attack rows"))

    # 3. Square vs every pure-gradient attack, per image
    found = []
    by_group: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("kind") == "attack" and r.get("survival") and r.get("check") in (None, "cascade"):
            by_group[survival.group_key(r)].append(r)
    extra: dict[tuple, dict[int, tuple[int, int, list[str]]]] = defaultdict(dict)
    for (model, norm, eps, seed), members in by_group.items():
        wb = [r for r in members if r.get("white_box", r.get("method") == "pgd")]
        for sq in (r for r in members if r.get("black_box", r.get("method") == "square")):
            if wb:
                k = survival.extra_broken(sq, wb)
                extra[(model, sq["attack"], eps)][seed] = (k, int(sq["n"]), sorted({w["attack"] for w in wb}))
    for (model, attack, eps), seeds in sorted(extra.items()):
        frac = _mean([k / n for k, n, _ in seeds.values()])
        names = ", ".join(next(iter(seeds.values()))[2])
        kmean = _mean([k for k, _, _ in seeds.values()])
        detail = (
            f"eps {eps:.4g}: {attack} broke {_pts(frac)} ({kmean:.1f} images per seed) that every white-box "
            f"attack ({names}) left standing (tolerance {_pts(th.blackbox_tol)})"
        )
        found.append(_finding(model, attack, frac <= th.blackbox_tol, detail))
    items.append(
        _item(
            "blackbox",
            "Square finds no images the gradient attacks missed",
            found,
            "no Square and white-box rows at a shared norm/eps",
        )
    )

    # 4.-7. reruns against their base rows
    items.append(
        _item(
            "double-steps",
            f"2x PGD steps (same step size) breaks < {_pts(th.steps_drop)} more",
            _effort(grid, rows, "steps", th.steps_drop),
            "no doubled-steps rows",
        )
    )
    items.append(
        _item(
            "double-restarts",
            f"2x PGD restarts breaks < {_pts(th.restarts_drop)} more",
            _effort(grid, rows, "restarts", th.restarts_drop),
            "no doubled-restarts rows",
        )
    )
    items.append(
        _item(
            "transfer",
            "transfer attack not stronger than white-box",
            _vs_base(grid, _checks(rows, "transfer"), th.transfer_tol),
            "no transfer rows",
        )
    )
    items.append(
        _item(
            "warm-start",
            "warm-started transfer not stronger than white-box",
            _vs_base(grid, _checks(rows, "warm:"), th.transfer_tol),
            "no warm-started rows",
        )
    )

    # 8. gradient-mode / unroll-length sweep
    own_grad = {(r["model"], r["attack"]): (r.get("ep") or {}).get("grad", "own") for r in rows if _main(r)}
    items.append(
        _item(
            "grad-sweep",
            "no gradient mode stronger; accuracy stopped falling in K",
            _sweep(grid, rows, "grad:", th.sweep_tol, lambda r: own_grad.get((r["model"], r["attack"]), "own"))
            + _survivor_sweep(rows, th.sweep_tol),
            "no gradient-sweep rows (EP models only)",
        )
    )

    # 9. unroll escalation (EP models)
    items.append(
        _item(
            "unroll",
            f"a longer unroll breaks < {_pts(th.unroll_drop)} more (converged in K)",
            _unroll(rows, th.unroll_drop),
            "no model rows",
        )
    )

    # 10. EOT for stochastic models
    found = _sweep(grid, rows, "eot:", th.eot_tol, lambda r: "eot:base")
    for model in sorted({r["model"] for r in rows if r.get("kind") == "clean" and r.get("stochastic")}):
        attacked_eot = any(
            r["model"] == model and ((r.get("notes") or {}).get("eot") or 1) > 1
            for r in rows
            if r.get("kind") == "attack" and r.get("check") in (None, "cascade")  # the reported attacks
        )
        found.append(
            _finding(
                model,
                None,
                attacked_eot,
                "stochastic (two predictions of one batch differ); "
                + (
                    "a reported attack used EOT"
                    if attacked_eot
                    else "no reported attack used EOT: numbers overstate robustness"
                ),
            )
        )
    items.append(_item("eot", "stochastic models attacked with enough EOT", found, "no stochastic model"))

    # 11. zero input gradients
    found = []
    for r in rows:
        if r.get("kind") == "zero-grad":
            frac = float(r["zero_grad_fraction"])
            found.append(
                _finding(
                    r["model"],
                    None,
                    frac <= th.zero_grad_max,
                    f"{frac:.3f} of {r['n']} images have a zero input gradient",
                )
            )
    items.append(_item("zero-gradients", "input gradients do not vanish", found, "no gradient probe rows"))

    # 12. AutoAttack's own warnings
    found = []
    warned = defaultdict(set)
    seen = set()
    for r in rows:
        if r.get("kind") == "attack" and r.get("method") == "autoattack":
            seen.add((r["model"], r["attack"]))
            for w in (r.get("notes") or {}).get("aa_warnings", []):
                warned[(r["model"], r["attack"])].add(re.split(r"(?<=[.!])\s", w)[0])  # first sentence
    for model, attack in sorted(seen):
        msgs = sorted(warned.get((model, attack), ()))
        found.append(_finding(model, attack, not msgs, "; ".join(msgs) or "no warnings"))
    items.append(_item("library-warnings", "AutoAttack raised no warning", found, "no AutoAttack rows"))

    suspect = sorted({f["model"] for it in items for f in it["findings"] if f["status"] == FAIL})
    return {"items": items, "suspect_models": suspect, "thresholds": asdict(th)}


def dumps(checklist: dict[str, Any]) -> str:
    return json.dumps(checklist, indent=1, sort_keys=True)
