"""The gradient-obfuscation checklist (Carlini et al. 2019, "On evaluating adversarial robustness").

Computed from the result rows of a run (pure functions, no model needed), stored next to
the results and printed at the top of every report. Each item has, per model (and
attack), a status ``pass`` / ``FAIL`` / ``not checked``; an item with no data is shown as
``not checked``, never dropped.

Items:

1. ``monotone`` -- accuracy does not increase with eps (seed means, tolerance ``monotone_tol``).
2. ``chance`` -- accuracy at the largest eps is near chance (<= 1/classes + ``chance_margin``);
   if not, the grid is too small or the attack is failing.
3. ``whitebox-le-blackbox`` -- a white-box attack is at least as strong as Square (same
   norm and eps): acc(white-box) <= acc(Square) + ``blackbox_tol``.
4. ``double-steps`` -- doubling the PGD iterations lowers accuracy by less than ``steps_drop``.
5. ``transfer`` -- PGD adversarials of a feed-forward surrogate are not stronger than the
   white-box attack on the model itself: acc(transfer) >= acc(white-box) - ``transfer_tol``.
6. ``zero-gradients`` -- at most ``zero_grad_max`` of the images have an identically zero
   input gradient of the loss (vanishing gradients make white-box attacks fail silently).
7. ``library-warnings`` -- AutoAttack's own checks (randomised/dynamic defence, zero
   gradients, Square stronger than the gradient attacks) raised no warning.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

PASS, FAIL, UNCHECKED = "pass", "FAIL", "not checked"


@dataclass(frozen=True)
class Thresholds:
    """Tolerances of the checklist (accuracies are fractions in [0, 1])."""

    monotone_tol: float = 0.01
    chance_margin: float = 0.10
    blackbox_tol: float = 0.01
    steps_drop: float = 0.02
    transfer_tol: float = 0.01
    zero_grad_max: float = 0.05


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _by_eps(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[float, dict[int, float]]]:
    """``(model, attack) -> eps -> seed -> accuracy`` of the main (non-check) attack rows."""
    out: dict[tuple[str, str], dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get("kind") == "attack" and r.get("check") is None:
            out[(r["model"], r["attack"])][float(r["eps"])][int(r["seed"])] = float(r["accuracy"])
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
        acc = _mean(list(eps_rows[top].values()))
        limit = 1.0 / classes + th.chance_margin
        found.append(_finding(model, attack, acc <= limit, f"eps {top:.4g}: accuracy {acc:.3f} (limit {limit:.3f})"))
    items.append(_item("chance", "accuracy at the largest eps near chance", found, "no attack rows"))

    # 3. white-box <= black-box (Square) at the same norm and eps
    found = []
    for (model, attack), eps_rows in sorted(grid.items()):
        m = meta[(model, attack)]
        if m.get("method") == "square":
            continue
        for (model2, sq), sq_rows in sorted(grid.items()):
            m2 = meta[(model2, sq)]
            if model2 != model or m2.get("method") != "square" or m2.get("norm") != m.get("norm"):
                continue
            common = sorted(set(eps_rows) & set(sq_rows))
            bad = []
            for e in common:
                wb, bb = _mean(list(eps_rows[e].values())), _mean(list(sq_rows[e].values()))
                if wb > bb + th.blackbox_tol:
                    bad.append(f"eps {e:.4g}: {attack} {wb:.3f} > {sq} {bb:.3f}")
            if common:
                detail = "; ".join(bad) or f"{len(common)} common eps, white-box never weaker than {sq}"
                found.append(_finding(model, attack, not bad, detail))
    items.append(
        _item(
            "whitebox-le-blackbox", "white-box accuracy <= Square accuracy", found, "no Square run at a shared norm/eps"
        )
    )

    # 4. doubling PGD iterations
    found = []
    doubled = defaultdict(dict)
    for r in rows:
        if r.get("kind") == "attack" and r.get("check") == "double-steps":
            doubled[(r["model"], r["attack"], float(r["eps"]))][int(r["seed"])] = float(r["accuracy"])
    for (model, attack, eps), seeds in sorted(doubled.items()):
        base = grid.get((model, attack), {}).get(eps, {})
        common = sorted(set(seeds) & set(base))
        if not common:
            found.append(_finding(model, attack, None, f"eps {eps:.4g}: no base rows for the doubled run"))
            continue
        drop = _mean([base[s] for s in common]) - _mean([seeds[s] for s in common])
        found.append(
            _finding(model, attack, drop < th.steps_drop, f"eps {eps:.4g}: 2x steps lowers accuracy {drop:+.3f}")
        )
    items.append(
        _item("double-steps", "doubling iterations lowers accuracy < 2 points", found, "no doubled-steps rows")
    )

    # 5. transfer from a feed-forward surrogate not stronger than white-box
    found = []
    transfer = defaultdict(dict)
    for r in rows:
        if r.get("kind") == "attack" and r.get("check") == "transfer":
            transfer[(r["model"], r["attack"], float(r["eps"]), r.get("surrogate"))][int(r["seed"])] = float(
                r["accuracy"]
            )
    for (model, attack, eps, surrogate), seeds in sorted(transfer.items(), key=lambda kv: kv[0][:3]):
        base = grid.get((model, attack), {}).get(eps, {})
        common = sorted(set(seeds) & set(base))
        if not common:
            found.append(_finding(model, attack, None, f"eps {eps:.4g}: no white-box rows to compare"))
            continue
        tr, wb = _mean([seeds[s] for s in common]), _mean([base[s] for s in common])
        found.append(
            _finding(
                model,
                attack,
                tr >= wb - th.transfer_tol,
                f"eps {eps:.4g}: transfer from {surrogate} {tr:.3f} vs white-box {wb:.3f}",
            )
        )
    items.append(_item("transfer", "transfer attack not stronger than white-box", found, "no transfer rows"))

    # 6. zero input gradients
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

    # 7. AutoAttack's own warnings
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
