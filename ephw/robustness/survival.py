"""Per-image survival records: what makes the worst case per image computable from the rows.

Every result row carries ``survival``, one character per image of the seed's subset (in
subset order): ``"1"`` the image was attacked and still classified correctly, ``"0"`` the
attack (or, for the clean row, the model) got it wrong, ``"-"`` not attacked because an
earlier attack of a cascade had already broken it (or the row was an escalation level that was
not needed). An image is robust at eps only if no row of that model, norm, eps and seed (the
clean row included) says ``"0"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

ALIVE, BROKEN, SKIPPED = "1", "0", "-"


def encode(survived: Tensor, attacked: Tensor | None = None) -> str:
    """``(n,)`` bool survival (and which images were attacked) -> the row's ``survival`` string."""
    survived = survived.cpu().bool().tolist()
    attacked = [True] * len(survived) if attacked is None else attacked.cpu().bool().tolist()
    return "".join(SKIPPED if not a else ALIVE if s else BROKEN for s, a in zip(survived, attacked))


def alive(record: str) -> Tensor:
    """``(n,)`` bool: the images a row left standing."""
    return torch.tensor([c == ALIVE for c in record], dtype=torch.bool)


def broken(record: str) -> Tensor:
    """``(n,)`` bool: the images this row's attack itself broke."""
    return torch.tensor([c == BROKEN for c in record], dtype=torch.bool)


def survivors(records: Iterable[str], n: int) -> Tensor:
    """``(n,)`` bool: images no record says broken (all ones for no records).

    A ``"-"`` (not attacked) says nothing: an image a cascade stage or rerun skipped was broken by
    an earlier row, whose record says ``"0"``, and a level of an escalation that was not needed
    (``skipped``, every image ``"-"``) broke nothing -- it must not take its images out of the
    worst case or out of the survivors later cascade stages attack.
    """
    out = torch.ones(n, dtype=torch.bool)
    for r in records:
        if len(r) != n:
            raise ValueError(f"survival record of length {len(r)} for {n} images")
        out &= ~broken(r)
    return out


def group_key(row: dict[str, Any]) -> tuple:
    """``(model, norm, eps, seed)`` of an attack row: the rows whose intersection is the worst case."""
    return (row["model"], row.get("norm"), round(float(row["eps"]), 9), int(row["seed"]))


def worst_case(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Worst case per image over every attack row (plus the clean row) with a survival record.

    Returns ``(model, norm, eps, seed) -> {"n", "correct", "accuracy", "attacks": [labels], "alive"}``,
    ``alive`` the ``(n,)`` bool images standing after every attack.
    """
    clean = {(r["model"], int(r["seed"])): r for r in rows if r.get("kind") == "clean" and r.get("survival")}
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("kind") == "attack" and r.get("survival") and float(r["eps"]) > 0:
            groups.setdefault(group_key(r), []).append(r)
    out = {}
    for key, members in groups.items():
        model, _, _, seed = key
        records = [m["survival"] for m in members]
        if (model, seed) in clean:
            records.append(clean[(model, seed)]["survival"])
        n = len(records[0])
        alive_ = survivors(records, n)
        out[key] = {
            "n": n,
            "correct": int(alive_.sum()),
            "accuracy": float(alive_.float().mean()),
            "attacks": sorted({label(m) for m in members}),
            "alive": alive_,
        }
    return out


def label(row: dict[str, Any]) -> str:
    """``"PGD-l2"``, ``"PGD-l2 [double-steps]"``, ... : an attack row's name in tables."""
    return row["attack"] + (f" [{row['check']}]" if row.get("check") else "")


def extra_broken(row: dict[str, Any], others: list[dict[str, Any]]) -> int:
    """Images ``row`` broke that every row in ``others`` left standing (per image, same subset)."""
    if not others:
        return 0
    standing = survivors([o["survival"] for o in others], len(row["survival"]))
    return int((broken(row["survival"]) & standing).sum())
