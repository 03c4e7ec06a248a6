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


def describe_models(skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per shipped model: name, format, data, architecture and the meta's metrics/command/seed.

    A ``.pt`` file in the folder that is no readable ephw file (a stray download, a truncated
    copy, damaged meta) is left out; ``"<file name> (<reason>)"`` is appended to ``skipped``.
    """
    import torch

    rows = []
    for name in model_names():
        path = PRETRAINED_DIR / f"{name}.pt"
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or not str(blob.get("format", "")).startswith("ephw."):
                raise ValueError("not an ephw checkpoint")
            meta = json.loads(blob.get("meta", "{}"))
            if not isinstance(meta, dict):
                raise ValueError("its meta is not a JSON object")
        except Exception as exc:  # whatever torch.load or json raise for a foreign or damaged file
            if skipped is not None:
                skipped.append(f"{path.name} ({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]})")
            continue
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
