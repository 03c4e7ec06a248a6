"""Backend registry: names -> backend classes (as torchdiffeq's ``SOLVERS``).

The registry holds the built-in backends (registered by :mod:`ephw.backends`) and the
backends that installed distributions declare in the ``ephw.backends`` entry-point group
(``[project.entry-points."ephw.backends"] NAME = "module:BackendClass"``; the contract:
``backends/README.md``). Plugins are discovered once, on the first look at the registry
(:data:`BACKENDS`, :func:`backend_names`, :func:`get_backend`); a plugin that fails to load
costs one warning line on stderr and is left out.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from dataclasses import dataclass
from typing import Any

from ephw.backends.base import Backend
from ephw.errors import BackendError

#: Entry-point group in which distributions register backends.
ENTRY_POINT_GROUP = "ephw.backends"
#: ``origin`` of the backends that ship with ephw.
BUILTIN = "built-in"


@dataclass(frozen=True)
class BackendInfo:
    """Where a registered backend comes from (``ephw backends``).

    Attributes:
        name: the registry name.
        origin: ``"built-in"``, or the name of the distribution whose entry point registered it.
        version: version of ephw (built-ins) or of that distribution.
        nudging: whether the backend settles nudged phases (``beta != 0``), i.e. can train with EP
            (the class attribute ``nudging``, default true).
        description: the class's one-line ``description``.
    """

    name: str
    origin: str
    version: str
    nudging: bool
    description: str


class BackendRegistry(dict[str, type[Backend]]):
    """The name -> class dict of built-ins, completed by the entry-point plugins on its first read.

    Every read (``[]``, ``in``, iteration, ``len``, ``keys/values/items``, ``get``) first runs
    :meth:`discover` (once per process); writes go straight to the dict (:func:`register`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.origins: dict[str, BackendInfo] = {}
        self.discovered = False
        self.failed: dict[str, str] = {}

    def discover(self, refresh: bool = False) -> None:
        """Load the ``ephw.backends`` entry points (once; ``refresh`` drops the plugins and reloads them).

        A plugin that cannot be imported, is not a :class:`Backend` subclass, whose ``name``
        differs from its entry-point name, or that takes an existing name is skipped with one
        ``ephw: warning: ...`` line on stderr; it never stops the command.
        """
        if refresh:
            for name, info in list(self.origins.items()):
                if info.origin != BUILTIN:
                    dict.pop(self, name, None)
                    del self.origins[name]
            self.failed.clear()
            self.discovered = False
        if self.discovered:
            return
        self.discovered = True  # before loading: a plugin that reads the registry must not recurse
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            origin = dist.name if dist is not None else ep.value.partition(":")[0]
            version = dist.version if dist is not None else "unknown"
            try:
                cls = ep.load()
                if not (isinstance(cls, type) and issubclass(cls, Backend)):
                    raise BackendError(f"{ep.value} is not an ephw.backends.Backend subclass")
                if getattr(cls, "name", None) != ep.name:
                    raise BackendError(f"{ep.value}.name is {getattr(cls, 'name', None)!r}, not {ep.name!r}")
                if dict.__contains__(self, ep.name):
                    raise BackendError(f"name {ep.name!r} is already taken by {self.origins[ep.name].origin}")
            except Exception as exc:  # noqa: BLE001 - any failure of a third-party import is one warning
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())
                self.failed[ep.name] = reason
                print(
                    f"ephw: warning: backend plugin {ep.name!r} ({origin}) not loaded: {reason}",
                    file=sys.stderr,
                )
                continue
            dict.__setitem__(self, ep.name, cls)
            self.origins[ep.name] = _info(cls, origin, version)

    def info(self) -> list[BackendInfo]:
        """One :class:`BackendInfo` per registered backend, in registry order."""
        return [self.origins[name] for name in self]

    def __getitem__(self, name: str) -> type[Backend]:
        self.discover()
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self.discover()
        return super().__iter__()

    def __len__(self) -> int:
        self.discover()
        return super().__len__()

    def keys(self) -> KeysView[str]:
        self.discover()
        return super().keys()

    def values(self) -> ValuesView[type[Backend]]:
        self.discover()
        return super().values()

    def items(self) -> ItemsView[str, type[Backend]]:
        self.discover()
        return super().items()

    def get(self, name: str, default: Any = None) -> Any:
        self.discover()
        return super().get(name, default)

    def __repr__(self) -> str:
        self.discover()
        return super().__repr__()


