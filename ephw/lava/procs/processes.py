"""Lava Processes of a settling EP-CNN: *what* each part holds and which ports it has.

Every port carries a whole batch: arrays ``(B, ...)``. One lava timestep is one
synchronous (Jacobi) update of all state layers; see docs/lava.md for the diagram.

* :class:`InputLayer` holds ``s^0`` (normalised images) and sends it every timestep.
* :class:`StateLayer` holds ``s^n`` and the synapses that end on it, as a Loihi core
  holds its neurons' fan-in synapses: the forward projection from ``s^{n-1}``
  (``P(w_n * s + b_n)``: conv, bias and max pooling, or dense ``W_n s + b_n``) and, below
  the top, the feedback from ``s^{n+1}`` (``w~_{n+1} * P^-1(v)``: unpooling to the switches
  that layer ``n+1``'s forward pooling sends within the timestep, then the transposed conv;
  or dense ``W_{n+1}^T v``). At each timestep it first sends the state of the previous
  timestep (**the network's one-step delay**), then evaluates its drive
  ``u = forward + feedback (+ nudge)`` and updates ``s <- (1 - dt) s + dt sigma(u)``. Its
  weights can be re-loaded by the host. Messages between processes are states (and pooling
  switches): what travels between cores.
* :class:`Nudge` computes the output nudging drive ``-beta dL/ds^N`` from the last state
  layer (target and ``beta`` loaded by the host), added to that layer's input.
* Input and state layers optionally send **deltas** (sigma-delta messaging): a neuron
  sends only when its state moved more than a threshold since its last message; every
  sender reports per sample the messages it sent and the synaptic operations they cause.
* :class:`Monitor` collects per-sample residuals, freezes converged samples (as the
  digital loop does) and reports to the host every chunk of timesteps.

Host I/O goes through lava's external pipes (as ``lava.proc.io.injector``/``extractor``):
``ctrl`` (:data:`CTRL_SIZE` numbers at the first timestep of every chunk),
``load`` (new images/initial states/targets, read when ``reset`` is set), ``params``
(flattened weights, biases and weight exponent, read when ``reload`` is set) and ``state_out`` /
``report`` (sent at the last timestep of every chunk). ``Var.get``/``Var.set`` would move
arrays one element per message.
"""

from __future__ import annotations

import numpy as np

from ephw.lava import compat

compat.install()

from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402

#: ``ctrl`` message: ``[timesteps in this chunk, reset (0/1), tol (< 0: none), beta, reload weights (0/1)]``.
CTRL_SIZE = 5
#: Rows of a sender's statistics block: residual ``max |ds| / dt``, messages sent, synaptic operations.
STAT_ROWS = 3
#: Messages buffered on each external pipe.
PIPE_BUFFER = 2


def _host_in(shape: tuple[int, ...]) -> InPort:
    port = InPort(shape=shape)
    port.flag_external_pipe(buffer_size=PIPE_BUFFER)
    return port


def _host_out(shape: tuple[int, ...]) -> OutPort:
    port = OutPort(shape=shape)
    port.flag_external_pipe(buffer_size=PIPE_BUFFER)
    return port


