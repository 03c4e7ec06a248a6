"""Checkpoints: weights + architecture (+ optional training state) in one file.

Files are written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which only reconstructs tensors and plain containers -- loading never executes code
from the file. Writes are atomic (temporary file + ``os.replace``), so a run killed
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ephw.errors import CheckpointError, ConfigError
from ephw.model import EnergyModel, ModelConfig
from ephw.outputs import atomic_write
from ephw.pretrained.catalog import resolve_model

FORMAT = "ephw.checkpoint"
VERSION = 1
BUNDLED_DIR = Path(__file__).resolve().parent / "pretrained"
BUNDLED_MODEL = BUNDLED_DIR / "digits-ep.pt"
M = TypeVar("M", bound=nn.Module)


@dataclass
class Checkpoint:
    """Contents of a checkpoint file.

    Attributes:
        config: the model architecture.
        state_dict: model weights and buffers.
        meta: JSON-serialisable facts about the model (dataset, how it was trained,
            metrics).
        training: optional resumable training state (optimizer, scheduler, epoch,
            batch, RNG); tensors and plain containers only.
        source: the file it was read from (named in errors), ``None`` for one built in memory.
    """

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    source: Path | None = None

    def model(self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> EnergyModel:
        return with_weights(EnergyModel(self.config), self.state_dict, dtype, device, self.source)


def state_dict_mismatch(module: nn.Module, state_dict: dict[str, Any]) -> str | None:
    """The first way ``state_dict`` does not fit ``module`` (a shape, a missing or an extra entry), else ``None``."""
    expected = module.state_dict()
    for name, want in expected.items():
        got = state_dict.get(name)
        if got is None:
            return f"{name} is missing from the file"
        if torch.is_tensor(got) and tuple(got.shape) != tuple(want.shape):
            return (
                f"{name} has shape {tuple(got.shape)} in the file but the architecture needs {tuple(want.shape)}"
            )
    extra = [k for k in state_dict if k not in expected]
    return f"the file holds {extra[0]}, which the architecture has no place for" if extra else None


def with_weights(
    module: M,
    state_dict: dict[str, torch.Tensor],
    dtype: torch.dtype,
    device: str | torch.device,
    source: str | Path | None = None,
) -> M:
    """``module`` with ``state_dict`` loaded, moved to ``dtype``/``device``, in eval mode.

    Raises :class:`CheckpointError` (one line, naming ``source`` -- the file -- and the first
    mismatching parameter with both shapes) if the weights do not fit the architecture.
    """
    where = f"{source}: " if source is not None else ""
    mismatch = state_dict_mismatch(module, state_dict)
    if mismatch is not None:
        raise CheckpointError(f"{where}weights do not match the stored architecture: {mismatch}")
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())
        raise CheckpointError(f"{where}weights do not match the stored architecture: {first}") from None
    return module.to(device=device, dtype=dtype).eval()


def write_blob(path: str | Path, blob: dict[str, Any]) -> Path:
    """``torch.save`` a dict of tensors and plain containers to ``path`` atomically; returns the path.

    The blob goes to a temporary file in the same folder that then replaces ``path``, so a
    process killed while writing leaves the previous file intact. Every ephw file format
    (model checkpoints, :mod:`ephw.feedforward` checkpoints) is written through here.
    """
    buffer = io.BytesIO()  # serialised first: torch reports a failed file write as a RuntimeError
    torch.save(blob, buffer)
    return atomic_write(path, buffer.getbuffer())


#: The global torch's ``weights_only`` unpickler refused, as its message names it.
_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_any(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of ``path``; a missing or unreadable file is a one-line CheckpointError.

    A file whose pickle names code or objects (any global beyond tensors and plain containers)
    is refused as such, naming the blocked global: torch's own message advises loading with
    ``weights_only=False``, which would run that code.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle refusing foreign objects, ...
        text = str(exc)
        blocked = _BLOCKED_GLOBAL.search(text) if "weights only load failed" in text.lower() else None
        if blocked is not None:
            raise CheckpointError(
                f"{path} holds code or objects ephw will not load (the global {blocked.group(1)}): an ephw "
                "file holds only weights and plain data, so this one is foreign or tampered with"
            ) from None
        reason = (text.strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt or foreign): {reason}"
        ) from None


def parse_meta(blob: Any, path: str | Path) -> dict[str, Any]:
    """The JSON ``meta`` entry of a loaded ephw file as a dict; damaged meta is a one-line CheckpointError."""
    raw = blob.get("meta", "{}") if isinstance(blob, dict) else "{}"
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} has a damaged meta entry (not JSON: {exc}); retrain or restore the file"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has a damaged meta entry (JSON {type(meta).__name__}, not an object)")
    return meta


def checkpoint_format(path: str | Path) -> str:
    """The ``format`` entry of an ephw file (EP ``ephw.checkpoint`` or ``ephw.feedforward*``); path or shipped name."""
    path = resolve_model(path)
    blob = _load_any(path)
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if not isinstance(fmt, str):
        raise CheckpointError(f"{path} has no 'format' entry: not an ephw checkpoint")
    return fmt


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON meta of an ephw file (any format); a missing or foreign file is a one-line CheckpointError."""
    path = Path(path)
    checkpoint_format(path)
    return parse_meta(_load_any(path), path)


