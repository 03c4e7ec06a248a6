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
    """

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None

    def model(self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> EnergyModel:
        return with_weights(EnergyModel(self.config), self.state_dict, dtype, device)


def with_weights(module: M, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, device: str | torch.device) -> M:
    """``module`` with ``state_dict`` loaded, moved to ``dtype``/``device``, in eval mode.

    Raises :class:`CheckpointError` (one line) if the weights do not fit the architecture.
    """
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"weights do not match the stored architecture: {first}") from None
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


def _load_any(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of ``path``; a missing or unreadable file is a one-line CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle refusing foreign objects, ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt or foreign): {reason}"
        ) from None


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
    return json.loads(_load_any(path).get("meta", "{}"))


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
    meta = json.loads(blob.get("meta", "{}"))
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
        meta = json.loads(blob.get("meta", "{}"))
        state = blob["state_dict"]
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{path} is a damaged ephw checkpoint: {exc}") from None
    return Checkpoint(config, state, meta, blob.get("training"))


def load_model(
    path: str | Path | None = None, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> nn.Module:
    """Load a model in eval mode: a checkpoint path or a shipped name (``ephw models``).

    ``None`` is the bundled digits EP-CNN. EP checkpoints give an :class:`EnergyModel`;
    feed-forward ones (students, BP-/Adv-CNNs, ResNet-18) the feed-forward module, which maps
    ``(B, C, H, W)`` images in [0, 1] to ``(B, classes)`` logits.
    """
    if path is not None and checkpoint_format(path).startswith("ephw.feedforward"):
        from ephw.feedforward.checkpoint import load_feedforward

        return load_feedforward(path, dtype, device)[0]
    ckpt = load_checkpoint(BUNDLED_MODEL if path is None else path)
    try:
        return ckpt.model(dtype, device)
    except CheckpointError as exc:
        raise CheckpointError(f"{path or BUNDLED_MODEL}: {exc}") from None
