"""Backend registry: names -> backend classes (as torchdiffeq's ``SOLVERS``)."""

from __future__ import annotations

from typing import Any

from ephw.backends.base import Backend
from ephw.errors import BackendError

BACKENDS: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator/function adding a backend under ``cls.name``."""
    if cls.name in BACKENDS and BACKENDS[cls.name] is not cls:
        raise BackendError(f"backend name {cls.name!r} is already registered by {BACKENDS[cls.name].__name__}")
    BACKENDS[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    return list(BACKENDS)


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
    try:
        return cls(**options)
    except TypeError as exc:
        raise BackendError(f"invalid options for backend {backend!r}: {exc}") from None
