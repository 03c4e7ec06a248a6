"""numpy ProcessModels of the EP-CNN Processes, tagged ``floating_pt`` and ``fixed_pt``.

*How* each Process computes, on the CPU of lava's ``Loihi2SimCfg``. The floating-point
models compute in float64; the fixed-point ones follow :mod:`ephw.lava.fixed_point`
(8-bit weight mantissas with a shared exponent per projection, integer states at scale
``2**frac_bits``, 24-bit saturated graded payloads). No torch in here: lava runs these in
forked children, where torch can hang.

Within a timestep, messages flow layer -> synapses -> (pool ->) layer; state layers send
their previous state first, which makes the one-step delay of every loop.
"""

from __future__ import annotations

import numpy as np

from ephw.lava import compat

compat.install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

from ephw.lava.conv import conv2d, conv2d_transpose, max_pool, unpool  # noqa: E402
from ephw.lava.fixed_point import saturate, shift  # noqa: E402
from ephw.lava.procs.processes import (  # noqa: E402
    ConvSynapses,
    ConvTransposeSynapses,
    DenseSynapses,
    DenseTransposeSynapses,
    InputLayer,
    MaxPool,
    Monitor,
    StateLayer,
    Unpool,
)

PAYLOAD_BITS = 24

FLOAT_IN = LavaPyType(PyInPort.VEC_DENSE, float)
FLOAT_OUT = LavaPyType(PyOutPort.VEC_DENSE, float)
INT_IN = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=PAYLOAD_BITS)
INT_OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=PAYLOAD_BITS)
SWITCH_IN = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
SWITCH_OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
FLAG_IN = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
FLAG_OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)


class InjectedFailure(RuntimeError):
    """Raised by a process model when the diagnostic ``fail_at_step`` hook fires."""


class _Guarded(PyLoihiProcessModel):
    """Runs :meth:`_step`; if it raises, first sends zeros on every peer OutPort not yet sent.

    A lava timestep completes only when every model has answered; a model that dies
    before sending would leave its peers blocked in ``recv`` and lava's runtime waiting
    forever. Releasing them lets the error reach the host through lava's own error path.
    """

    #: names of the OutPorts connected to other models (not host pipes)
    peer_outputs: tuple[str, ...] = ()

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
    """Chunk bookkeeping shared by the models that talk to the host.

    At the first timestep of every chunk the model receives ``[steps, reset, tol]`` on
    its ``ctrl`` pipe; :meth:`_at_end` is true at the chunk's last timestep.
    """

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._next_ctrl = 1
        self._end = 0

    def _begin(self) -> np.ndarray | None:
        if self.time_step != self._next_ctrl:
            return None
        msg = self.ctrl.recv()
        self._end = self.time_step + int(msg[0]) - 1
        self._next_ctrl = self._end + 1
        return msg

    def _at_end(self) -> bool:
        return self.time_step == self._end


# ---------------------------------------------------------------------------- input
class _InputModel(_Chunked):
    peer_outputs = ("s_out",)

    def _step(self) -> None:
        msg = self._begin()
        if msg is not None and msg[1]:
            self.s = self.load.recv()
        self._send("s_out", self.s)


@implements(proc=InputLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyInputLayerFloat(_InputModel):
    s_out: PyOutPort = FLOAT_OUT
    ctrl: PyInPort = FLOAT_IN
    load: PyInPort = FLOAT_IN
    s: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=InputLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyInputLayerFixed(_InputModel):
    s_out: PyOutPort = INT_OUT
    ctrl: PyInPort = FLOAT_IN
    load: PyInPort = INT_IN
    s: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=PAYLOAD_BITS)


