"""Make ``lava-nc`` 0.10.0 importable on Python 3.11.

lava-nc 0.10.0 declares ``Requires-Python <3.11``. The one failure we found on 3.11 is
at import: ``lava/magma/compiler/var_model.py`` gives eight dataclass fields an
instance default (``x: ByteEncoder = ByteEncoder()``); since Python 3.11 ``dataclasses``
rejects unhashable instance defaults (``ValueError: mutable default ... ByteEncoder``).

Instead of copying lava's code, :func:`install` registers an import hook that loads
exactly that module from lava's own source with those defaults rewritten to
``field(default_factory=ByteEncoder)`` -- the behaviour lava has on Python 3.10, where
the shared instance was accepted.

A second repair (not 3.11-specific): ``lava/magma/runtime/message_infrastructure/
multiprocessing.py`` calls ``multiprocessing.set_start_method('fork')`` at import, which
raises ``RuntimeError: context has already been set`` once anything in the process has
fixed the start method (even by asking ``get_start_method()``), although the method is
``fork`` already. The hook makes that call conditional: lava still sets ``fork`` when
nothing was chosen and still fails loudly if another method was chosen.

Every other module is imported untouched. The hook is installed when :mod:`ephw.lava`
backends are imported; docs/lava.md lists the repairs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from types import ModuleType

PATCHED_MODULE = "lava.magma.compiler.var_model"
START_METHOD_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"
_SET_FORK = "    mp.set_start_method('fork')\n"
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


def patch_start_method(source: str) -> str:
    """lava's message-infrastructure module with its ``set_start_method('fork')`` made conditional."""
    if source.count(_SET_FORK) != 1:
        raise RuntimeError(f"ephw's lava-nc repair does not recognise {START_METHOD_MODULE}; lava-nc 0.10.0 expected")
    return source.replace(
        _SET_FORK, "    if mp.get_start_method(allow_none=True) != 'fork': mp.set_start_method('fork')\n", 1
    )


PATCHES = {PATCHED_MODULE: patch_source, START_METHOD_MODULE: patch_start_method}


class _PatchingLoader(importlib.abc.SourceLoader):
    def __init__(self, fullname: str, path: str) -> None:
        self.fullname, self.path = fullname, path

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            data = fh.read()
        if path == self.path:
            return PATCHES[self.fullname](data.decode("utf-8")).encode("utf-8")
        return data

    def path_stats(self, path: str) -> dict:  # no .pyc for the rewritten module
        raise OSError("no bytecode cache for the patched module")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: ModuleType | None = None) -> object:
        if fullname not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=_PatchingLoader(fullname, spec.origin)
        )


def install() -> None:
    """Register the import hook (idempotent)."""
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    if all(name in sys.modules for name in PATCHES):
        return  # already imported (only possible if they imported fine)
    sys.meta_path.insert(0, _Finder())


def installed() -> bool:
    return any(isinstance(f, _Finder) for f in sys.meta_path)
