"""CIFAR-10 / CIFAR-100 readers: standard pickle folder, image-folder tree, ``.tar.gz`` of a tree.

Every reader returns both splits as :class:`~ephw.data.imageset.DecodedSplits`: ``uint8``
images ``(N, 3, 32, 32)`` (RGB, 0..255) and ``int64`` labels ``(N,)``. For image trees the
classes are the sub-folder names sorted alphabetically (for CIFAR-10 that is the standard
order airplane=0 … truck=9) and the images of a split are ordered by their path.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ephw.data.cache import load_or_decode
from ephw.data.imageset import SPLITS, DecodedSplits, ImageSet
from ephw.data.safe_pickle import restricted_load, restricted_loads
from ephw.data.sources import CIFAR_LAYOUTS, CifarLayout, DataSource, missing_hint, resolve_root
from ephw.errors import DataError

IMAGE_SIZE = 32
"""Height and width (pixels) every CIFAR image must have."""

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")

# (sort key, class name, (32, 32, 3) uint8 RGB array) for one decoded image
_Entry = tuple[str, str, np.ndarray]


def load_cifar(name: str, split: str, root: str | os.PathLike[str] | None = None) -> ImageSet:
    """Split ``split`` of ``name`` (``"cifar10"``/``"cifar100"``) as a ``uint8`` ImageSet.

    The data is located with :func:`~ephw.data.sources.resolve_root`, decoded once (both
    splits) and kept in the on-disk cache (:mod:`ephw.data.cache`); later calls load the cache.
    """
    source = resolve_root(name, root)
    decoded = load_or_decode(name, source.path, (split,), lambda: decode_source(name, source))
    return decoded.to_imageset(name, split)


def decode_source(name: str, source: DataSource) -> DecodedSplits:
    """Decode both splits of ``name`` from ``source`` (no cache)."""
    layout = CIFAR_LAYOUTS[name]
    if source.kind == "pickle":
        return read_pickle_dir(layout, source.path)
    if source.kind == "tree":
        return read_image_tree(source.path, name)
    if source.kind == "tar":
        return read_tarball(layout, source.path)
    raise ValueError(f"unknown data source kind {source.kind!r}")


# ----------------------------------------------------------------------------- pickle folder


def read_pickle_dir(layout: CifarLayout, folder: Path) -> DecodedSplits:
    """Read the standard python folder (``cifar-10-batches-py/`` or ``cifar-100-python/``)."""

    def load(file_name: str) -> Any:
        path = folder / file_name
        try:
            with open(path, "rb") as f:
                return restricted_load(f)
        except FileNotFoundError:
            raise DataError(f"{layout.name} file {path} is missing: {missing_hint(layout.name)}") from None
        except Exception as exc:  # any unpickling failure means an unreadable file
            raise DataError(f"cannot read {layout.name} file {path}: {exc}") from None

    return _assemble_pickles(layout, load, str(folder))


def _assemble_pickles(layout: CifarLayout, load: Any, where: str) -> DecodedSplits:
    """Build :class:`DecodedSplits` from the unpickled files; ``load(file_name)`` gives one."""
    meta = load(layout.meta_file)
    names = _dict_get(meta, layout.names_key, f"{where}/{layout.meta_file}")
    classes = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, files in (("train", layout.train_files), ("test", layout.test_files)):
        images, labels = [], []
        for file_name in files:
            what = f"{where}/{file_name}"
            batch = load(file_name)
            data = np.asarray(_dict_get(batch, "data", what))
            batch_labels = np.asarray(_dict_get(batch, layout.labels_key, what), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE**2:
                raise DataError(
                    f"{layout.name} file {what} is corrupt: 'data' is {data.dtype} "
                    f"{data.shape}, expected uint8 (N, {3 * IMAGE_SIZE**2})"
                )
            if batch_labels.shape != (data.shape[0],):
                raise DataError(
                    f"{layout.name} file {what} is corrupt: {data.shape[0]} images but {batch_labels.size} labels"
                )
            images.append(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
            labels.append(batch_labels)
        all_labels = np.concatenate(labels)
        if all_labels.size and (all_labels.min() < 0 or all_labels.max() >= len(classes)):
            raise DataError(f"{layout.name} files in {where} are corrupt: labels outside 0..{len(classes) - 1}")
        splits[split] = (np.ascontiguousarray(np.concatenate(images)), all_labels)
    return DecodedSplits(splits=splits, classes=classes)


def _dict_get(obj: Any, key: str, what: str) -> Any:
    """``obj[key]`` for a dict keyed by ``bytes`` (Python 2 pickles) or ``str``."""
    if isinstance(obj, dict):
        for k in (key.encode("ascii"), key):
            if k in obj:
                return obj[k]
    raise DataError(f"cannot read {what}: not a CIFAR pickle (no '{key}' entry)")


# ----------------------------------------------------------------------------- image tree


def read_image_tree(folder: Path, name: str = "cifar") -> DecodedSplits:
    """Read ``folder/train/<class>/*.jpg|*.png`` and ``folder/test/<class>/*.jpg|*.png``."""
    files: list[tuple[str, Path]] = []
    for split in SPLITS:
        split_dir = folder / split
        if not split_dir.is_dir():
            raise DataError(f"{name} folder {folder} has no '{split}/' folder: {missing_hint_any(name)}")
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for path in sorted(class_dir.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                    files.append((split, path))
    entries: dict[str, list[_Entry]] = {split: [] for split in SPLITS}
    for split, path in tqdm(files, desc=f"decoding {name} images", unit="img", file=sys.stderr):
        rel = path.relative_to(folder / split).as_posix()
        entries[split].append((rel, path.parent.name, decode_image(path.read_bytes(), str(path))))
    return assemble_tree(entries, str(folder), name)


def missing_hint_any(name: str) -> str:
    """:func:`missing_hint` for CIFAR names, a generic instruction otherwise."""
    if name in CIFAR_LAYOUTS:
        return missing_hint(name)
    return "expected 'train/<class>/*.jpg' and 'test/<class>/*.jpg'"


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode one JPEG/PNG (bytes) to a ``(32, 32, 3)`` ``uint8`` RGB array."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (IMAGE_SIZE, IMAGE_SIZE):
                w, h = img.size
                raise DataError(
                    f"image {where} is {w}x{h} pixels; CIFAR images must be "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE}: resize it or remove it"
                )
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"cannot decode image {where}: {exc}") from None


def assemble_tree(entries: dict[str, list[_Entry]], where: str, name: str) -> DecodedSplits:
    """Stack decoded tree images into :class:`DecodedSplits`; classes sorted alphabetically."""
    for split in SPLITS:
        if not entries[split]:
            raise DataError(f"{name} source {where} has no {split} images: expected '{split}/<class>/*.jpg' or '*.png'")
    classes = tuple(sorted({cls for split in SPLITS for _, cls, _ in entries[split]}))
    index = {cls: k for k, cls in enumerate(classes)}
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        items = sorted(entries[split], key=lambda e: e[0])
        images = np.stack([arr for _, _, arr in items]).transpose(0, 3, 1, 2)
        labels = np.fromiter((index[cls] for _, cls, _ in items), dtype=np.int64, count=len(items))
        splits[split] = (np.ascontiguousarray(images), labels)
    return DecodedSplits(splits=splits, classes=classes)


# ----------------------------------------------------------------------------- tarball


class _ProgressReader:
    """Read-only file wrapper that advances a tqdm bar by the (compressed) bytes read."""

    def __init__(self, raw: BinaryIO, bar: tqdm) -> None:
        self._raw = raw
        self._bar = bar
        self.name = getattr(raw, "name", None)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._bar.update(len(data))
        return data


def read_tarball(layout: CifarLayout, path: Path) -> DecodedSplits:
    """Read a ``.tar.gz`` in one sequential pass, without extracting to disk.

    Members ``[top/]train/<class>/<file>.jpg|.png`` and ``[top/]test/<class>/...`` are decoded
    from memory (any leading folders are ignored). A tarball holding the standard pickle folder
    (e.g. the official ``cifar-10-python.tar.gz``) is read too. Shows a tqdm bar on stderr.
    """
    entries: dict[str, list[_Entry]] = {split: [] for split in SPLITS}
    pickles: dict[str, bytes] = {}
    pickle_names = set(layout.pickle_files)
    size = path.stat().st_size
    try:
        with (
            open(path, "rb") as raw,
            tqdm(
                total=size,
                desc=f"decoding {path.name}",
                unit="B",
                unit_scale=True,
                file=sys.stderr,
            ) as bar,
            tarfile.open(fileobj=_ProgressReader(raw, bar), mode="r|gz") as tar,  # type: ignore
        ):
            for member in tar:
                if not member.isfile():
                    continue
                parts = PurePosixPath(member.name).parts
                if len(parts) >= 2 and parts[-2] == layout.pickle_dir and parts[-1] in pickle_names:
                    pickles[parts[-1]] = _read_member(tar, member)
                    continue
                if (
                    len(parts) < 3
                    or parts[-3] not in SPLITS
                    or parts[-1].startswith(".")
                    or PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES
                ):
                    continue
                split, cls = parts[-3], parts[-2]
                where = f"{path}:{member.name}"
                image = decode_image(_read_member(tar, member), where)
                entries[split].append((f"{cls}/{parts[-1]}", cls, image))
    except DataError:
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read {layout.name} tarball {path}: {exc}") from None

    if not entries["train"] and not entries["test"] and pickles:
        missing = pickle_names - pickles.keys()
        if missing:
            raise DataError(
                f"{layout.name} tarball {path} lacks {', '.join(sorted(missing))} in "
                f"'{layout.pickle_dir}/': {missing_hint(layout.name)}"
            )
        return _assemble_pickles(layout, lambda file_name: _unpickle_bytes(layout, pickles, file_name, path), str(path))
    if not entries["train"] and not entries["test"]:
        raise DataError(
            f"{layout.name} tarball {path} holds no 'train/<class>/*.jpg' or 'test/<class>/*.jpg' "
            f"images: {missing_hint(layout.name)}"
        )
    return assemble_tree(entries, str(path), layout.name)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:  # pragma: no cover - regular files always have data
        raise DataError(f"cannot read tar member {member.name}")
    return f.read()


def _unpickle_bytes(layout: CifarLayout, pickles: dict[str, bytes], file_name: str, path: Path) -> Any:
    try:
        return restricted_loads(pickles[file_name])
    except Exception as exc:
        raise DataError(f"cannot read {layout.name} file {path}:{file_name}: {exc}") from None
