"""Named models shipped inside the package: ``ephw/pretrained/<name>.pt``.

Every command that takes a checkpoint path (``--model``, ``--teacher``, ``--student``, robustness
configs) also takes one of these names; ``ephw models`` lists them with the command, seed, data
hash and metrics their meta records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ephw.errors import CheckpointError

PRETRAINED_DIR = Path(__file__).resolve().parent
"""Folder of the shipped checkpoints."""


def model_names() -> list[str]:
    """Names of the shipped models, sorted (a name is the file name without ``.pt``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def resolve_model(name_or_path: str | Path) -> Path:
    """The checkpoint file of a shipped model's name, or ``name_or_path`` itself as a path.

    An existing file wins over a name. A bare word (no folder, no suffix) that is no shipped
    model is a :class:`CheckpointError` listing the names; anything else is returned as a path
    (a missing file is reported by the reader).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if text in model_names():
        return PRETRAINED_DIR / f"{text}.pt"
    if path.parent == Path(".") and not path.suffix:
        raise CheckpointError(
            f"no model named {text!r}: use a checkpoint path or one of {', '.join(model_names())} (ephw models)"
        )
    return path


def describe_models() -> list[dict[str, Any]]:
    """One row per shipped model: name, format, data, architecture and the meta's metrics/command/seed."""
    import torch

    rows = []
    for name in model_names():
        blob = torch.load(PRETRAINED_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
        meta = json.loads(blob.get("meta", "{}"))
        kind = "ep" if blob.get("format") == "ephw.checkpoint" else "feedforward"
        rows.append(
            {
                "name": name,
                "kind": kind,
                "data": meta.get("data", "digits"),
                "architecture": meta.get("config") or meta.get("student") or meta.get("trainer"),
                "test_accuracy": (meta.get("metrics") or {}).get("test_accuracy", meta.get("test_accuracy")),
                "seed": meta.get("seed"),
                "command": meta.get("command"),
                "data_sha256": meta.get("data_sha256"),
            }
        )
    return rows
