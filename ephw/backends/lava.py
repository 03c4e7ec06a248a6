"""Lava backends: the energy model as a network of lava-nc processes (``Loihi2SimCfg``).

``lava`` runs floating-point process models (float32 payloads, float64 for float64
models and inputs), ``lava-fixed`` bit-accurate Loihi-2-style fixed-point ones (8-bit
weight mantissas, integer states, 24-bit graded payloads, 13-bit-mantissa biases;
:mod:`ephw.lava.fixed_point`). Both settle free and nudged phases (the output nudging
``-beta dL/ds^N`` is a process of the network) and optionally send deltas
(sigma-delta messaging, :mod:`ephw.lava.activity`). One lava timestep is one synchronous update of
all layers (the state layers carry the one-step delay), so a lava settle with ``dt = 1``
follows the digital ``euler`` iteration step by step. docs/lava.md maps the processes.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ephw.backends.base import Backend, SettleResult, initial_states
from ephw.errors import BackendError, InputError
from ephw.lava.activity import Activity
from ephw.lava.fixed_point import FixedPointFormat
from ephw.lava.loihi_cost import LoihiEstimate, estimate
from ephw.lava.network import LavaNetwork, NetworkSpec, chunks
from ephw.lava.numerics import FLOAT_DTYPES
from ephw.lava.resources import resource_report
from ephw.model import EnergyModel
from ephw.model.tensors import channels_last
from ephw.model.terms import one_hot

#: Started networks not yet stopped (strong references: stopped at the latest at exit).
_LIVE: set[LavaNetwork] = set()


@atexit.register
def _stop_all() -> None:  # pragma: no cover - runs at interpreter exit
    while _LIVE:
        _LIVE.pop().stop()


@dataclass
class LavaSettleResult(SettleResult):
    """A :class:`SettleResult` with the network's activity counts (messages, synaptic ops)."""

    activity: Activity | None = None


