"""On-disk cache of decoded datasets, so images are decoded once per source.

Layout: ``<cache dir>/<name>-<key>/`` holding ``<split>_images.npy`` (``uint8``
``(N, C, H, W)``), ``<split>_labels.npy`` (``int64`` ``(N,)``) for both splits and
``meta.json`` (classes, array shapes and file sizes). The cache dir is ``$EPHW_CACHE`` if set,
else ``~/.cache/ephw``; the key hashes the dataset name, the resolved source path, and the
source's size and modification time, so a changed source gets a fresh entry.

Every file is written to a temporary name and moved into place with :func:`os.replace`, and
``meta.json`` is written last, so a killed process never leaves an entry that looks complete.
An entry that fails to load or does not match its ``meta.json`` is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ephw.data.imageset import DecodedSplits
from ephw.outputs import atomic_write

CACHE_FORMAT = 1
"""Bumped whenever the stored layout changes; part of the key."""

META_FILE = "meta.json"

log = logging.getLogger(__name__)


class CorruptCacheError(Exception):
    """A cache entry exists but is unreadable or inconsistent."""


def cache_dir() -> Path:
    """``$EPHW_CACHE`` if set (and non-empty), else ``~/.cache/ephw``."""
    env = os.environ.get("EPHW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ephw"


def source_fingerprint(source: Path) -> tuple[int, int]:
    """``(size in bytes, latest mtime in ns)`` of a file, or summed/maxed over a folder tree."""
    st = source.stat()
    if not source.is_dir():
        return st.st_size, st.st_mtime_ns
    size, mtime = 0, st.st_mtime_ns
    for dirpath, _, filenames in os.walk(source):
        mtime = max(mtime, os.stat(dirpath).st_mtime_ns)
        for file_name in filenames:
            fst = os.stat(os.path.join(dirpath, file_name))
            size += fst.st_size
            mtime = max(mtime, fst.st_mtime_ns)
    return size, mtime


def cache_key(name: str, source: Path) -> str:
    """Hex digest identifying ``name`` decoded from ``source`` in its current state."""
    resolved = source.resolve()
    size, mtime = source_fingerprint(resolved)
    text = f"{CACHE_FORMAT}\0{name}\0{resolved}\0{size}\0{mtime}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def cache_entry(name: str, source: Path) -> Path:
    """Folder of the cache entry for ``name`` decoded from ``source``."""
    return cache_dir() / f"{name}-{cache_key(name, source)}"


def load_or_decode(
    name: str,
    source: Path,
    splits: Sequence[str],
    decode: Callable[[], DecodedSplits],
) -> DecodedSplits:
    """``splits`` of ``name`` from the cache, or from ``decode()`` (all splits) then cached.

    A corrupt entry is deleted and rebuilt; if the cache cannot be written the decoded data is
    still returned (with a logged warning).
    """
    entry = cache_entry(name, source)
    if (entry / META_FILE).is_file():
        try:
            return read_entry(entry, splits)
        except CorruptCacheError as exc:
            log.warning("ephw: cache %s is corrupt (%s); rebuilding it", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    decoded = decode()
    try:
        write_entry(entry, decoded, name=name, source=source)
    except OSError as exc:
        log.warning("ephw: could not write cache %s (%s); set $EPHW_CACHE to a writable folder", entry, exc)
    return DecodedSplits(splits={s: decoded.splits[s] for s in splits}, classes=decoded.classes)


def read_entry(entry: Path, splits: Sequence[str]) -> DecodedSplits:
    """Load ``splits`` from a cache entry, checking them against its ``meta.json``.

    Raises:
        CorruptCacheError: a file is missing, unreadable, or its size/shape/dtype is wrong.
    """
    try:
        meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        classes = tuple(str(c) for c in meta["classes"])
        result: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for split in splits:
            info = meta["splits"][split]
            count = int(info["count"])
            images = _load_array(entry, f"{split}_images.npy", info["images_bytes"])
            labels = _load_array(entry, f"{split}_labels.npy", info["labels_bytes"])
            if images.dtype != np.uint8 or images.shape != (count, *info["image_shape"]):
                raise CorruptCacheError(f"{split} images are {images.dtype} {images.shape}")
            if labels.dtype != np.int64 or labels.shape != (count,):
                raise CorruptCacheError(f"{split} labels are {labels.dtype} {labels.shape}")
            if count and (labels.min() < 0 or labels.max() >= len(classes)):
                raise CorruptCacheError(f"{split} labels outside 0..{len(classes) - 1}")
            result[split] = (images, labels)
    except CorruptCacheError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise CorruptCacheError(str(exc)) from None
    return DecodedSplits(splits=result, classes=classes)


def _load_array(entry: Path, file_name: str, expected_bytes: int) -> np.ndarray:
    path = entry / file_name
    actual = path.stat().st_size
    if actual != expected_bytes:
        raise CorruptCacheError(f"{file_name} has {actual} bytes, expected {expected_bytes}")
    return np.load(path, allow_pickle=False)


def write_entry(entry: Path, decoded: DecodedSplits, *, name: str, source: Path) -> None:
    """Write all splits of ``decoded`` into ``entry`` atomically (``meta.json`` last)."""
    entry.mkdir(parents=True, exist_ok=True)
    (entry / META_FILE).unlink(missing_ok=True)
    split_info: dict[str, dict[str, Any]] = {}
    for split, (images, labels) in decoded.splits.items():
        images_bytes = _atomic_write(entry / f"{split}_images.npy", lambda f, a=images: np.save(f, a))
        labels_bytes = _atomic_write(entry / f"{split}_labels.npy", lambda f, a=labels: np.save(f, a))
        split_info[split] = {
            "count": int(images.shape[0]),
            "image_shape": [int(d) for d in images.shape[1:]],
            "images_bytes": images_bytes,
            "labels_bytes": labels_bytes,
        }
    meta = {
        "format": CACHE_FORMAT,
        "name": name,
        "source": str(source.resolve()),
        "classes": list(decoded.classes),
        "splits": split_info,
    }
    text = json.dumps(meta, indent=1).encode("utf-8")
    _atomic_write(entry / META_FILE, lambda f: f.write(text))
    _remove_stale_entries(entry, name=name, source=meta["source"])


def _atomic_write(path: Path, write: Callable[[Any], object]) -> int:
    """:func:`ephw.outputs.atomic_write` of ``write(file)`` to ``path``; returns the file's size in bytes."""
    atomic_write(path, write)
    return path.stat().st_size


def _remove_stale_entries(current: Path, *, name: str, source: str) -> None:
    """Delete other entries of the same dataset and source (left behind when it changed)."""
    for other in current.parent.glob(f"{name}-*"):
        if other == current or not other.is_dir():
            continue
        try:
            meta = json.loads((other / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("name") == name and meta.get("source") == source:
            shutil.rmtree(other, ignore_errors=True)
