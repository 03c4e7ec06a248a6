"""numpy ProcessModels of the EP-CNN Processes: one implementation per Process.

*How* each Process computes, on the CPU of lava's ``Loihi2SimCfg``. The precision is a
parameter (:class:`~ephw.lava.numerics.Numerics`, ``proc_params["numerics"]``), not a
second copy of the model: :func:`model_map` gives, for a precision and payload dtype, the
lava ProcessModel class of every Process -- the one implementation below with its ports
and Vars typed for that dtype (lava sizes its message buffers from these types) and
tagged ``floating_pt``/``fixed_pt``. No torch in here: lava runs these in forked
children, where torch can hang.

Within a timestep, messages flow layer -> synapses -> layer; state layers send their
previous state first, which makes the one-step delay of every loop.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ephw.lava import compat

compat.install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

from ephw.lava.conv import conv2d, max_pool, transposed_kernel, transposed_padding, unpool  # noqa: E402
from ephw.lava.numerics import Numerics  # noqa: E402
from ephw.lava.procs import processes as P  # noqa: E402


class InjectedFailure(RuntimeError):
    """Raised by a process model when the diagnostic ``fail_at_step`` hook fires."""


# ---------------------------------------------------------------------------- port/Var types
#: how a port or Var is typed: ``payload`` (the network's payload dtype), ``host`` (float64
#: control and statistics), ``switch`` (pooling switches), ``flag`` (frozen flags)
_KINDS = ("payload", "host", "switch", "flag")


def _lava_type(kind: str, direction: str, num: Numerics) -> LavaPyType:
    """The ``LavaPyType`` of a port (``direction`` ``"in"``/``"out"``) or Var (``"var"``)."""
    if kind == "payload":
        dtype, bits = (np.int32, num.payload_bits) if num.fixed else (num.np_dtype.type, None)
    elif kind == "host":
        dtype, bits = np.float64, None
    elif kind == "switch":
        dtype, bits = np.int32, 8
    else:
        dtype, bits = np.int32, 1
    if direction == "var":
        return LavaPyType(np.ndarray, dtype, precision=bits)
    port = PyInPort.VEC_DENSE if direction == "in" else PyOutPort.VEC_DENSE
    return LavaPyType(port, dtype, precision=bits)


# ---------------------------------------------------------------------------- shared behaviour
class _Guarded(PyLoihiProcessModel):
    """Runs :meth:`_step`; if it raises, first sends zeros on every peer OutPort not yet sent.

    A lava timestep completes only when every model has answered; a model that dies
    before sending would leave its peers blocked in ``recv`` and lava's runtime waiting
    forever. Releasing them lets the error reach the host through lava's own error path.

    Subclasses declare their ports and Vars as ``{name: kind}`` in ``inports``,
    ``outports`` (peer ports first) and ``variables``; ``peer_outputs`` names the
    OutPorts connected to other models (not host pipes).
    """

    inports: dict[str, str] = {}
    outports: dict[str, str] = {}
    variables: dict[str, str] = {}
    peer_outputs: tuple[str, ...] = ()

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.num = Numerics(**proc_params["numerics"])
        # Built in lava's forked child: one BLAS thread per process model. A network is ~8
        # processes; each with the default BLAS threads oversubscribes the cores and the
        # threads spin against each other (lava-fixed 11 -> 8 ms per step at batch 64, 2 cores).
        threadpool_limits(1)

    def run_spk(self) -> None:
        self._sent: set[str] = set()
        try:
            self._step()
        except Exception:
            for name in self.peer_outputs:
                if name not in self._sent:
                    port = getattr(self, name)
                    port.send(np.zeros(port.shape, dtype=port._d_type))
            raise

    def _send(self, name: str, data: np.ndarray) -> None:
        getattr(self, name).send(data)
        self._sent.add(name)

    def _step(self) -> None:
        raise NotImplementedError


class _Chunked(_Guarded):
    """Chunk bookkeeping: at the first timestep of every chunk the model receives the host's
    ``ctrl`` message ``[steps, reset, tol, beta, reload]``; :meth:`_at_end` is true at the
    chunk's last timestep."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._next_ctrl = 1
        self._end = 0
        self.beta = 0.0

    def _begin(self) -> np.ndarray | None:
        if self.time_step != self._next_ctrl:
            return None
        msg = self.ctrl.recv()
        self._end = self.time_step + int(msg[0]) - 1
        self._next_ctrl = self._end + 1
        self.beta = float(msg[3])
        return msg

    def _at_end(self) -> bool:
        return self.time_step == self._end


