"""Build, run and tear down the lava network of an :class:`~ephw.model.EnergyModel`.

:class:`NetworkSpec` holds everything numeric of the model as numpy arrays (taken out of
torch in the main process); :class:`LavaNetwork` instantiates the Processes of
:mod:`ephw.lava.procs.processes` for one batch size and precision, runs chunks of
timesteps with ``Loihi2SimCfg(select_tag=...)`` and reads the results through lava's
external pipes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ephw.errors import BackendError
from ephw.lava import compat
from ephw.lava.fixed_point import FixedPointFormat, damping_shift, gain_shift, quantize_weights, to_fixed
from ephw.lava.lifetime import children_die_with_parent
from ephw.model import EnergyModel
from ephw.signals import deferred

PRECISIONS = ("floating_pt", "fixed_pt")


class LavaRuntimeError(RuntimeError):
    """A lava process model raised; the message names the original exception."""


@dataclass(frozen=True)
class Projection:
    """The synapse layer feeding state layer ``n`` from ``s^{n-1}`` (numpy, float64).

    ``weight`` is ``(C_out, C_in, k, k)`` (conv) or ``(out, in)`` (dense); shapes are per
    sample: ``src`` of ``s^{n-1}``, ``pre_pool`` of the conv output, ``dst`` of ``s^n``.
    """

    kind: str
    weight: np.ndarray
    bias: np.ndarray
    padding: int
    pool: int
    src: tuple[int, ...]
    pre_pool: tuple[int, ...]
    dst: tuple[int, ...]


@dataclass(frozen=True)
class NetworkSpec:
    """The numbers of an energy model that the lava network needs."""

    input_shape: tuple[int, ...]
    state_shapes: tuple[tuple[int, ...], ...]
    projections: tuple[Projection, ...]
    gain: float

    @classmethod
    def from_model(cls, net: EnergyModel) -> NetworkSpec:
        """Weights, biases and shapes of ``net`` as float64 numpy arrays (no torch beyond this point)."""
        cfg = net.config
        shapes = [tuple(cfg.in_shape), *[tuple(s) for s in net.state_shapes()]]
        projections = []
        for n in range(net.n_states):
            layer = net.synapses[n]
            weight = np.ascontiguousarray(layer.weight.detach().cpu().double().numpy())
            bias = np.ascontiguousarray(layer.bias.detach().cpu().double().numpy())
            if n < len(cfg.convs):
                spec = cfg.convs[n]
                c, h, w = shapes[n]
                pre = (spec.channels, h + 2 * spec.padding - spec.kernel + 1, w + 2 * spec.padding - spec.kernel + 1)
                projections.append(
                    Projection("conv", weight, bias, spec.padding, spec.pool, shapes[n], pre, shapes[n + 1])
                )
            else:
                projections.append(Projection("dense", weight, bias, 0, 1, shapes[n], shapes[n + 1], shapes[n + 1]))
        return cls(tuple(cfg.in_shape), tuple(shapes[1:]), tuple(projections), float(net.gain))


@dataclass
class ChunkResult:
    """What the host reads after a chunk of ``n`` timesteps.

    ``residuals`` ``(n, B)``: per-timestep ``max |ds| / dt`` (0 for frozen samples);
    ``frozen`` ``(B,)`` bool; ``frozen_at`` ``(B,)`` timestep since the reset at which a
    sample froze (0: not yet); ``states``: float64 ``(B, *shape)`` per layer.
    """

    residuals: np.ndarray
    frozen: np.ndarray
    frozen_at: np.ndarray
    states: list[np.ndarray]


class LavaNetwork:
    """The lava processes of one model for one batch size and precision.

    Args:
        spec: the model's numbers.
        batch: images per run (every port carries ``(batch, ...)`` arrays).
        precision: ``"floating_pt"`` or ``"fixed_pt"`` (the ``select_tag`` of ``Loihi2SimCfg``).
        dt: damping of the state update (1: Jacobi iteration).
        check_every: most timesteps per chunk (one host round trip per chunk).
        fmt: fixed-point formats (``fixed_pt`` only).
        fail_at_step: diagnostic/test hook: the first state layer raises at this timestep.

    Use as a context manager or call :meth:`stop`; the runtime starts on the first run.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        batch: int,
        precision: str = "floating_pt",
        *,
        dt: float = 1.0,
        check_every: int = 25,
        fmt: FixedPointFormat | None = None,
        fail_at_step: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"lava: precision must be one of {PRECISIONS}, got {precision!r}")
        self.spec, self.batch, self.precision = spec, int(batch), precision
        self.dt, self.check_every = float(dt), int(check_every)
        self.fmt = (fmt or FixedPointFormat()) if precision == "fixed_pt" else None
        self.fail_at_step = fail_at_step
        self._started = False
        self._closed = False
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        compat.install()
        from ephw.lava.procs import processes as P

        spec, b = self.spec, self.batch
        fixed = None
        if self.fmt is not None:
            fixed = {
                "frac_bits": self.fmt.frac_bits,
                "payload_bits": self.fmt.payload_bits,
                "gain_shift": gain_shift(spec.gain),
                "dt_shift": damping_shift(self.dt),
            }
        n = len(spec.state_shapes)
        self.input = P.InputLayer(shape=(b, *spec.input_shape))
        self.layers = [
            P.StateLayer(
                shape=(b, *shape),
                index=i,
                n_layers=n,
                gain=spec.gain,
                dt=self.dt,
                fixed=fixed,
                fail_at_step=self.fail_at_step if i == 0 else None,
            )
            for i, shape in enumerate(spec.state_shapes)
        ]
        self.monitor = P.Monitor(n_layers=n, batch=b, rows=self.check_every)
        self.synapses: list[object] = []  # every connection process, for the resource report
        sources = [self.input, *self.layers]
        for i, proj in enumerate(spec.projections):
            weight, bias, exp = self._numbers(proj)
            src, dst = sources[i], self.layers[i]
            if proj.kind == "conv":
                fwd = P.ConvSynapses(
                    in_shape=(b, *proj.src),
                    out_shape=(b, *proj.pre_pool),
                    weight=weight,
                    bias=bias,
                    padding=proj.padding,
                    weight_exp=exp,
                )
                pool = P.MaxPool(in_shape=(b, *proj.pre_pool), out_shape=(b, *proj.dst), pool=proj.pool)
                src.s_out.connect(fwd.s_in)
                fwd.a_out.connect(pool.a_in)
                pool.a_out.connect(dst.a_in)
                self.synapses += [fwd, pool]
                if i > 0:  # feedback from s^n to s^{n-1} through the switches of this conv
                    unpool = P.Unpool(in_shape=(b, *proj.dst), out_shape=(b, *proj.pre_pool), pool=proj.pool)
                    back = P.ConvTransposeSynapses(
                        in_shape=(b, *proj.pre_pool),
                        out_shape=(b, *proj.src),
                        weight=weight,
                        padding=proj.padding,
                        weight_exp=exp,
                    )
                    dst.s_out.connect(unpool.s_in)
                    pool.switch_out.connect(unpool.switch_in)
                    unpool.a_out.connect(back.a_in)
                    back.a_out.connect(src.a_in)
                    self.synapses += [unpool, back]
            else:
                fwd = P.DenseSynapses(
                    in_shape=(b, *proj.src), out_shape=(b, *proj.dst), weight=weight, bias=bias, weight_exp=exp
                )
                src.s_out.connect(fwd.s_in)
                fwd.a_out.connect(dst.a_in)
                self.synapses.append(fwd)
                if i > 0:
                    back = P.DenseTransposeSynapses(
                        in_shape=(b, *proj.dst), out_shape=(b, *proj.src), weight=weight, weight_exp=exp
                    )
                    dst.s_out.connect(back.a_in)
                    back.a_out.connect(src.a_in)
                    self.synapses.append(back)
        for layer in self.layers:
            layer.r_out.connect(self.monitor.r_in)
            self.monitor.frozen_out.connect(layer.frozen_in)

    def _numbers(self, proj: Projection) -> tuple[np.ndarray, np.ndarray, int]:
        """Weights, biases and weight exponent in the process models' format."""
        if self.fmt is None:
            return proj.weight, proj.bias, 0
        q = quantize_weights(proj.weight)
        return q.w_int.astype(np.int32), to_fixed(proj.bias, self.fmt).astype(np.int32), q.weight_exp

    # ------------------------------------------------------------------ running
    def _start(self) -> None:
        from lava.magma.core.run_configs import Loihi2SimCfg

        # lava forks its processes here: they ignore SIGINT/SIGTERM (this process tears the
        # network down) and die with this process if it is killed (ephw.lava.lifetime). A
        # Ctrl-C/SIGTERM meanwhile waits for the forks to end: raised inside an at-fork hook
        # (logging has one), Python would print it as "Exception ignored" and drop it.
        with deferred(), children_die_with_parent():
            self.monitor.create_runtime(run_cfg=Loihi2SimCfg(select_tag=self.precision))
            self._started = True  # before a held-back signal is raised: stop() must end the children
            smm = getattr(self.monitor.runtime._messaging_infrastructure, "smm", None)
            server = getattr(smm, "_process", None)  # lava's shared-memory manager process
            self._pids = [a.pid for a in self._actors()] + ([server.pid] if server is not None else [])

    def run_chunk(
        self,
        steps: int,
        *,
        tol: float | None,
        images: np.ndarray | None = None,
        init: Sequence[np.ndarray] | None = None,
    ) -> ChunkResult:
        """Run ``steps`` timesteps (at most ``check_every``) and read residuals and states.

        With ``images`` (normalised, ``(B, C, H, W)`` float) the network is reset first:
        new input, states ``init`` (float ``(B, *shape)`` per layer; default zeros), no
        sample frozen.
        """
        if self._closed:
            raise BackendError("lava: this network was stopped")
        if not 1 <= steps <= self.check_every:
            raise BackendError(f"lava: a chunk runs 1..{self.check_every} timesteps, got {steps}")
        from lava.magma.core.run_conditions import RunSteps

        reset = images is not None
        ctrl = np.array([steps, float(reset), -1.0 if tol is None else tol])
        try:
            if not self._started:
                self._start()
            for proc in (self.input, *self.layers, self.monitor):
                proc.ctrl.external_pipe_csp_send_port.send(ctrl)
            if reset:
                self.input.load.external_pipe_csp_send_port.send(self._encode(images, signed=True))
                zeros = [np.zeros((self.batch, *s)) for s in self.spec.state_shapes]
                for layer, s in zip(self.layers, init if init is not None else zeros):
                    layer.load.external_pipe_csp_send_port.send(self._encode(s, signed=False))
            self.monitor.run(condition=RunSteps(num_steps=steps))
            report = np.array(self.monitor.report.external_pipe_csp_recv_port.recv())
            states = [self._decode(layer.state_out.external_pipe_csp_recv_port.recv()) for layer in self.layers]
        except BaseException as exc:
            failure = self._child_failures() if isinstance(exc, RuntimeError) else None
            self.stop(force=True)
            if failure:
                raise LavaRuntimeError(failure) from exc
            raise
        return ChunkResult(report[:steps], report[-2].astype(bool), report[-1].astype(np.int64), states)

    def _encode(self, a: np.ndarray, signed: bool) -> np.ndarray:
        if self.fmt is None:
            return np.asarray(a, dtype=np.float64)
        q = to_fixed(a, self.fmt)
        return (q if signed else np.clip(q, 0, self.fmt.scale)).astype(np.int32)

    def _decode(self, a: np.ndarray) -> np.ndarray:
        a = np.array(a, dtype=np.float64)
        return a if self.fmt is None else a / self.fmt.scale

    # ------------------------------------------------------------------ teardown
    @property
    def closed(self) -> bool:
        return self._closed

    def _actors(self) -> list:
        runtime = getattr(self.monitor, "runtime", None)
        infra = getattr(runtime, "_messaging_infrastructure", None)
        return list(getattr(infra, "actors", []) or [])

    def child_pids(self) -> list[int]:
        """Process ids of lava's children (process models and runtime service) once started."""
        return list(getattr(self, "_pids", []))

    def _child_failures(self) -> str | None:
        """The exceptions lava's children reported, one line each (``None`` if none)."""
        lines = []
        for actor in self._actors():
            try:
                exc = actor.exception
            except (OSError, ValueError, EOFError):
                continue
            if exc:
                err = exc[0]
                lines.append(f"{type(err).__name__}: {err}")
        return "lava process model failed: " + "; ".join(lines) if lines else None

    def stop(self, force: bool = False, timeout: float = 20.0) -> None:
        """Stop lava's runtime and make sure none of its processes survives (idempotent).

        ``force`` (after an error or an interrupt) skips lava's stop handshake, whose
        partners may be gone, and ends the children directly.
        """
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        runtime = self.monitor.runtime
        if not force:
            done = threading.Event()

            def graceful() -> None:
                try:
                    runtime.stop()
                    done.set()
                except Exception:  # noqa: BLE001 - fall back to the forced path below
                    pass

            worker = threading.Thread(target=graceful, daemon=True)
            worker.start()
            worker.join(timeout)
            if done.is_set():
                return
        _force_stop(runtime)


def _force_stop(runtime) -> None:
    """End lava's child processes (SIGKILL by pid, lava's own children only) and its shared memory."""
    infra = runtime._messaging_infrastructure
    for actor in infra.actors:
        try:
            if actor.is_alive():
                actor.kill()
        except ValueError:  # lava already joined and closed it
            continue
    for actor in infra.actors:
        try:
            actor.join()
        except ValueError:
            pass
    try:
        infra.smm.shutdown()
    except Exception:  # noqa: BLE001 - already shut down
        pass
    runtime._is_started = False  # lava's __del__ would otherwise try its stop handshake again
    runtime._is_running = False


def chunks(steps: int, every: int) -> list[int]:
    """Chunk lengths covering ``steps`` timesteps, each at most ``every``."""
    return [min(every, steps - k) for k in range(0, steps, every)] if steps > 0 else []


__all__ = ["ChunkResult", "LavaNetwork", "LavaRuntimeError", "NetworkSpec", "Projection", "chunks"]