#: meta key: sha256s of earlier versions of the file that differed from it in meta only
#: (:func:`update_meta` records them), so results keyed by a file's hash survive a meta edit
META_EDITED_FROM = "meta_edited_from_sha256"


def update_meta(path: str | Path, updates: dict[str, Any]) -> None:
    """Merge ``updates`` into the JSON meta of an ephw file (any format), rewriting it atomically.

    The file's sha256 before the edit joins the meta's :data:`META_EDITED_FROM` list: the
    weights are untouched, so what was measured under the old hash still holds
    (:func:`earlier_meta_versions`).
    """
    path = Path(path)
    checkpoint_format(path)  # an ephw file, or a one-line CheckpointError
    before = file_sha256(path)
    blob = _load_any(path)
    meta = parse_meta(blob, path)
    meta.update(updates)
    meta[META_EDITED_FROM] = sorted({*meta.get(META_EDITED_FROM, []), before})
    blob["meta"] = json.dumps(meta, sort_keys=True)
    write_blob(path, blob)


def earlier_meta_versions(path: str | Path) -> set[str]:
    """sha256s of the file's earlier versions that differed from it in meta only (:data:`META_EDITED_FROM`)."""
    return set(read_meta(path).get(META_EDITED_FROM, []))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's contents (a checkpoint's weights and meta, not its name)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_blob(path: str | Path, fmt: str, version: int, kind: str) -> dict[str, Any]:
    """Read a file written by :func:`write_blob` whose ``format`` entry must be ``fmt`` at ``version``.

    Loads with ``torch.load(weights_only=True)``: only tensors and plain containers are
    rebuilt, code in the file is never executed. ``kind`` names the format in messages
    (e.g. ``"ephw checkpoint"``).

    Raises:
        CheckpointError: (one line) the file is missing, unreadable (truncated, corrupt,
            foreign pickle), has another or no ``format``, or another ``version``.
    """
    path = resolve_model(path)
    blob = _load_any(path)
    found = blob.get("format") if isinstance(blob, dict) else None
    if not isinstance(found, str):
        raise CheckpointError(f"{path} is not an {kind} (it has no format={fmt!r} entry)")
    if found != fmt:
        raise CheckpointError(f"{path} is not an {kind}: its format is {found!r}, expected {fmt!r}")
    if blob.get("version") != version:
        raise CheckpointError(f"{path} has checkpoint version {blob.get('version')!r}; this ephw reads {version}")
    state = blob.get("state_dict")
    if isinstance(state, dict):
        bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise CheckpointError(
                f"{path} holds non-finite (NaN or infinite) weights in {', '.join(bad[:3])}"
                f"{' ...' if len(bad) > 3 else ''}: a diverged or damaged run, use an earlier checkpoint"
            )
    return blob


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically; returns the path."""
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "config": ckpt.config.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "meta": json.dumps(ckpt.meta, sort_keys=True),
    }
    if ckpt.training is not None:
        blob["training"] = ckpt.training
    return write_blob(path, blob)


def save_model(path: str | Path, net: EnergyModel, meta: dict[str, Any] | None = None) -> Path:
    """Save a model's weights and architecture."""
    return save_checkpoint(path, Checkpoint(net.config, net.state_dict(), dict(meta or {})))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint, raising :class:`CheckpointError` with a one-line reason on any problem."""
    blob = read_blob(path, FORMAT, VERSION, "ephw checkpoint")
    try:
        config = ModelConfig.from_dict(json.loads(blob["config"]))
        state = blob["state_dict"]
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{path} is a damaged ephw checkpoint: {exc}") from None
    return Checkpoint(config, state, parse_meta(blob, path), blob.get("training"), resolve_model(path))
