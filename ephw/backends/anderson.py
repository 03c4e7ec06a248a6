"""Safeguarded Anderson acceleration of the async sweep (Walker & Ni 2011, type II).

The map ``G`` is one async (or over-relaxed, ``omega``) sweep; its fixed points are the
network's. Anderson mixing extrapolates from the last ``m`` pairs ``(s_i, G(s_i))``:
``s_next = clamp(sum_i alpha_i G(s_i), 0, 1)`` with ``alpha`` minimising
``|sum_i alpha_i (G(s_i) - s_i)|`` subject to ``sum alpha = 1`` (per sample, regularised).

Only the layers the sweep's *second* half sets (``s^2, s^4, ...``) are mixed: given them
(and the pooling switches of the first-half layers) the next sweep is determined, so this
is Anderson on the reduced map, and the forward terms the next sweep reads from the
first-half layers stay valid -- an accelerated sweep costs what an async sweep costs
(one conv per layer), plus the mixing (``O(m D)`` per sample).

``G`` is only piecewise smooth here (the hard sigmoid's clamp and the pooling switches), and
plain mixing on it was measured 2x *slower* than Picard (issue 15). The safeguards:

- per sample, a mixed point whose residual ``max |G(s) - s|`` exceeds ``safeguard`` times
  the previous one is abandoned: the next point is the plain sweep from it and the
  history restarts (a restart fills the history with the current pair, which makes the
  mix equal to the plain sweep until new pairs arrive);
- the mixed point is projected onto the box ``[0, 1]``.

Why this is written here rather than taken from ``torchdeq``: torchdeq's solvers work on
one flattened batch-wide problem without a box constraint, a per-sample stopping rule or
a fallback step, and would need the settle loop's per-sample freezing re-implemented
around them; the mixing itself is twenty lines.

The residual reported is ``max |G(s) - s|`` at the evaluated point (in sweep units), and
the state a sample is frozen at is ``G(s)``, as for ``async``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ephw.backends.asynchronous import Async
from ephw.backends.base import Advance, IterativeBackend, max_abs_change, take_rows
from ephw.errors import BackendError
from ephw.model import EnergyModel, States, Synapses
from ephw.model.tensors import channels_last
from ephw.model.terms import SynapseTerms


def flatten_states(states: States) -> Tensor:
    """``(B, D)`` view-order concatenation of all layers (channels-last tensors flattened as stored)."""
    return torch.cat([_flat(s) for s in states], 1)


def _flat(s: Tensor) -> Tensor:
    return s.permute(0, 2, 3, 1).reshape(s.shape[0], -1) if s.dim() == 4 else s.reshape(s.shape[0], -1)


def unflatten_states(v: Tensor, like: States) -> States:
    """Inverse of :func:`flatten_states`, channels-last 4-d layers like ``like``."""
    out: States = []
    at = 0
    for s in like:
        n = s[0].numel()
        chunk = v[:, at : at + n]
        at += n
        if s.dim() == 4:
            b, c, h, w = s.shape
            out.append(chunk.reshape(b, h, w, c).permute(0, 3, 1, 2))
        else:
            out.append(chunk.reshape(s.shape))
    return out


class AndersonCarry:
    """Mixing history ``(B, m, D)`` of points' images ``G(s)`` and residuals ``G(s) - s``."""

    def __init__(self, point: States, m: int, terms: SynapseTerms) -> None:
        self.point = point  # the next point to evaluate
        self.terms = terms  # forward terms at ``point`` (the mixing leaves the ones it needs valid)
        self.m = m
        self.g: Tensor | None = None
        self.f: Tensor | None = None
        self.slot = 0
        self.r_prev: Tensor | None = None

    def select(self, keep: Tensor) -> AndersonCarry:
        self.point = [take_rows(s, keep) for s in self.point]
        self.terms = self.terms.select(keep)
        if self.g is not None:
            self.g, self.f = self.g.index_select(0, keep), self.f.index_select(0, keep)
        if self.r_prev is not None:
            self.r_prev = self.r_prev.index_select(0, keep)
        return self

    def push(self, g: Tensor, f: Tensor, restart: Tensor) -> None:
        """Add the pair of the current point; samples with ``restart`` forget their history."""
        if self.g is None:
            self.g = g.unsqueeze(1).repeat(1, self.m, 1)
            self.f = f.unsqueeze(1).repeat(1, self.m, 1)
            return
        self.g[:, self.slot] = g
        self.f[:, self.slot] = f
        if g.is_cuda:  # no host sync: a masked write of the whole history
            self.g = torch.where(restart[:, None, None], g.unsqueeze(1), self.g)
            self.f = torch.where(restart[:, None, None], f.unsqueeze(1), self.f)
        elif bool(restart.any()):  # on CPU reading the flag is free and the write is small
            self.g[restart] = g[restart].unsqueeze(1)
            self.f[restart] = f[restart].unsqueeze(1)
        self.slot = (self.slot + 1) % self.m

    def mix(self, reg: float) -> Tensor:
        """``sum_i alpha_i g_i`` with ``alpha = argmin |F^T alpha|, sum alpha = 1`` per sample, ``(B, D)``."""
        f, g = self.f, self.g
        wide = torch.promote_types(f.dtype, torch.float32)  # the small solve in >= fp32 (no bf16 LU)
        gram = torch.bmm(f, f.transpose(1, 2)).to(wide)  # (B, m, m)
        scale = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-30)
        eye = torch.eye(self.m, dtype=wide, device=f.device)
        gram = gram + (reg * scale)[:, None, None] * eye
        ones = torch.ones(f.shape[0], self.m, 1, dtype=wide, device=f.device)
        w = torch.linalg.solve(gram, ones)  # (B, m, 1)
        alpha = (w / w.sum(1, keepdim=True)).to(g.dtype)
        return torch.bmm(alpha.transpose(1, 2), g).squeeze(1)


