"""``settle``: the one entry point that lets an energy model reach its fixed point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ephw.backends.base import Backend, SettleResult, check_settle_args
from ephw.backends.registry import get_backend
from ephw.model import EnergyModel

DEFAULT_STEPS = 500
DEFAULT_TOL = 1e-6


def settle(
    net: EnergyModel,
    x: Tensor,
    backend: str | Backend = "euler",
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    beta: float = 0.0,
    target: Tensor | None = None,
    init: Sequence[Tensor] | None = None,
    **options: Any,
) -> SettleResult:
    """Minimise the energy of ``net`` for images ``x`` on a backend.

    Args:
        net: the energy model.
        x: images ``(B, C, H, W)`` in ``[0, 1]``, same dtype/device as ``net``.
        backend: a registered name (``ephw.backends.backend_names()``) or a
            :class:`Backend` instance.
        steps: maximal number of steps.
        tol: stop once every sample's residual ``max |delta s|`` is below ``tol``;
            ``None`` runs exactly ``steps`` steps.
        beta: nudging strength (``0`` = free phase); needs ``target``.
        target: class indices ``(B,)`` or one-hot/probabilities ``(B, classes)``.
        init: initial states (e.g. a previous fixed point); default the null state.
        **options: constructor options of the named backend (e.g. ``dt=0.5``).

    Returns:
        A :class:`SettleResult` (states, steps, per-sample convergence, traces).
    """
    impl = get_backend(backend, **options)
    check_settle_args(net, x, steps, tol, beta, target, getattr(impl, "name", None))
    return impl.settle(net, x, steps=steps, tol=tol, beta=beta, target=target, init=init)
