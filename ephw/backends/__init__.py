"""Backends: ways of settling an energy model, behind one ``settle`` function.

``BACKENDS`` maps names to classes; each built-in backend lives in its own module, and
third-party backends join through the ``ephw.backends`` entry-point group (``backends/README.md``).
"""

from ephw.backends.adaptive_sor import AdaptiveSOR
from ephw.backends.anderson import Anderson
from ephw.backends.asynchronous import SOR, Async
from ephw.backends.base import Backend, IterativeBackend, SettleResult
from ephw.backends.crossbar import Crossbar
from ephw.backends.euler import Euler
from ephw.backends.lava import Lava, LavaFixed
from ephw.backends.registry import (
    BACKENDS,
    ENTRY_POINT_GROUP,
    BackendInfo,
    backend_info,
    backend_names,
    get_backend,
    register,
)
from ephw.backends.settle import DEFAULT_STEPS, DEFAULT_TOL, settle

register(Euler)
register(Async)
register(SOR)
register(AdaptiveSOR)
register(Anderson)
register(Crossbar)
register(Lava)
register(LavaFixed)

__all__ = [
    "AdaptiveSOR",
    "Anderson",
    "BACKENDS",
    "DEFAULT_STEPS",
    "DEFAULT_TOL",
    "Async",
    "Backend",
    "BackendInfo",
    "ENTRY_POINT_GROUP",
    "Crossbar",
    "Euler",
    "IterativeBackend",
    "Lava",
    "LavaFixed",
    "SOR",
    "SettleResult",
    "backend_info",
    "backend_names",
    "get_backend",
    "register",
    "settle",
]