class Lava(Backend):
    """Settle on lava processes run by ``Loihi2SimCfg(select_tag="floating_pt")``.

    Args:
        dt: damping ``s <- (1 - dt) s + dt sigma(u)`` of the state layers. ``lava``: default 1
            (Jacobi, the same iteration as ``euler`` with ``dt=1``). ``lava-fixed``: 1, 1/2, 1/4, ...,
            default 1/2 -- with ``dt=1`` about 12 % of the digits test images end in a 1-LSB
            limit cycle of the integer dynamics and never converge (docs/lava.md).
        check_every: lava timesteps per run chunk: the host reads the monitor's report
            and the states after each chunk and stops once every sample has converged.
        frac_bits: lava-fixed only: fractional bits of the integer states (scale ``2**frac_bits``).
        payload_dtype: lava only: payload dtype ``"float32"`` or ``"float64"``; default: float64
            for a float64 input, float32 otherwise (float32 halves the bytes moved between processes).
            (Not ``dtype``: that name selects mixed precision in ``get_backend``.)
        delta_threshold: ``None`` (default): every layer sends its state every timestep;
            ``T >= 0``: sigma-delta messaging -- a neuron sends only where its state moved more
            than ``T`` since its last message (``T = 0``: exactly the dense results).
        fail_at_step: diagnostic/test option: the first state layer's process model raises
            at this lava timestep (checks that errors reach the caller and nothing is left running).

    The network is built once and reused while the model's weights and the batch size
    stay the same (smaller batches are padded with copies of their last image); it is
    stopped by :meth:`close`, at interpreter exit, and immediately after any error or
    interrupt. After a weight update (a training step) the new weights are sent to the
    running network's state layers (which hold the synapses) instead of rebuilding it.
    """

    name = "lava"
    description = "lava-nc processes, floating point (Loihi2SimCfg floating_pt)"
    precision = "floating_pt"

    #: ``dt`` when none is given
    default_dt = 1.0
    #: the cached network; a class default, so that ``__del__`` finds it even when the
    #: constructor call itself failed (an unknown option such as ``--set lava.nokey=1``)
    _cache: tuple[tuple, LavaNetwork] | None = None
    #: set to a list to collect the :class:`Activity` of every settle (for :meth:`loihi_estimate`)
    activity_log: list[Activity] | None = None

    def __init__(
        self,
        dt: float | None = None,
        check_every: int = 25,
        frac_bits: int | None = None,
        payload_dtype: str | None = None,
        delta_threshold: float | None = None,
        fail_at_step: int | None = None,
    ) -> None:
        dt = self.default_dt if dt is None else dt
        if not 0.0 < dt <= 1.0:
            raise BackendError(f"{self.name}: dt must be in (0, 1], got {dt}")
        if not isinstance(check_every, int) or check_every < 1:
            raise BackendError(f"{self.name}: check_every must be a positive integer, got {check_every!r}")
        if fail_at_step is not None and (not isinstance(fail_at_step, int) or fail_at_step < 1):
            raise BackendError(f"{self.name}: fail_at_step must be a positive integer, got {fail_at_step!r}")
        if self.precision == "floating_pt" and frac_bits is not None:
            raise BackendError("lava: frac_bits applies to lava-fixed only")
        if payload_dtype is not None and (self.precision == "fixed_pt" or payload_dtype not in FLOAT_DTYPES):
            raise BackendError(
                f"{self.name}: payload_dtype applies to lava only and is one of {', '.join(FLOAT_DTYPES)}, "
                f"got {payload_dtype!r}"
            )
        if delta_threshold is not None and not (
            isinstance(delta_threshold, (int, float)) and 0.0 <= delta_threshold < 1.0
        ):
            raise BackendError(f"{self.name}: delta_threshold must be in [0, 1) (state units), got {delta_threshold!r}")
        self.payload = payload_dtype
        self.delta_threshold = None if delta_threshold is None else float(delta_threshold)
        self.dt = float(dt)
        self.check_every = check_every
        self.fmt = (
            FixedPointFormat(frac_bits if frac_bits is not None else 10) if self.precision == "fixed_pt" else None
        )
        self.fail_at_step = fail_at_step

    # ------------------------------------------------------------------ network cache
    def payload_dtype(self, x: Tensor) -> str:
        """The payload dtype for inputs ``x`` (``int32`` for lava-fixed)."""
        if self.precision == "fixed_pt":
            return "int32"
        return self.payload or ("float64" if x.dtype == torch.float64 else "float32")

    def network(self, net: EnergyModel, batch: int, dtype: str = "float64") -> LavaNetwork:
        """The lava network for ``net`` and at least ``batch`` images (built, or reused with
        the current weights loaded into it)."""
        version = tuple(p._version for p in net.parameters())
        if self.precision == "fixed_pt":
            dtype = "int32"
        if self._cache is not None:
            key, network = self._cache
            if key[0] == id(net) and key[1] >= batch and key[2] == dtype and not network.closed:
                if key[3] != version:
                    with torch.no_grad():
                        network.load_weights(NetworkSpec.from_model(net))
                    self._cache = ((id(net), key[1], dtype, version), network)
                return network
            self.close()
        with torch.no_grad():
            spec = NetworkSpec.from_model(net)
        network = LavaNetwork(
            spec,
            batch,
            self.precision,
            dt=self.dt,
            check_every=self.check_every,
            fmt=self.fmt,
            dtype=dtype,
            delta_threshold=self.delta_threshold,
            fail_at_step=self.fail_at_step,
        )
        _LIVE.add(network)
        self._cache = ((id(net), batch, dtype, version), network)
        return network

    def close(self) -> None:
        """Stop the cached lava network (its processes end)."""
        if self._cache is not None:
            network = self._cache[1]
            self._cache = None
            _LIVE.discard(network)
            network.stop()

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------------ settle
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
    ) -> LavaSettleResult:
        """Settle on lava. ``steps`` and ``steps_per_sample`` count lava timesteps;
        ``residuals`` has one row per timestep, ``energies`` one row at the start and one
        after every chunk of ``check_every`` timesteps (computed here from the read states,
        with the nudging term); ``activity`` holds the messages and synaptic operations.
        """
        if x.shape[0] == 0:
            raise InputError(f"{self.name}: an empty batch (0 images): nothing to settle")
        if beta != 0.0 and target is None:
            raise InputError("a non-zero beta needs a target")
        start = time.perf_counter()
        batch = x.shape[0]
        with torch.no_grad():
            s0 = initial_states(net, x, init)
            x_norm = net.normalize(x).cpu().double().numpy()
            init_np = [s.cpu().double().numpy() for s in s0]
            y = None
            if target is not None:
                y = one_hot(target.to(x.device), net.logits(s0)).cpu().double().numpy()
            network = self.network(net, batch, self.payload_dtype(x))
            if network.batch > batch:  # pad with copies of the last image (results dropped)
                idx = np.r_[np.arange(batch), np.full(network.batch - batch, batch - 1)]
                x_norm, init_np = x_norm[idx], [s[idx] for s in init_np]
                y = None if y is None else y[idx]
            energies = [net.energy(x, s0, beta, target)]
            rows: list[np.ndarray] = []
            counts: list[tuple[np.ndarray, np.ndarray]] = []
            res = None
            try:
                for k, n in enumerate(chunks(steps, self.check_every)):
                    first = k == 0
                    res = network.run_chunk(
                        n,
                        tol=tol,
                        images=x_norm if first else None,
                        init=init_np if first else None,
                        beta=beta,
                        target=y if first else None,
                    )
                    rows.append(res.residuals[:, :batch])
                    counts.append((res.messages[:, :batch], res.synops[:, :batch]))
                    states = [self._tensor(s[:batch], x) for s in res.states]
                    energies.append(net.energy(x, states, beta, target))
                    if tol is not None and res.frozen[:batch].all():
                        break
            except BaseException:
                self.close()  # the network has stopped itself already
                raise
            residuals = np.concatenate(rows)
            frozen = torch.from_numpy(res.frozen[:batch].copy())
            when = torch.from_numpy(res.frozen_at[:batch].copy())
            ran = residuals.shape[0]
            per_sample = torch.where(frozen, when, torch.full_like(when, ran))
            logits = net.logits(states)
            activity = Activity.from_rows(
                np.concatenate([m for m, _ in counts]),
                np.concatenate([o for _, o in counts]),
                per_sample.numpy(),
                resource_report(network.spec)["neurons"],
                self.delta_threshold,
            )
            if self.activity_log is not None:
                self.activity_log.append(activity)
        return LavaSettleResult(
            states=states,
            logits=logits,
            steps=ran,
            steps_per_sample=per_sample.long(),
            converged=None if tol is None else frozen,
            residuals=torch.from_numpy(residuals).to(x.dtype),
            energies=torch.stack(energies).cpu(),
            backend=self.name,
            seconds=time.perf_counter() - start,
            activity=activity,
        )

    @staticmethod
    def _tensor(a: np.ndarray, like: Tensor) -> Tensor:
        return channels_last(torch.from_numpy(np.ascontiguousarray(a)).to(like.device, like.dtype))

    def resources(self, net: EnergyModel) -> dict:
        """Neurons, synapses and Loihi 2 neuro-cores of one copy of the network (:mod:`ephw.lava.resources`)."""
        with torch.no_grad():
            return resource_report(NetworkSpec.from_model(net))

    def loihi_estimate(self, net: EnergyModel, activity: Activity | None = None) -> LoihiEstimate:
        """Estimated Loihi time and energy per image (:mod:`ephw.lava.loihi_cost`) of ``activity``
        (default: every settle collected in :attr:`activity_log`)."""
        if activity is None:
            if not self.activity_log:
                raise BackendError(f"{self.name}: no settle recorded (set activity_log = [] before settling)")
            activity = Activity.concat(self.activity_log)
        return estimate(activity, self.resources(net)["neuro_cores"])

    # ------------------------------------------------------------------ benchmarking
    def step_seconds(self, net: EnergyModel, x: Tensor, steps: int = 50, repeats: int = 3) -> float:
        """Seconds per lava timestep: ``(time of run(k timesteps)) / k`` on a built, started network.

        Every timed chunk starts from a reset (zero states, ``x`` loaded, no tolerance) and runs
        ``k = min(steps, check_every)`` timesteps, so nearly every sample's state is still moving
        and the event-driven synapses (which skip unchanged samples) do a dense step's work:
        the time of a converging settle is :meth:`settle`'s. Compilation and the first run are
        excluded; the median over ``repeats`` chunks.
        """
        network = self.network(net, x.shape[0], self.payload_dtype(x))
        x_norm = net.normalize(x).detach().cpu().double().numpy()
        k = min(steps, self.check_every)
        network.run_chunk(k, tol=None, images=x_norm)  # compile, start, warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            network.run_chunk(k, tol=None, images=x_norm)
            times.append((time.perf_counter() - t) / k)
        return float(np.median(times))


class LavaFixed(Lava):
    """Settle on bit-accurate fixed-point lava processes (``Loihi2SimCfg(select_tag="fixed_pt")``)."""

    name = "lava-fixed"
    description = "lava-nc processes, Loihi-2-style fixed point (8-bit weights, 24-bit payloads)"
    precision = "fixed_pt"
    default_dt = 0.5
