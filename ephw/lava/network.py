"""Build, run and tear down the lava network of an :class:`~ephw.model.EnergyModel`.

:class:`NetworkSpec` holds everything numeric of the model as numpy arrays (taken out of
torch in the main process); :class:`LavaNetwork` instantiates the Processes of
:mod:`ephw.lava.procs.processes` for one batch size and precision, runs chunks of
timesteps with ``Loihi2SimCfg(select_tag=...)`` and reads the results through lava's
external pipes.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ephw.errors import BackendError
from ephw.lava import compat
from ephw.lava.conv import conv2d, conv2d_transpose
from ephw.lava.fixed_point import FixedPointFormat, damping_shift, gain_shift, loihi_bias, quantize_weights
from ephw.lava.lifetime import children_die_with_parent
from ephw.lava.numerics import PRECISIONS, Numerics
from ephw.model import EnergyModel
from ephw.signals import deferred


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
    #: ``"softmax"`` (readout ``W s^N + b``, not a state) or ``"mse"`` (``s^N`` is the output)
    output: str = "softmax"
    classes: int = 10
    #: the softmax readout ``(classes, n)``, ``(classes,)`` (zeros ``(classes, 0)`` for mse)
    readout_weight: np.ndarray = field(default_factory=lambda: np.zeros((10, 0)))
    readout_bias: np.ndarray = field(default_factory=lambda: np.zeros(10))

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
        if cfg.output == "softmax":
            layer = net.synapses[cfg.n_synapses - 1]
            rw = np.ascontiguousarray(layer.weight.detach().cpu().double().numpy())
            rb = np.ascontiguousarray(layer.bias.detach().cpu().double().numpy())
        else:
            rw, rb = np.zeros((cfg.classes, 0)), np.zeros(cfg.classes)
        return cls(
            tuple(cfg.in_shape), tuple(shapes[1:]), tuple(projections), float(net.gain), cfg.output, cfg.classes, rw, rb
        )


@dataclass
class ChunkResult:
    """What the host reads after a chunk of ``n`` timesteps.

    ``residuals`` ``(n, B)``: per-timestep ``max |ds| / dt`` (0 for frozen samples);
    ``messages`` / ``synops`` ``(n, B)``: messages sent by the input and state layers and
    the synaptic operations they cause, per timestep; ``frozen`` ``(B,)`` bool;
    ``frozen_at`` ``(B,)`` timestep since the reset at which a sample froze (0: not yet);
    ``states``: float64 ``(B, *shape)`` per layer.
    """

    residuals: np.ndarray
    messages: np.ndarray
    synops: np.ndarray
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
        dtype: floating point: payload dtype ``"float64"`` or ``"float32"`` (ignored for fixed point: int32).
        delta_threshold: ``None``: layers send every state every timestep; ``T >= 0``:
            sigma-delta messaging, a neuron sends only where its state moved more than ``T``.
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
        dtype: str = "float64",
        delta_threshold: float | None = None,
        fail_at_step: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"lava: precision must be one of {PRECISIONS}, got {precision!r}")
        self.spec, self.batch, self.precision = spec, int(batch), precision
        self.dt, self.check_every = float(dt), int(check_every)
        self.fmt = (fmt or FixedPointFormat()) if precision == "fixed_pt" else None
        if self.fmt is None:
            self.numerics = Numerics(precision, dtype)
        else:
            self.numerics = Numerics(
                precision,
                "int32",
                frac_bits=self.fmt.frac_bits,
                payload_bits=self.fmt.payload_bits,
                gain_shift=gain_shift(spec.gain),
                dt_shift=damping_shift(self.dt),
            )
        self.delta_threshold = delta_threshold
        self.fail_at_step = fail_at_step
        self._started = False
        self._closed = False
        self._reload: NetworkSpec | None = None
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        compat.install()
        from ephw.lava.procs import processes as P

        spec, b, num = self.spec, self.batch, self.numerics.params()
        n = len(spec.state_shapes)
        fanout = fanouts(spec)
        sender = {"n_senders": n + 1, "numerics": num, "delta_threshold": self.delta_threshold}
        self.input = P.InputLayer(shape=(b, *spec.input_shape), index=0, fanout=fanout[0], **sender)
        self.layers = []
        for i, (proj, numbers) in enumerate(zip(spec.projections, self._layer_numbers(spec))):
            above = spec.projections[i + 1] if i + 1 < n else None
            self.layers.append(
                P.StateLayer(
                    shape=(b, *spec.state_shapes[i]),
                    index=i + 1,
                    fanout=fanout[i + 1],
                    gain=spec.gain,
                    dt=self.dt,
                    forward=_projection_params(proj, b),
                    feedback=None if above is None else {**_projection_params(above, b), "dst": (b, *above.dst)},
                    **numbers,
                    switches_down=i > 0 and proj.kind == "conv",
                    nudged=i == n - 1,
                    fail_at_step=self.fail_at_step if i == 0 else None,
                    **sender,
                )
            )
        self.monitor = P.Monitor(n_senders=n + 1, batch=b, rows=self.check_every, numerics=num)
        sources = [self.input, *self.layers]
        for i, layer in enumerate(self.layers):
            sources[i].s_out.connect(layer.s_in)  # forward: s^{n-1} into layer n
            if i + 1 < n:  # feedback: s^{n+1} (and its pooling switches) into layer n
                above = self.layers[i + 1]
                above.s_out.connect(layer.fb_in)
                if spec.projections[i + 1].kind == "conv":
                    above.switch_out.connect(layer.switch_in)
        last = self.layers[-1]
        self.nudge = P.Nudge(
            shape=(b, *spec.state_shapes[-1]),
            classes=spec.classes,
            output=spec.output,
            weight=spec.readout_weight,
            bias=spec.readout_bias,
            numerics=num,
        )
        last.s_out.connect(self.nudge.s_in)
        self.nudge.a_out.connect(last.a_in)
        for layer in (self.input, *self.layers):
            layer.stat_out.connect(self.monitor.stat_in)
        for layer in self.layers:
            self.monitor.frozen_out.connect(layer.frozen_in)

    def _numbers(self, proj: Projection) -> tuple[np.ndarray, np.ndarray, int]:
        """Weights, biases (float64 arrays) and weight exponent in the process models' format.

        Fixed point: 8-bit weight mantissas with a shared exponent; biases at the drive
        scale in Loihi's 13-bit-mantissa + 3-bit-exponent format (:func:`loihi_bias`).
        """
        if self.fmt is None:
            return proj.weight, proj.bias, 0
        q = quantize_weights(proj.weight)
        return q.w_int.astype(np.float64), loihi_bias(proj.bias, self.fmt).value.astype(np.float64), q.weight_exp

    def _layer_numbers(self, spec: NetworkSpec) -> list[dict]:
        """Per state layer: its forward ``weight``, ``bias``, ``weight_exp`` and the feedback
        ``back_weight``, ``back_exp`` (the next layer's forward weights; none at the top)."""
        numbers = [self._numbers(p) for p in spec.projections]
        out = []
        for i, (weight, bias, exp) in enumerate(numbers):
            back, _, back_exp = numbers[i + 1] if i + 1 < len(numbers) else (None, None, 0)
            out.append({"weight": weight, "bias": bias, "weight_exp": exp, "back_weight": back, "back_exp": back_exp})
        return out

    def _params(self, spec: NetworkSpec) -> list[np.ndarray]:
        """The ``params`` messages (one per state layer, then the nudge) for ``spec``'s weights."""
        flat = []
        for m in self._layer_numbers(spec):
            back = m["back_weight"] if m["back_weight"] is not None else np.zeros(1)  # the Var of a top layer
            flat.append(
                np.concatenate(
                    [m["weight"].ravel(), m["bias"].ravel(), [m["weight_exp"]], back.ravel(), [m["back_exp"]]]
                )
            )
        flat.append(np.concatenate([spec.readout_weight.ravel(), spec.readout_bias.ravel(), [0]]))
        return flat

    def load_weights(self, spec: NetworkSpec) -> None:
        """Use ``spec``'s weights from the next reset on (sent through the ``params`` pipes, no rebuild).

        ``spec`` must have the shapes of the network's own spec.
        """
        same = len(spec.projections) == len(self.spec.projections) and all(
            a.weight.shape == b.weight.shape for a, b in zip(spec.projections, self.spec.projections)
        )
        if not same or spec.state_shapes != self.spec.state_shapes or spec.output != self.spec.output:
            raise BackendError("lava: new weights must have the shapes of the network's model")
        self._reload = spec

    # ------------------------------------------------------------------ running
    def _start(self) -> None:
        from lava.magma.core.run_configs import Loihi2SimCfg

        from ephw.lava.procs.models import model_map

        models = model_map(self.numerics)  # keyed by instance: lava then skips its model search
        chosen = {proc: models[type(proc)] for proc in self._controlled()}
        cfg = Loihi2SimCfg(select_tag=self.precision, exception_proc_model_map=chosen)
        # lava forks its processes here: they ignore SIGINT/SIGTERM (this process tears the
        # network down) and die with this process if it is killed (ephw.lava.lifetime). A
        # Ctrl-C/SIGTERM meanwhile waits for the forks to end: raised inside an at-fork hook
        # (logging has one), Python would print it as "Exception ignored" and drop it.
        with deferred(), children_die_with_parent():
            self.monitor.create_runtime(run_cfg=cfg)
            self._started = True  # before a held-back signal is raised: stop() must end the children
            smm = getattr(self.monitor.runtime._messaging_infrastructure, "smm", None)
            server = getattr(smm, "_process", None)  # lava's shared-memory manager process
            self._pids = [a.pid for a in self._actors()] + ([server.pid] if server is not None else [])

    def _controlled(self) -> list:
        """Every process with a ``ctrl`` pipe."""
        return [self.input, *self.layers, self.nudge, self.monitor]

    def run_chunk(
        self,
        steps: int,
        *,
        tol: float | None,
        images: np.ndarray | None = None,
        init: Sequence[np.ndarray] | None = None,
        beta: float = 0.0,
        target: np.ndarray | None = None,
    ) -> ChunkResult:
        """Run ``steps`` timesteps (at most ``check_every``) and read residuals, counts and states.

        With ``images`` (normalised, ``(B, C, H, W)`` float) the network is reset first:
        new input, states ``init`` (float ``(B, *shape)`` per layer; default zeros), no
        sample frozen, nudging target ``target`` (``(B, classes)`` one-hot/probabilities;
        default zeros); weights given to :meth:`load_weights` are loaded then. ``beta``
        (``-beta dL/ds^N`` is added to the last layer's drive) holds for this chunk.
        """
        if self._closed:
            raise BackendError("lava: this network was stopped")
        if not 1 <= steps <= self.check_every:
            raise BackendError(f"lava: a chunk runs 1..{self.check_every} timesteps, got {steps}")
        from lava.magma.core.run_conditions import RunSteps

        reset = images is not None
        reload = reset and self._reload is not None
        ctrl = np.array([steps, float(reset), -1.0 if tol is None else tol, float(beta), float(reload)])
        num = self.numerics
        try:
            if not self._started:
                self._start()
            for proc in self._controlled():
                proc.ctrl.external_pipe_csp_send_port.send(ctrl)
            if reset:
                self.input.load.external_pipe_csp_send_port.send(num.encode(images))
                zeros = [np.zeros((self.batch, *s)) for s in self.spec.state_shapes]
                for layer, s in zip(self.layers, init if init is not None else zeros):
                    layer.load.external_pipe_csp_send_port.send(num.encode(s, nonnegative=True))
                y = np.zeros((self.batch, self.spec.classes)) if target is None else np.asarray(target, np.float64)
                self.nudge.load.external_pipe_csp_send_port.send(y)
            if reload:
                for proc, flat in zip([*self.layers, self.nudge], self._params(self._reload)):
                    proc.params.external_pipe_csp_send_port.send(flat)
                self.spec, self._reload = self._reload, None
            self.monitor.run(condition=RunSteps(num_steps=steps))
            report = np.array(self.monitor.report.external_pipe_csp_recv_port.recv())
            states = [num.decode(layer.state_out.external_pipe_csp_recv_port.recv()) for layer in self.layers]
        except BaseException as exc:
            failure = self._child_failures() if isinstance(exc, RuntimeError) else None
            self.stop(force=True)
            if failure:
                raise LavaRuntimeError(failure) from exc
            raise
        rows = self.check_every
        return ChunkResult(
            report[:steps],
            report[rows : rows + steps],
            report[2 * rows : 2 * rows + steps],
            report[-2].astype(bool),
            report[-1].astype(np.int64),
            states,
        )

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


def _projection_params(proj: Projection, batch: int) -> dict:
    """The process parameters of ``proj`` (shapes with the batch): what a layer's synapses compute."""
    return {
        "kind": proj.kind,
        "padding": proj.padding,
        "pool": proj.pool,
        "src": (batch, *proj.src),
        "pre_pool": (batch, *proj.pre_pool),
    }


def _forward_fanout(proj: Projection) -> np.ndarray:
    """Synapses each unit of ``proj``'s source drives, shaped like the source ``(*src)``."""
    if proj.kind == "dense":
        return np.full(proj.src, float(math.prod(proj.dst)))
    c_out, k = proj.weight.shape[0], proj.weight.shape[-1]
    cover = conv2d_transpose(np.ones((1, 1, *proj.pre_pool[1:])), np.ones((1, 1, k, k)), proj.padding)[0, 0]
    return np.broadcast_to(c_out * cover, proj.src).astype(np.float64)


def _feedback_fanout(proj: Projection) -> np.ndarray:
    """Synapses each unit of ``proj``'s destination drives back to the source, shaped ``(*dst)``.

    Conv: a pooled unit feeds one position of its window (the switch), which reaches
    ``C_in`` times the valid taps there; the switch is data-dependent, so the mean over
    the window is used.
    """
    if proj.kind == "dense":
        return np.full(proj.dst, float(math.prod(proj.src)))
    c_in, k, pool = proj.weight.shape[1], proj.weight.shape[-1], proj.pool
    taps = conv2d(np.ones((1, 1, *proj.src[1:])), np.ones((1, 1, k, k)), proj.padding)[0, 0]
    h, w = proj.dst[1:]
    mean = taps[: h * pool, : w * pool].reshape(h, pool, w, pool).mean((1, 3))
    return np.broadcast_to(c_in * mean, proj.dst).astype(np.float64)


def fanouts(spec: NetworkSpec) -> list[np.ndarray]:
    """Per sender (input, then every state layer) the synapses each of its neurons drives.

    A message (a graded spike) of a neuron costs one synaptic operation per synapse it
    drives: forward into the next layer and back into the previous one. The readout (only
    read while nudging) is not counted.
    """
    out = [np.zeros(spec.input_shape), *[np.zeros(s) for s in spec.state_shapes]]
    for i, proj in enumerate(spec.projections):
        out[i] = out[i] + _forward_fanout(proj)
        if i > 0:
            out[i + 1] = out[i + 1] + _feedback_fanout(proj)
    return out


def chunks(steps: int, every: int) -> list[int]:
    """Chunk lengths covering ``steps`` timesteps, each at most ``every``."""
    return [min(every, steps - k) for k in range(0, steps, every)] if steps > 0 else []


__all__ = ["ChunkResult", "LavaNetwork", "LavaRuntimeError", "NetworkSpec", "Projection", "chunks", "fanouts"]
