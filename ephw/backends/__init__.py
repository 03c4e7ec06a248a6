"""Backends: ways of settling an energy model, behind one ``settle`` function.

``BACKENDS`` maps names to classes; each backend lives in its own module.
"""

from ephw.backends.adaptive_sor import AdaptiveSOR
from ephw.backends.anderson import Anderson
from ephw.backends.asynchronous import SOR, Async
from ephw.backends.base import Backend, IterativeBackend, SettleResult
from ephw.backends.crossbar import Crossbar
from ephw.backends.euler import Euler
from ephw.backends.lava import Lava, LavaFixed
from ephw.backends.registry import BACKENDS, backend_names, get_backend, register
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
    "Crossbar",
    "Euler",
    "IterativeBackend",
    "Lava",
    "LavaFixed",
    "SOR",
    "SettleResult",
    "backend_names",
    "get_backend",
    "register",
    "settle",
]