# ---------------------------------------------------------------------------- input and state layers
class _SenderModel(_Chunked):
    """A layer that sends its state, densely or as deltas (sigma-delta messaging).

    Dense: every neuron sends its state every timestep (a zero state sends nothing, as a
    graded spike of payload 0). Delta with threshold ``T``: a neuron sends only where
    ``|s - s_sent| > T`` and its receivers hold ``s_sent`` (accumulated deltas); the
    payload here is that reconstruction (dense array), the counts are what would travel.
    """

    inports = {"ctrl": "host", "load": "payload"}
    outports = {"s_out": "payload", "stat_out": "host"}
    variables = {"s": "payload"}
    peer_outputs = ("s_out", "stat_out")

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._index = proc_params["index"]
        thr = proc_params["delta_threshold"]
        self._threshold = None if thr is None else self.num.threshold(thr)
        self._fanout = np.asarray(proc_params["fanout"], dtype=np.float64)
        self._ref: np.ndarray | None = None
        self._t = 0  # timesteps since the last reset

    def _reset(self, msg: np.ndarray | None) -> None:
        if msg is not None and msg[1]:
            self.s = self.load.recv()
            self._ref = np.zeros_like(self.s)
            self._t = 0
        self._t += 1

    def _emit(self) -> np.ndarray:
        """Send the state (the one of the previous timestep); returns the stats block to fill."""
        s = self.s
        if self._threshold is None:
            sent, active = s, s != 0
        else:
            active = np.abs(s.astype(np.float64) - self._ref) > self._threshold
            self._ref = np.where(active, s, self._ref)
            sent = self._ref
        self._send("s_out", sent)
        batch = s.shape[0]
        stats = np.zeros(self.stat_out.shape)
        stats[self._index, 1] = active.reshape(batch, -1).sum(1)
        stats[self._index, 2] = (active * self._fanout).reshape(batch, -1).sum(1)
        return stats


class _InputModel(_SenderModel):
    def _step(self) -> None:
        self._reset(self._begin())
        self._send("stat_out", self._emit())