class _Controlled(AbstractProcess):
    """A process that receives the host's ``ctrl`` message at the start of every chunk."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctrl = _host_in((CTRL_SIZE,))


class _Sender(_Controlled):
    """A layer that sends its state ``(B, *shape)`` (dense or as deltas) and reports statistics.

    Args:
        shape: ``(B, *state_shape)``.
        index: the row block of this sender in the monitor's ``(n_senders, STAT_ROWS, B)`` input.
        n_senders: input layer + state layers.
        numerics: :class:`~ephw.lava.procs.models.Numerics` parameters (``dict``).
        delta_threshold: ``None``: send every state every timestep; ``T >= 0``: send a
            neuron's state only where it moved more than ``T`` (state units) since its last message.
        fanout: ``(*state_shape)`` synapses each neuron drives (for the synaptic-op count).
    """

    def __init__(self, *, shape, index: int, n_senders: int, numerics: dict, delta_threshold, fanout, **kwargs) -> None:
        super().__init__(
            shape=shape, index=index, numerics=numerics, delta_threshold=delta_threshold, fanout=fanout, **kwargs
        )
        self.s_out = OutPort(shape=shape)
        self.stat_out = OutPort(shape=(n_senders, STAT_ROWS, shape[0]))
        self.load = _host_in(shape)
        self.s = Var(shape=shape, init=0)


class InputLayer(_Sender):
    """``s^0``: normalised images ``(B, C, H, W)``, loaded by the host, sent every timestep."""


class StateLayer(_Sender):
    """A dynamic layer ``s^n`` ``(B, *shape)`` with its fan-in synapses: ``s <- (1 - dt) s + dt clamp(g u, 0, 1)``.

    Args (besides :class:`_Sender`'s):
        gain: slope ``g`` of the hard sigmoid.
        dt: damping of the update (1: plain Jacobi iteration).
        forward: the projection from ``s^{n-1}``: ``{"kind": "conv"|"dense", "padding", "pool",
            "src": (B, *s^{n-1}), "pre_pool": (B, *conv output)}``; ``weight``, ``bias``,
            ``weight_exp`` its numbers.
        feedback: the projection from ``s^{n+1}`` (the next layer's ``forward`` dict, with
            ``"dst": (B, *s^{n+1})``), or ``None`` for the top layer; ``back_weight``,
            ``back_exp`` its numbers (the next layer's forward weights).
        switches_down: send this layer's pooling switches to the layer below (its feedback
            needs them); false when the layer below is the input.
        nudged: the top layer: receives the :class:`Nudge` drive.
        fail_at_step: diagnostic/test hook: raise inside the process model at this timestep.

    ``params`` carries ``[weight, bias, weight_exp, back_weight, back_exp]`` flattened (float64).
    """

    def __init__(
        self,
        *,
        shape,
        gain: float,
        dt: float,
        forward: dict,
        weight,
        bias,
        weight_exp: int,
        feedback: dict | None = None,
        back_weight=None,
        back_exp: int = 0,
        switches_down: bool = False,
        nudged: bool = False,
        fail_at_step: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            shape=shape,
            gain=gain,
            dt=dt,
            forward=forward,
            weight_exp=weight_exp,
            feedback=feedback,
            back_exp=back_exp,
            switches_down=switches_down,
            nudged=nudged,
            fail_at_step=fail_at_step,
            **kwargs,
        )
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)
        back = back_weight if back_weight is not None else np.zeros(1)
        self.back_weight = Var(shape=back.shape, init=back)
        self.params = _host_in((weight.size + bias.size + back.size + 2,))
        self.s_in = InPort(shape=tuple(forward["src"]))
        # unused ports of a layer stay unconnected and are never read
        above = tuple(feedback["dst"]) if feedback is not None else shape
        self.fb_in = InPort(shape=above)
        self.switch_in = InPort(shape=above)
        self.switch_out = OutPort(shape=shape)
        self.a_in = InPort(shape=shape)  # the nudge drive (top layer)
        self.frozen_in = InPort(shape=(shape[0],))
        self.state_out = _host_out(shape)


class Nudge(_Controlled):
    """Output nudging ``-beta dL/ds^N`` ``(B, *shape)`` from the last state layer's ``s^N``.

    ``output="softmax"``: ``L = CE(W s + b, y)``, ``dL/ds = W^T (softmax(W s + b) - y)``
    (``weight`` ``(classes, n)``, ``bias`` ``(classes,)``: the readout); ``output="mse"``:
    ``L = |s - y|^2 / 2``, ``dL/ds = s - y`` (``weight`` unused). ``beta`` arrives with every
    ``ctrl`` message, the target ``y`` ``(B, classes)`` on ``load`` at every reset; ``params``
    carries ``[weight, bias, 0]`` flattened.
    """

    def __init__(self, *, shape, classes: int, output: str, weight, bias, numerics: dict, **kwargs) -> None:
        super().__init__(output=output, numerics=numerics, weight_exp=0, **kwargs)
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)
        self.params = _host_in((weight.size + bias.size + 1,))
        self.s_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
        self.load = _host_in((shape[0], classes))


class Monitor(_Controlled):
    """Convergence monitor and activity counter of ``n_senders`` senders and ``batch`` samples.

    Per timestep: ``r = max`` over the state layers' residuals; samples with ``r < tol`` are
    frozen (sent to the layers, which stop updating them from the next timestep on, as the
    digital loop does); messages and synaptic operations are summed over the senders. At the
    end of a chunk it reports ``(3 rows + 2, B)``: per timestep of the chunk the residuals,
    then the messages, then the synaptic operations; then the frozen flags and each sample's
    freezing timestep.
    """

    def __init__(self, *, n_senders: int, batch: int, rows: int, **kwargs) -> None:
        super().__init__(rows=rows, **kwargs)
        self.stat_in = InPort(shape=(n_senders, STAT_ROWS, batch))
        self.frozen_out = OutPort(shape=(batch,))
        self.report = _host_out((STAT_ROWS * rows + 2, batch))
