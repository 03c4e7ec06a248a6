"""Make ``lava-nc`` 0.10.0 importable on Python 3.11.

lava-nc 0.10.0 declares ``Requires-Python <3.11``. The one failure we found on 3.11 is
at import: ``lava/magma/compiler/var_model.py`` gives eight dataclass fields an
instance default (``x: ByteEncoder = ByteEncoder()``); since Python 3.11 ``dataclasses``
rejects unhashable instance defaults (``ValueError: mutable default ... ByteEncoder``).

Instead of copying lava's code, :func:`install` registers an import hook that loads
exactly that module from lava's own source with those defaults rewritten to
``field(default_factory=ByteEncoder)`` -- the behaviour lava has on Python 3.10, where
the shared instance was accepted. Every other module is imported untouched. The hook is
installed when :mod:`ephw.lava` backends are imported; docs/lava.md lists the repairs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from types import ModuleType

PATCHED_MODULE = "lava.magma.compiler.var_model"
_DEFAULT = re.compile(r"^([ \t]+\w+[ \t]*:[ \t]*ByteEncoder[ \t]*)=[ \t]*ByteEncoder\(\)[ \t]*$", re.MULTILINE)


def patch_source(source: str) -> str:
    """``var_model.py`` with its ``ByteEncoder()`` field defaults turned into default factories.

    Raises ``RuntimeError`` if the source no longer has the expected shape (another lava
    version), so a silent half-repair is impossible.
    """
    patched, count = _DEFAULT.subn(r"\1= field(default_factory=ByteEncoder)", source)
    if count == 0 or "from dataclasses import dataclass" not in patched:
        raise RuntimeError(f"ephw's lava-nc 3.11 repair does not recognise {PATCHED_MODULE}; lava-nc 0.10.0 expected")
    return patched.replace("from dataclasses import dataclass", "from dataclasses import field, dataclass", 1)


class _PatchingLoader(importlib.abc.SourceLoader):
    def __init__(self, fullname: str, path: str) -> None:
        self.fullname, self.path = fullname, path

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            data = fh.read()
        if path == self.path:
            return patch_source(data.decode("utf-8")).encode("utf-8")
        return data

    def path_stats(self, path: str) -> dict:  # no .pyc for the rewritten module
        raise OSError("no bytecode cache for the patched module")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: ModuleType | None = None) -> object:
        if fullname != PATCHED_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=_PatchingLoader(fullname, spec.origin)
        )


def install() -> None:
    """Register the import hook (idempotent). Needed only on Python >= 3.11."""
    if sys.version_info < (3, 11) or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    if PATCHED_MODULE in sys.modules:
        return  # already imported (only possible if it imported fine, e.g. a fixed lava)
    sys.meta_path.insert(0, _Finder())


def installed() -> bool:
    return any(isinstance(f, _Finder) for f in sys.meta_path)
