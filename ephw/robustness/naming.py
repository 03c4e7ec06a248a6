"""Model names in a results file: ``"<family> [s<seed>]"`` names one training seed of a model family.

The reproduction pipeline names every trained model this way; the report's figures pool the
seeds of a family into one line (or bar), and the pipeline's verdicts pool them into one measure.
A name without the suffix is a family of its own.
"""

from __future__ import annotations

import re

_SEEDED = re.compile(r"^(?P<family>.*) \[s(?P<seed>\d+)\]$")


def seed_name(family: str, seed: int) -> str:
    """``"<family> [s<seed>]"``: the name of training seed ``seed`` of ``family``."""
    return f"{family} [s{seed}]"


def seeded(name: str) -> tuple[str, int] | None:
    """``(family, training seed)`` of a ``"<family> [s<seed>]"`` name; ``None`` for any other name."""
    m = _SEEDED.match(name)
    return (m["family"], int(m["seed"])) if m else None


def family(name: str) -> str:
    """The family of ``name``: the part before ``" [s<seed>]"``, or the whole name."""
    parsed = seeded(name)
    return parsed[0] if parsed else name


def families(names: list[str]) -> dict[str, list[str]]:
    """``family -> its names``, both in first-seen order."""
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(family(n), []).append(n)
    return out
