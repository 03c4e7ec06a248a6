"""Mixed-precision settling: iterate in bfloat16/float16, polish in the model's precision.

Low-precision states cannot meet a tight ``tol``: bfloat16 resolves states in ``[0, 1]``
to ~2^-9, so its residual stalls near 1e-2 (float16 near 1e-3). The cheap iterations run
on a low-precision copy of the model until each sample's residual is below ``low_tol`` or
stationary (the plateau rule of :class:`~ephw.backends.base.IterativeBackend`); the same
backend then continues from those states in the model's own precision (float32) until
``tol`` holds there. Reported states, residuals and convergence are the fp32 ones; the
step counts and traces are those of both phases, low precision first.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch
from torch import Tensor

from ephw.backends.base import Backend, IterativeBackend, SettleResult
from ephw.errors import BackendError
from ephw.model import EnergyModel

LOW_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: default residual at which the low-precision phase hands over (per dtype)
LOW_TOL = {torch.bfloat16: 2e-2, torch.float16: 2e-3}


class MixedPrecision(Backend):
    """Wraps an iterative backend: low-precision phase, then a polish in the model's precision.

    Args:
        inner: the backend doing both phases.
        dtype: ``"bfloat16"`` or ``"float16"`` (CPU: bfloat16 has native kernels on AVX-512-BF16;
            CUDA: both).
        low_tol: residual at which a sample leaves the low-precision phase (default per dtype).
        plateau_window: the low phase also stops a sample whose residual has stopped falling
            over this many steps.
    """

    def __init__(self, inner: Backend, dtype: str, low_tol: float | None = None, plateau_window: int = 4) -> None:
        if not isinstance(inner, IterativeBackend):
            raise BackendError(f"dtype={dtype!r} needs an iterative backend, not {inner.name!r}")
        if dtype not in LOW_DTYPES:
            raise BackendError(f"dtype must be one of {', '.join(LOW_DTYPES)}, got {dtype!r}")
        self.inner = inner
        self.dtype = dtype
        self.low_tol = LOW_TOL[LOW_DTYPES[dtype]] if low_tol is None else float(low_tol)
        self.plateau_window = int(plateau_window)
        self._low_inner = copy.copy(inner)
        self._low_inner.plateau_window = self.plateau_window
        self._cache: tuple[int, EnergyModel] | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.inner.name}@{self.dtype}"

    def low_model(self, net: EnergyModel) -> EnergyModel:
        """A copy of ``net`` in the low dtype (kept while ``net``'s weights are unchanged)."""
        key = hash((id(net), *(p._version for p in net.parameters())))
        if self._cache is None or self._cache[0] != key:
            low = copy.deepcopy(net).to(LOW_DTYPES[self.dtype])
            self._cache = (key, low)
        return self._cache[1]

    def settle(
        self,
        net: EnergyModel,
        x: Tensor,
        *,
        steps: int,
        tol: float | None,
        beta: float = 0.0,
        target: Tensor | None = None,
        init: Sequence[Tensor] | None = None,
    ) -> SettleResult:
        start = time.perf_counter()
        dt = LOW_DTYPES[self.dtype]
        low = self.low_model(net)
        t_low = target.to(dt) if target is not None and target.is_floating_point() else target
        init_low = None if init is None else [s.to(dt) for s in init]
        with torch.autocast(x.device.type, enabled=False):
            lo = self._low_inner.settle(
                low, x.to(dt), steps=steps, tol=max(self.low_tol, tol or 0.0), beta=beta, target=t_low, init=init_low
            )
            hi = self.inner.settle(
                net, x, steps=steps, tol=tol, beta=beta, target=target, init=[s.to(x.dtype) for s in lo.states]
            )
        return SettleResult(
            states=hi.states,
            logits=hi.logits,
            steps=lo.steps + hi.steps,
            steps_per_sample=lo.steps_per_sample + hi.steps_per_sample,
            converged=hi.converged,
            residuals=torch.cat([lo.residuals.to(hi.residuals.dtype), hi.residuals]),
            energies=torch.cat([lo.energies[:-1].to(hi.energies.dtype), hi.energies]),
            backend=self.name,
            seconds=time.perf_counter() - start,
        )
