"""Checkpoints of feed-forward models: ``{"format": "ephw.feedforward", ...}`` files.

The same atomic write and safe read as EP checkpoints (:func:`ephw.checkpoint.write_blob`,
:func:`ephw.checkpoint.read_blob`): ``torch.load(weights_only=True)``, no pickled code. The
architecture is stored as a JSON spec (``{"kind": "cnn" | "resnet18", ...}``) from which
loading rebuilds the module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ephw.checkpoint import parse_meta, read_blob, with_weights, write_blob
from ephw.pretrained.catalog import resolve_model
from ephw.errors import CheckpointError, ConfigError
from ephw.feedforward.cnn import CNNSpec, EPTopologyCNN
from ephw.feedforward.resnet import ResNet18, ResNetSpec

FORMAT = "ephw.feedforward"
VERSION = 1
_SPECS: dict[str, type] = {CNNSpec.kind: CNNSpec, ResNetSpec.kind: ResNetSpec}
_MODELS: dict[str, type[nn.Module]] = {CNNSpec.kind: EPTopologyCNN, ResNetSpec.kind: ResNet18}


def spec_from_dict(d: dict[str, Any]) -> CNNSpec | ResNetSpec:
    """The spec dataclass of a stored ``{"kind": ..., ...}`` dict."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in _SPECS:
        raise ConfigError(f"unknown feed-forward model kind {kind!r}; valid: {', '.join(_SPECS)}")
    return _SPECS[kind].from_dict(d)


def build_feedforward(spec: CNNSpec | ResNetSpec) -> nn.Module:
    """A freshly initialised model of ``spec`` (seed torch beforehand for reproducible weights)."""
    return _MODELS[spec.kind](spec)


@dataclass
class FeedForwardCheckpoint:
    """Contents of a feed-forward checkpoint (``training`` as in :class:`ephw.checkpoint.Checkpoint`)."""

    spec: CNNSpec | ResNetSpec
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    source: Path | None = None  # the file it was read from (named in errors)

    def model(self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> nn.Module:
        """The model with its weights, in eval mode."""
        return with_weights(build_feedforward(self.spec), self.state_dict, dtype, device, self.source)


def save_feedforward_checkpoint(path: str | Path, ckpt: FeedForwardCheckpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically; returns the path."""
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "spec": json.dumps(ckpt.spec.to_dict(), sort_keys=True),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "meta": json.dumps(ckpt.meta, sort_keys=True),
    }
    if ckpt.training is not None:
        blob["training"] = ckpt.training
    return write_blob(path, blob)


def read_feedforward_checkpoint(path: str | Path) -> FeedForwardCheckpoint:
    """Read a feed-forward checkpoint; :class:`CheckpointError` (one line) on any problem.

    An EP checkpoint (``format "ephw.checkpoint"``) is refused with a message naming its format.
    """
    blob = read_blob(path, FORMAT, VERSION, "ephw feed-forward checkpoint")
    try:
        spec = spec_from_dict(json.loads(blob["spec"]))
        state = blob["state_dict"]
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{path} is a damaged ephw feed-forward checkpoint: {exc}") from None
    return FeedForwardCheckpoint(spec, state, parse_meta(blob, path), blob.get("training"), resolve_model(path))


def save_feedforward(path: str | Path, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Save a feed-forward model (anything with a ``spec`` from this package) and JSON ``meta``."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, (CNNSpec, ResNetSpec)):
        raise CheckpointError(f"{type(model).__name__} is not an ephw.feedforward model (it has no spec)")
    return save_feedforward_checkpoint(path, FeedForwardCheckpoint(spec, model.state_dict(), dict(meta or {})))


def load_feedforward(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode) and meta of a feed-forward checkpoint."""
    ckpt = read_feedforward_checkpoint(path)
    return ckpt.model(dtype, device), ckpt.meta