class Anderson(IterativeBackend):
    """Safeguarded, box-projected Anderson mixing of async sweeps (one sweep per step)."""

    name = "anderson"
    description = "safeguarded Anderson mixing (type II, box-projected, restarts) of async/over-relaxed sweeps"

    def __init__(self, m: int = 5, omega: float = 1.0, safeguard: float = 1.0, reg: float = 1e-6) -> None:
        if not isinstance(m, int) or m < 1:
            raise BackendError(f"anderson: m must be a positive integer, got {m!r}")
        if not 0.0 < omega < 2.0:
            raise BackendError(f"anderson: omega must be in (0, 2), got {omega}")
        if not safeguard > 0.0 or not reg > 0.0:
            raise BackendError("anderson: safeguard and reg must be positive")
        self.m, self.omega, self.safeguard, self.reg = m, float(omega), float(safeguard), float(reg)
        self._sweep = Async()
        self._sweep.omega = self.omega

    def start(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> AndersonCarry:
        return AndersonCarry(list(states), self.m, self._sweep.start(net, x, states, beta, target, ops))

    def step(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> tuple[States, Tensor]:
        return self._sweep.step(net, x, states, beta, target, ops)

    def advance(
        self,
        net: EnergyModel,
        x: Tensor,
        states: States,
        beta: float,
        target: Tensor | None,
        ops: Synapses,
        carry: AndersonCarry | None,
    ) -> Advance:
        carry = carry if carry is not None else self.start(net, x, states, beta, target, ops)
        point = carry.point
        image, energy, terms, _ = self._sweep.advance(net, x, point, beta, target, ops, carry.terms)
        r = max_abs_change(image, point) / self.omega
        mixed_layers = range(1, net.n_states, 2)  # the layers the second half-sweep sets
        if not mixed_layers:
            carry.point, carry.terms = image, terms
            return Advance(image, energy, carry, r)
        restart = r > self.safeguard * carry.r_prev if carry.r_prev is not None else torch.zeros_like(r, dtype=bool)
        g = flatten_states([image[i] for i in mixed_layers])
        s = flatten_states([point[i] for i in mixed_layers])
        carry.push(g, g - s, restart)
        mixed = carry.mix(self.reg).clamp_(0.0, 1.0)
        # a rejected point continues with its plain sweep (the mix of a restarted history is that
        # too, up to rounding: take it exactly)
        mixed = torch.where(restart[:, None], g, mixed)
        nxt = list(image)
        for i, t in zip(mixed_layers, unflatten_states(mixed, [image[i] for i in mixed_layers])):
            nxt[i] = channels_last(t)
        terms.update(nxt, mixed_layers)
        carry.point, carry.terms, carry.r_prev = nxt, terms, r
        return Advance(image, energy, carry, r)