# ---------------------------------------------------------------------------- state layers
class _StateModel(_Chunked):
    """``s <- (1 - dt) s + dt sigma(u)`` for samples not frozen by the monitor."""

    peer_outputs = ("s_out", "r_out")

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._index = proc_params["index"]
        self._gain = proc_params["gain"]
        self._dt = proc_params["dt"]
        self._fail_at = proc_params["fail_at_step"]
        self._t = 0  # timesteps since the last reset

    def _step(self) -> None:
        msg = self._begin()
        if msg is not None and msg[1]:
            self.s = self.load.recv()
            self._t = 0
        self._t += 1
        self._send("s_out", self.s)  # the previous timestep's state: the one-step delay
        if self._fail_at is not None and self._t == self._fail_at:
            raise InjectedFailure(
                f"injected failure (diagnostic option fail_at_step={self._fail_at}) in state layer "
                f"{self._index + 1} at lava timestep {self._t}"
            )
        u = self.a_in.recv()
        frozen = self.frozen_in.recv().astype(bool)
        new = self._update(u)
        new[frozen] = self.s[frozen]
        rows = np.zeros(self.r_out.shape)
        rows[self._index] = self._residual(new)
        self._send("r_out", rows)
        self.s = new
        if self._at_end():
            self.state_out.send(self.s)

    def _update(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _residual(self, new: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@implements(proc=StateLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyStateLayerFloat(_StateModel):
    a_in: PyInPort = FLOAT_IN
    s_out: PyOutPort = FLOAT_OUT
    r_out: PyOutPort = FLOAT_OUT
    frozen_in: PyInPort = FLAG_IN
    ctrl: PyInPort = FLOAT_IN
    load: PyInPort = FLOAT_IN
    state_out: PyOutPort = FLOAT_OUT
    s: np.ndarray = LavaPyType(np.ndarray, float)

    def _update(self, u: np.ndarray) -> np.ndarray:
        target = np.clip(u * self._gain, 0.0, 1.0)
        return target if self._dt == 1.0 else self.s + self._dt * (target - self.s)

    def _residual(self, new: np.ndarray) -> np.ndarray:
        return np.abs(new - self.s).reshape(new.shape[0], -1).max(1) / self._dt


@implements(proc=StateLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyStateLayerFixed(_StateModel):
    a_in: PyInPort = INT_IN
    s_out: PyOutPort = INT_OUT
    r_out: PyOutPort = FLOAT_OUT
    frozen_in: PyInPort = FLAG_IN
    ctrl: PyInPort = FLOAT_IN
    load: PyInPort = INT_IN
    state_out: PyOutPort = INT_OUT
    s: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=PAYLOAD_BITS)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        fixed = proc_params["fixed"]
        self._scale = 1 << fixed["frac_bits"]
        self._payload = fixed["payload_bits"]
        self._gain_shift = fixed["gain_shift"]
        self._dt_shift = fixed["dt_shift"]

    def _update(self, u: np.ndarray) -> np.ndarray:
        u = saturate(u.astype(np.int64), self._payload)  # the dendritic sum of forward + feedback payloads
        target = np.clip(shift(u, self._gain_shift), 0, self._scale)
        s = self.s.astype(np.int64)
        new = target if self._dt_shift == 0 else s + shift(target - s, -self._dt_shift)
        return new.astype(np.int32)

    def _residual(self, new: np.ndarray) -> np.ndarray:
        diff = np.abs(new.astype(np.int64) - self.s).reshape(new.shape[0], -1).max(1)
        return diff * (2.0**self._dt_shift / self._scale)


# ---------------------------------------------------------------------------- synapses
class _FixedSynapses(_Guarded):
    """Integer synaptic sums: ``shift(sum w_int s, weight_exp)`` (+ bias), saturated payloads."""

    peer_outputs = ("a_out",)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._exp = proc_params["weight_exp"]
        self._w = None

    def _weight(self) -> np.ndarray:
        if self._w is None:  # float64 copy: the integer sums are exact below 2**53
            self._w = self.weight.astype(np.float64)
        return self._w

    def _finish(self, acc: np.ndarray, bias: np.ndarray | int = 0) -> np.ndarray:
        out = shift(np.rint(acc).astype(np.int64), self._exp) + bias
        return saturate(out, PAYLOAD_BITS).astype(np.int32)


@implements(proc=ConvSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyConvSynapsesFloat(_Guarded):
    peer_outputs = ("a_out",)
    s_in: PyInPort = FLOAT_IN
    a_out: PyOutPort = FLOAT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def _step(self) -> None:
        s = self.s_in.recv()
        self._send("a_out", conv2d(s, self.weight, self.proc_params["padding"]) + self.bias[None, :, None, None])


@implements(proc=ConvSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvSynapsesFixed(_FixedSynapses):
    s_in: PyInPort = INT_IN
    a_out: PyOutPort = INT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=9)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=PAYLOAD_BITS)

    def _step(self) -> None:
        s = self.s_in.recv().astype(np.float64)
        acc = conv2d(s, self._weight(), self.proc_params["padding"])
        self._send("a_out", self._finish(acc, self.bias.astype(np.int64)[None, :, None, None]))


@implements(proc=ConvTransposeSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyConvTransposeSynapsesFloat(_Guarded):
    peer_outputs = ("a_out",)
    a_in: PyInPort = FLOAT_IN
    a_out: PyOutPort = FLOAT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, float)

    def _step(self) -> None:
        self._send("a_out", conv2d_transpose(self.a_in.recv(), self.weight, self.proc_params["padding"]))


@implements(proc=ConvTransposeSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvTransposeSynapsesFixed(_FixedSynapses):
    a_in: PyInPort = INT_IN
    a_out: PyOutPort = INT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=9)

    def _step(self) -> None:
        v = self.a_in.recv().astype(np.float64)
        self._send("a_out", self._finish(conv2d_transpose(v, self._weight(), self.proc_params["padding"])))


@implements(proc=DenseSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDenseSynapsesFloat(_Guarded):
    peer_outputs = ("a_out",)
    s_in: PyInPort = FLOAT_IN
    a_out: PyOutPort = FLOAT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def _step(self) -> None:
        s = self.s_in.recv()
        self._send("a_out", s.reshape(s.shape[0], -1) @ self.weight.T + self.bias)


@implements(proc=DenseSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDenseSynapsesFixed(_FixedSynapses):
    s_in: PyInPort = INT_IN
    a_out: PyOutPort = INT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=9)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=PAYLOAD_BITS)

    def _step(self) -> None:
        s = self.s_in.recv().astype(np.float64)
        self._send("a_out", self._finish(s.reshape(s.shape[0], -1) @ self._weight().T, self.bias.astype(np.int64)))


@implements(proc=DenseTransposeSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDenseTransposeSynapsesFloat(_Guarded):
    peer_outputs = ("a_out",)
    a_in: PyInPort = FLOAT_IN
    a_out: PyOutPort = FLOAT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, float)

    def _step(self) -> None:
        self._send("a_out", (self.a_in.recv() @ self.weight).reshape(self.a_out.shape))


@implements(proc=DenseTransposeSynapses, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDenseTransposeSynapsesFixed(_FixedSynapses):
    a_in: PyInPort = INT_IN
    a_out: PyOutPort = INT_OUT
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=9)

    def _step(self) -> None:
        v = self.a_in.recv().astype(np.float64)
        self._send("a_out", self._finish(v @ self._weight()).reshape(self.a_out.shape))


# ---------------------------------------------------------------------------- pooling
class _MaxPoolModel(_Guarded):
    peer_outputs = ("a_out", "switch_out")

    def _step(self) -> None:
        pooled, switch = max_pool(self.a_in.recv(), self.proc_params["pool"])
        self._send("a_out", pooled)
        self._send("switch_out", switch.astype(np.int32))


@implements(proc=MaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyMaxPoolFloat(_MaxPoolModel):
    a_in: PyInPort = FLOAT_IN
    a_out: PyOutPort = FLOAT_OUT
    switch_out: PyOutPort = SWITCH_OUT


@implements(proc=MaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMaxPoolFixed(_MaxPoolModel):
    a_in: PyInPort = INT_IN
    a_out: PyOutPort = INT_OUT
    switch_out: PyOutPort = SWITCH_OUT


class _UnpoolModel(_Guarded):
    peer_outputs = ("a_out",)

    def _step(self) -> None:
        v = self.s_in.recv()
        switch = self.switch_in.recv()
        self._send("a_out", unpool(v, switch, self.proc_params["pool"], self.a_out.shape[2:]))


@implements(proc=Unpool, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyUnpoolFloat(_UnpoolModel):
    s_in: PyInPort = FLOAT_IN
    switch_in: PyInPort = SWITCH_IN
    a_out: PyOutPort = FLOAT_OUT


@implements(proc=Unpool, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyUnpoolFixed(_UnpoolModel):
    s_in: PyInPort = INT_IN
    switch_in: PyInPort = SWITCH_IN
    a_out: PyOutPort = INT_OUT


# ---------------------------------------------------------------------------- monitor
@implements(proc=Monitor, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyMonitor(_Chunked):
    """Host-side bookkeeping (the same in both precisions): residuals and freezing."""

    peer_outputs = ("frozen_out",)

    r_in: PyInPort = FLOAT_IN
    frozen_out: PyOutPort = FLAG_OUT
    ctrl: PyInPort = FLOAT_IN
    report: PyOutPort = FLOAT_OUT

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
        r = self.r_in.recv().max(0)
        self._t += 1
        self._rows.append(r)
        if self._tol is not None:
            newly = (r < self._tol) & ~self._frozen
            self._when[newly] = self._t
            self._frozen |= newly
        if self._at_end():
            report = np.zeros(self.report.shape)
            report[: len(self._rows)] = self._rows
            report[-2] = self._frozen
            report[-1] = self._when
            self.report.send(report)