class _StateModel(_SenderModel):
    """``s <- (1 - dt) s + dt sigma(u)`` for samples not frozen by the monitor, where ``u`` is
    the forward drive from ``s^{n-1}`` plus the feedback from ``s^{n+1}`` (plus the nudge)."""

    inports = {
        **_SenderModel.inports,
        "params": "host",
        "s_in": "payload",
        "fb_in": "payload",
        "switch_in": "switch",
        "a_in": "payload",
        "frozen_in": "flag",
    }
    outports = {"s_out": "payload", "stat_out": "host", "switch_out": "switch", "state_out": "payload"}
    variables = {**_SenderModel.variables, "weight": "host", "bias": "host", "back_weight": "host"}
    peer_outputs = ("s_out", "stat_out", "switch_out")

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._gain = proc_params["gain"]
        self._dt = proc_params["dt"]
        self._fail_at = proc_params["fail_at_step"]
        self._fwd_spec, self._fb_spec = proc_params["forward"], proc_params["feedback"]
        self._exp, self._back_exp = proc_params["weight_exp"], proc_params["back_exp"]
        self._forward = EventDriven(self._forward_map)
        self._feedback = EventDriven(self._feedback_map)
        self._w: np.ndarray | None = None

    # -------------------------------------------------------------- the fan-in synapses
    def _reload(self, flat: np.ndarray) -> None:
        sizes = [self.weight.size, self.bias.size, 1, self.back_weight.size, 1]
        w, b, e, bw, be = np.split(flat, np.cumsum(sizes)[:-1])
        self.weight = w.reshape(self.weight.shape)
        self.bias = b.reshape(self.bias.shape)
        self.back_weight = bw.reshape(self.back_weight.shape)
        self._exp, self._back_exp = int(e[0]), int(be[0])
        self._cache()

    def _cache(self) -> None:
        """Weights in their sum dtypes, the bias as a payload (exact integers in fixed point)."""
        self._w = SynapticWeights(self.weight, self.num)
        self._b = self.bias.astype(np.int64) if self.num.fixed else self.bias.astype(self.num.np_dtype)
        if self._fb_spec is not None:
            if self._fb_spec["kind"] == "conv":
                self._back = SynapticWeights(transposed_kernel(self.back_weight), self.num)
            else:  # used as v @ W: an output sums over W's first axis
                self._back = SynapticWeights(self.back_weight, self.num, out_axis=1)
        self._forward.forget()
        self._feedback.forget()

    def _forward_map(self, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """``P(w * s + b)`` and its switches (conv), or ``W s + b`` (dense), from ``s^{n-1}``."""
        spec = self._fwd_spec
        s, w = self._w.cast(s)
        if spec["kind"] == "dense":
            return (self.num.synaptic(s.reshape(s.shape[0], -1) @ w.T, self._exp, self._b),)
        a = self.num.synaptic(conv2d(s, w, spec["padding"]), self._exp, self._b[None, :, None, None])
        return max_pool(a, spec["pool"])

    def _feedback_map(self, v: np.ndarray, *switch: np.ndarray) -> tuple[np.ndarray, ...]:
        """``w~ * P^-1(v)`` (conv, at the switches of the layer above) or ``W^T v`` (dense), from ``s^{n+1}``."""
        spec = self._fb_spec
        if spec["kind"] == "dense":
            v, w = self._back.cast(v)
            out = v.reshape(v.shape[0], -1) @ w
            return (self.num.synaptic(out, self._back_exp).reshape(v.shape[0], *self.s.shape[1:]),)
        up, w = self._back.cast(unpool(v, switch[0], spec["pool"], spec["pre_pool"][-2:]))
        acc = conv2d(up, w, transposed_padding(w, spec["padding"]))
        return (self.num.synaptic(acc, self._back_exp),)

    # -------------------------------------------------------------- a timestep
    def _step(self) -> None:
        msg = self._begin()
        if msg is not None and msg[4]:
            self._reload(self.params.recv())
        if self._w is None:
            self._cache()
        self._reset(msg)
        stats = self._emit()  # the previous timestep's state: the one-step delay
        if self._fail_at is not None and self._t == self._fail_at:
            raise InjectedFailure(
                f"injected failure (diagnostic option fail_at_step={self._fail_at}) in state layer "
                f"{self._index} at lava timestep {self._t}"
            )
        forward = self._forward(self.s_in.recv())
        if self.proc_params["switches_down"]:
            self._send("switch_out", forward[1])
        u = forward[0].astype(np.int64) if self.num.fixed else forward[0]
        if self._fb_spec is not None:
            v = self.fb_in.recv()
            inputs = (v, self.switch_in.recv()) if self._fb_spec["kind"] == "conv" else (v,)
            u = u + self._feedback(*inputs)[0]
        if self.proc_params["nudged"]:
            u = u + self.a_in.recv()
        frozen = self.frozen_in.recv().astype(bool)
        new = self.num.update(self.s, u, self._gain, self._dt)
        new[frozen] = self.s[frozen]
        stats[self._index, 0] = self.num.residual(new, self.s, self._dt)
        self._send("stat_out", stats)
        self.s = new
        if self._at_end():
            self.state_out.send(self.s)


class SynapticWeights:
    """A weight array in every dtype its sums may use (:meth:`Numerics.sum_dtype`) and the
    bound that picks one per call: ``l1``, the largest sum of ``|w|`` over one output's inputs
    (``out_axis``: the axis that indexes outputs)."""

    def __init__(self, w: np.ndarray, num: Numerics, out_axis: int = 0) -> None:
        self.num = num
        self.by_dtype = {dt: np.ascontiguousarray(w, dtype=dt) for dt in num.sum_dtypes}
        a = np.moveaxis(np.abs(np.asarray(w, dtype=np.float64)), out_axis, 0)
        self.l1 = float(a.reshape(a.shape[0], -1).sum(1).max()) if a.size else 0.0

    def cast(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` and the weights, both in the dtype in which ``w . x`` is exact (fixed point) or the payload's."""
        peak = float(np.abs(x).max()) if self.num.fixed and x.size else 0.0
        dt = self.num.sum_dtype(self.l1, peak)
        return x.astype(dt, copy=False), self.by_dtype[dt]


class EventDriven:
    """A synaptic map evaluated only for the samples whose inputs changed since its last call.

    A frozen or converged sample's inputs (and the constant image) do not change, so their
    outputs are resent, not recomputed. Each sample's outputs depend on its own inputs only,
    so this is exact. ``fn`` maps batch-first arrays (any batch size) to a tuple of
    batch-first outputs.
    """

    def __init__(self, fn) -> None:
        self.fn = fn
        self.forget()

    def forget(self) -> None:
        """Recompute every sample at the next call (new weights)."""
        self._inputs: tuple[np.ndarray, ...] | None = None
        self._outputs: tuple[np.ndarray, ...] = ()

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        last = self._inputs
        if last is None:
            outputs = self.fn(*inputs)
        else:
            batch = inputs[0].shape[0]
            changed = np.zeros(batch, dtype=bool)
            for new, old in zip(inputs, last):
                changed |= (new != old).reshape(batch, -1).any(1)
            if changed.all():
                outputs = self.fn(*inputs)
            else:
                outputs = self._outputs  # already sent: lava copies on send, so update in place
                if changed.any():
                    for o, f in zip(outputs, self.fn(*(a[changed] for a in inputs))):
                        o[changed] = f
        self._inputs = tuple(a.copy() for a in inputs)
        self._outputs = outputs
        return outputs


# ---------------------------------------------------------------------------- nudging
class _NudgeModel(_Chunked):
    """``-beta dL/ds^N`` at the drive scale; zeros while ``beta = 0``.

    The readout and softmax are evaluated in float64 from the received (decoded) state;
    in fixed point the drive is rounded to the drive scale ``S = 2**frac_bits`` and
    saturated, like every other payload.
    """

    inports = {"ctrl": "host", "params": "host", "s_in": "payload", "load": "host"}
    outports = {"a_out": "payload"}
    variables = {"weight": "host", "bias": "host"}
    peer_outputs = ("a_out",)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._target: np.ndarray | None = None
        self._w: np.ndarray | None = None

    def _step(self) -> None:
        msg = self._begin()
        if msg is not None and msg[1]:
            self._target = self.load.recv()
        if msg is not None and msg[4]:
            flat = self.params.recv()
            self.weight = flat[: self.weight.size].reshape(self.weight.shape)
            self.bias = flat[self.weight.size : self.weight.size + self.bias.size].reshape(self.bias.shape)
            self._w = None
        if self._w is None:
            self._w = np.asarray(self.weight, dtype=np.float64)
            self._b = np.asarray(self.bias, dtype=np.float64)
        s = self.s_in.recv()
        if self.beta == 0.0:
            self._send("a_out", np.zeros(self.a_out.shape, dtype=self.num.np_dtype))
            return
        out = self.num.decode(s).reshape(s.shape[0], -1)
        if self.proc_params["output"] == "mse":
            grad = out - self._target
        else:
            logits = out @ self._w.T + self._b
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            grad = (p - self._target) @ self._w
        self._send("a_out", self.num.encode((-self.beta * grad).reshape(self.a_out.shape)))


# ---------------------------------------------------------------------------- monitor
class _MonitorModel(_Chunked):
    """Residuals, freezing and activity counts (the same in every precision)."""

    inports = {"ctrl": "host", "stat_in": "host"}
    outports = {"frozen_out": "flag", "report": "host"}
    peer_outputs = ("frozen_out",)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._frozen = None
        self._when = None
        self._rows: list[np.ndarray] = []
        self._tol: float | None = None
        self._t = 0

    def _step(self) -> None:
        msg = self._begin()
        batch = self.frozen_out.shape[0]
        if msg is not None:
            self._tol = float(msg[2]) if msg[2] >= 0 else None
            self._rows = []
            if msg[1] or self._frozen is None:
                self._frozen = np.zeros(batch, dtype=bool)
                self._when = np.zeros(batch)
                self._t = 0
        self._send("frozen_out", self._frozen.astype(np.int32))  # decided at the previous timestep
        stats = self.stat_in.recv()
        r = stats[:, 0].max(0)
        self._t += 1
        self._rows.append(np.stack([r, stats[:, 1].sum(0), stats[:, 2].sum(0)]))
        if self._tol is not None:
            newly = (r < self._tol) & ~self._frozen
            self._when[newly] = self._t
            self._frozen |= newly
        if self._at_end():
            rows = self.proc_params["rows"]
            report = np.zeros(self.report.shape)
            got = np.stack(self._rows, 1)  # (3, n, B)
            for k in range(3):
                report[k * rows : k * rows + got.shape[1]] = got[k]
            report[-2] = self._frozen
            report[-1] = self._when
            self.report.send(report)


# ---------------------------------------------------------------------------- registration
#: the one implementation of every Process
IMPLEMENTATIONS: dict[type, type[_Guarded]] = {
    P.InputLayer: _InputModel,
    P.StateLayer: _StateModel,
    P.Nudge: _NudgeModel,
    P.Monitor: _MonitorModel,
}

_MODELS: dict[tuple[type, str, str], type] = {}


def _typed_model(proc: type, impl: type[_Guarded], num: Numerics) -> type:
    """``impl`` with its ports/Vars typed for ``num``, registered for ``proc`` (cached, module-level)."""
    key = (proc, num.precision, num.dtype)
    if key not in _MODELS:
        attrs: dict[str, object] = {"__module__": __name__}
        for name, kind in impl.inports.items():
            attrs[name] = _lava_type(kind, "in", num)
        for name, kind in impl.outports.items():
            attrs[name] = _lava_type(kind, "out", num)
        for name, kind in impl.variables.items():
            attrs[name] = _lava_type(kind, "var", num)
        name = f"Py{proc.__name__}_{num.precision}_{num.dtype}"
        cls = type(name, (impl,), attrs)
        cls.__qualname__ = name
        cls = tag(num.precision)(requires(CPU)(implements(proc=proc, protocol=LoihiProtocol)(cls)))
        globals()[name] = cls  # importable by name, as lava's own models are
        _MODELS[key] = cls
    return _MODELS[key]


def model_map(num: Numerics) -> dict[type, type]:
    """Process class -> ProcessModel class for ``num`` (``Loihi2SimCfg(exception_proc_model_map=...)``)."""
    return {proc: _typed_model(proc, impl, num) for proc, impl in IMPLEMENTATIONS.items()}
