"""Locating CIFAR data on disk: which folder or file holds a dataset, and in which layout.

Three layouts are recognised for ``cifar10`` and ``cifar100``:

* ``"pickle"`` — the standard python folder (``cifar-10-batches-py/`` or ``cifar-100-python/``);
* ``"tree"`` — an image-folder tree ``train/<class>/*.jpg|*.png`` + ``test/<class>/*.jpg|*.png``;
* ``"tar"`` — a ``.tar.gz`` holding such a tree (or the standard pickle folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ephw.errors import DataError

TAR_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz")


@dataclass(frozen=True)
class CifarLayout:
    """Names that identify one CIFAR dataset on disk.

    Attributes:
        name: dataset name (``"cifar10"`` or ``"cifar100"``).
        pickle_dir: name of the standard python folder.
        pickle_files: files that must all be present inside ``pickle_dir``.
        train_files: pickle files of the train split, in order.
        test_files: pickle files of the test split.
        meta_file: pickle file holding the class names.
        labels_key: key of the label list in each batch dict.
        names_key: key of the class-name list in the meta dict.
        tar_globs: file-name patterns of a tarball holding the dataset.
        tar_exclude_globs: patterns excluded from ``tar_globs`` (``cifar10*`` also matches
            ``cifar100*``).
        tree_dirs: sub-folder names that may hold a ``train/`` + ``test/`` tree.
        example_tar: tarball name used in error messages.
    """

    name: str
    pickle_dir: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    labels_key: str
    names_key: str
    tar_globs: tuple[str, ...]
    tar_exclude_globs: tuple[str, ...]
    tree_dirs: tuple[str, ...]
    example_tar: str

    @property
    def pickle_files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


CIFAR_LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        name="cifar10",
        pickle_dir="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{k}" for k in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        labels_key="labels",
        names_key="label_names",
        tar_globs=("cifar10*.tar.gz", "cifar-10*.tar.gz", "cifar10*.tgz", "cifar-10*.tgz"),
        tar_exclude_globs=("cifar100*", "cifar-100*"),
        tree_dirs=("cifar10", "cifar-10"),
        example_tar="cifar10-jpeg.tar.gz",
    ),
    "cifar100": CifarLayout(
        name="cifar100",
        pickle_dir="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        labels_key="fine_labels",
        names_key="fine_label_names",
        tar_globs=("cifar100*.tar.gz", "cifar-100*.tar.gz", "cifar100*.tgz", "cifar-100*.tgz"),
        tar_exclude_globs=(),
        tree_dirs=("cifar100", "cifar-100"),
        example_tar="cifar100-jpeg.tar.gz",
    ),
}


@dataclass(frozen=True)
class DataSource:
    """Where a dataset lives: ``kind`` is ``"pickle"``, ``"tree"`` or ``"tar"``; ``path`` is the
    pickle folder, the folder holding ``train/`` and ``test/``, or the tarball (resolved)."""

    kind: str
    path: Path


def default_search_dirs() -> list[Path]:
    """Folders searched when no root is given, in order.

    ``$EPHW_DATA`` (if set), ``./data``, the ``shared/data`` folder next to the repository
    clone, and ``../shared/data`` relative to the working directory.
    """
    dirs: list[Path] = []
    env = os.environ.get("EPHW_DATA")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path.cwd() / "data")
    # ephw/data/sources.py -> parents[3] is the folder the repository is cloned into.
    dirs.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    dirs.append(Path.cwd().parent / "shared" / "data")
    return dirs


def missing_hint(name: str) -> str:
    """The one-line instruction saying which files to put where for dataset ``name``."""
    layout = CIFAR_LAYOUTS[name]
    return (
        f"put the standard '{layout.pickle_dir}/' folder, a 'train/<class>/*.jpg' + "
        f"'test/<class>/*.jpg' tree, or '{layout.example_tar}' in --data-root DIR "
        f"(or $EPHW_DATA, ./data)"
    )


def resolve_root(name: str, root: str | os.PathLike[str] | None = None) -> DataSource:
    """Find dataset ``name`` (``"cifar10"`` or ``"cifar100"``).

    ``root`` may be a folder containing the pickle folder, the pickle folder itself, a folder
    containing ``train/`` and ``test/`` (directly or in a ``cifar10/``-style sub-folder), a
    folder containing a matching ``*.tar.gz``, or the ``.tar.gz`` file itself. Without ``root``
    the folders of :func:`default_search_dirs` are tried in order.

    Raises:
        DataError: nothing usable was found; the message lists the places searched.
    """
    layout = CIFAR_LAYOUTS[name]
    if root is not None:
        path = Path(root).expanduser()
        if not path.exists():
            raise DataError(f"{name} data root {path} does not exist: {missing_hint(name)}")
        if path.is_file():
            if path.name.lower().endswith(TAR_SUFFIXES):
                return DataSource("tar", path.resolve())
            raise DataError(f"{name} data root {path} is a file but not a .tar.gz: {missing_hint(name)}")
        found = find_in_dir(layout, path)
        if found is None:
            raise DataError(f"{name} not found in {path}: {missing_hint(name)}")
        return found

    searched: list[str] = []
    if not os.environ.get("EPHW_DATA"):
        searched.append("$EPHW_DATA (unset)")
    seen: set[Path] = set()
    for folder in default_search_dirs():
        folder = folder.resolve()
        if folder in seen:
            continue
        seen.add(folder)
        if not folder.is_dir():
            searched.append(f"{folder} (missing)")
            continue
        searched.append(str(folder))
        found = find_in_dir(layout, folder)
        if found is not None:
            return found
    raise DataError(f"{name} not found: {missing_hint(name)}; searched: {', '.join(searched)}")


def find_in_dir(layout: CifarLayout, folder: Path) -> DataSource | None:
    """The dataset inside ``folder`` or ``None``; preference: pickle folder, tree, tarball."""
    for candidate in (folder, folder / layout.pickle_dir):
        if is_pickle_dir(layout, candidate):
            return DataSource("pickle", candidate.resolve())
    for candidate in (folder, *(folder / sub for sub in layout.tree_dirs)):
        if is_image_tree(candidate):
            return DataSource("tree", candidate.resolve())
    tarballs = sorted(
        {
            p
            for pattern in layout.tar_globs
            for p in folder.glob(pattern)
            if p.is_file() and not any(p.match(ex) for ex in layout.tar_exclude_globs)
        }
    )
    if tarballs:
        return DataSource("tar", tarballs[0].resolve())
    return None


def is_pickle_dir(layout: CifarLayout, folder: Path) -> bool:
    """Whether ``folder`` holds every file of the standard python layout."""
    return folder.is_dir() and all((folder / f).is_file() for f in layout.pickle_files)


def is_image_tree(folder: Path) -> bool:
    """Whether ``folder`` has both ``train/`` and ``test/`` sub-folders."""
    return (folder / "train").is_dir() and (folder / "test").is_dir()