def _info(cls: type[Backend], origin: str, version: str) -> BackendInfo:
    return BackendInfo(
        name=cls.name,
        origin=origin,
        version=version,
        nudging=bool(getattr(cls, "nudging", True)),
        description=getattr(cls, "description", ""),
    )


BACKENDS: BackendRegistry = BackendRegistry()


def register(cls: type[Backend], origin: str = BUILTIN, version: str | None = None) -> type[Backend]:
    """Class decorator/function adding a backend under ``cls.name`` (``origin``: built-in or a distribution)."""
    current = dict.get(BACKENDS, cls.name)
    if current is not None and current is not cls:
        raise BackendError(f"backend name {cls.name!r} is already registered by {current.__name__}")
    dict.__setitem__(BACKENDS, cls.name, cls)
    BACKENDS.origins[cls.name] = _info(cls, origin, version or _ephw_version())
    return cls


def _ephw_version() -> str:
    try:
        return importlib.metadata.version("ephw")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def backend_names() -> list[str]:
    """Names of the built-in and the discovered plugin backends, built-ins first."""
    return list(BACKENDS)


def backend_info() -> list[BackendInfo]:
    """Name, origin, version and nudging support of every registered backend (``ephw backends``)."""
    return BACKENDS.info()


def get_backend(backend: str | Backend, dtype: str | None = None, **options: Any) -> Backend:
    """A backend instance from a registered name (options go to its constructor) or an instance.

    ``dtype="bfloat16"|"float16"`` wraps it in :class:`~ephw.backends.precision.MixedPrecision`
    (iterate in low precision, polish in the model's); ``None``/``"float32"``/``"float64"``: as is.
    """
    if dtype not in (None, "float32", "float64"):
        from ephw.backends.precision import MixedPrecision  # imports this module

        return MixedPrecision(get_backend(backend, **options), dtype)
    if isinstance(backend, Backend):
        if options:
            raise BackendError(f"options {sorted(options)} given together with a ready {backend.name!r} backend")
        return backend
    try:
        cls = BACKENDS[backend]
    except (KeyError, TypeError):
        raise BackendError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}") from None
    check_option_types(cls, backend, options)
    try:
        return cls(**options)
    except TypeError as exc:
        raise BackendError(f"invalid options for backend {backend!r}: {exc}") from None


#: Plain annotation words -> (accepted types, how a message names them). Options with other
#: annotations (paths, parameter objects) are left to the backend's own checks.
_PLAIN_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "float": ((int, float), "a number"),
    "int": ((int,), "an integer"),
    "bool": ((bool,), "true or false"),
    "str": ((str,), "a string"),
}


def check_option_types(cls: type[Backend], backend: str, options: dict[str, Any]) -> None:
    """Refuse (:class:`BackendError`, one line naming ``backend.option`` and the expected type) an option
    whose value does not fit the plain type (``float``, ``int``, ``bool``, ``str``, optionally ``| None``)
    the backend's constructor declares for it, e.g. ``--set euler.dt='"fast"'``."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return
    for name, value in options.items():
        param = params.get(name)
        if param is None or not isinstance(param.annotation, str):
            continue
        words = [w.strip() for w in param.annotation.split("|")]
        optional = "None" in words
        words = [w for w in words if w != "None"]
        if len(words) != 1 or words[0] not in _PLAIN_TYPES or (value is None and optional):
            continue
        accepted, what = _PLAIN_TYPES[words[0]]
        is_bool = isinstance(value, bool)
        if not isinstance(value, accepted) or (is_bool and words[0] != "bool"):
            raise BackendError(
                f"option {backend}.{name} must be {what}{' or null' if optional else ''}, "
                f"got {value!r} ({type(value).__name__})"
            )
