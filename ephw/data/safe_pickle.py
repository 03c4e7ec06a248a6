"""A restricted unpickler for the standard CIFAR python files.

The CIFAR ``data_batch_*``/``test_batch``/``meta`` files are pickled dicts of lists, bytes and
numpy arrays. :class:`CifarUnpickler` resolves only the few globals those files need (numpy's
array reconstruction and plain builtin containers), so loading a file never imports or calls
anything else — a pickle that references e.g. ``os.system`` raises :class:`UnsafePickleError`.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # numpy arrays and dtypes (numpy 1.x and 2.x module names; protocol 2..5 paths)
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        # bytes written by Python 3 with protocol < 3
        ("_codecs", "encode"),
        # plain data types
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "str"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "complex"),
        ("builtins", "bool"),
        ("__builtin__", "set"),  # Python 2 spelling
        ("__builtin__", "frozenset"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside :data:`ALLOWED_GLOBALS`."""


class CifarUnpickler(pickle.Unpickler):
    """:class:`pickle.Unpickler` that resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refusing to load global {module}.{name}: not a numpy array or plain data")
        return super().find_class(module, name)


def restricted_load(file: BinaryIO) -> Any:
    """Unpickle one object from ``file`` with :class:`CifarUnpickler` and ``encoding="bytes"``
    (Python 2 ``str`` values, such as the CIFAR dict keys, come back as ``bytes``)."""
    return CifarUnpickler(file, encoding="bytes").load()


def restricted_loads(data: bytes) -> Any:
    """:func:`restricted_load` from an in-memory byte string."""
    return restricted_load(io.BytesIO(data))
