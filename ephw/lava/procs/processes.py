"""Lava Processes of a settling EP-CNN: *what* each part holds and which ports it has.

Every port carries a whole batch: arrays ``(B, ...)``. One lava timestep is one
synchronous (Jacobi) update of all state layers; see docs/lava.md for the diagram.

* :class:`InputLayer` holds ``s^0`` (normalised images) and sends it every timestep.
* :class:`StateLayer` holds ``s^n``; at each timestep it first sends the state of the
  previous timestep (**the network's one-step delay**), then receives its summed drive
  (lava adds the messages of every OutPort connected to ``a_in``: forward + feedback)
  and updates ``s <- (1 - dt) s + dt sigma(u)``.
* :class:`ConvSynapses` ``P(w * s + b)`` (conv, bias and max pooling; it also sends the
  pooling switches), :class:`ConvTransposeSynapses` ``w~ * P^-1(v)`` (unpooling to the
  switches of the current forward conv, then the transposed conv), :class:`DenseSynapses`
  ``W s + b`` and :class:`DenseTransposeSynapses` ``W^T v``: stateless, they receive and
  send within the same timestep; their weights can be re-loaded by the host.
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
    """A dynamic layer ``s^n`` ``(B, *shape)``: ``s <- (1 - dt) s + dt clamp(g u, 0, 1)``.

    Args (besides :class:`_Sender`'s):
        gain: slope ``g`` of the hard sigmoid.
        dt: damping of the update (1: plain Jacobi iteration).
        fail_at_step: diagnostic/test hook: raise inside the process model at this timestep.
    """

    def __init__(self, *, shape, gain: float, dt: float, fail_at_step: int | None = None, **kwargs) -> None:
        super().__init__(shape=shape, gain=gain, dt=dt, fail_at_step=fail_at_step, **kwargs)
        self.a_in = InPort(shape=shape)
        self.frozen_in = InPort(shape=(shape[0],))
        self.state_out = _host_out(shape)


class _Synapses(_Controlled):
    """A linear map whose weights (and bias) the host can re-load: ``params`` carries
    ``[weight.ravel(), bias.ravel(), weight_exp]`` as float64."""

    def __init__(self, *, weight, bias=None, weight_exp: int = 0, numerics: dict, **kwargs) -> None:
        super().__init__(weight_exp=weight_exp, numerics=numerics, **kwargs)
        self.weight = Var(shape=weight.shape, init=weight)
        n = weight.size + 1
        if bias is not None:
            self.bias = Var(shape=bias.shape, init=bias)
            n += bias.size
        self.params = _host_in((n,))


class ConvSynapses(_Synapses):
    """``P(w * s + b)``: ``(B, C_in, H, W) -> (B, C_out, H'/p, W'/p)`` and the pooling switches."""

    def __init__(self, *, in_shape, out_shape, weight, bias, padding: int, pool: int, **kwargs) -> None:
        super().__init__(weight=weight, bias=bias, padding=padding, pool=pool, **kwargs)
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.switch_out = OutPort(shape=out_shape)


class ConvTransposeSynapses(_Synapses):
    """Feedback ``w~ * P^-1(v)``: ``(B, C_out, h, w) -> (B, C_in, H, W)`` (no bias)."""

    def __init__(self, *, in_shape, pre_pool, out_shape, weight, padding: int, pool: int, **kwargs) -> None:
        super().__init__(weight=weight, padding=padding, pool=pool, pre_pool=tuple(pre_pool), **kwargs)
        self.a_in = InPort(shape=in_shape)
        self.switch_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)


class DenseSynapses(_Synapses):
    """Forward ``W s + b``: ``(B, *in) -> (B, out)`` (the input is flattened)."""

    def __init__(self, *, in_shape, out_shape, weight, bias, **kwargs) -> None:
        super().__init__(weight=weight, bias=bias, **kwargs)
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)


class DenseTransposeSynapses(_Synapses):
    """Feedback ``W^T v``: ``(B, out) -> (B, *in)``."""

    def __init__(self, *, in_shape, out_shape, weight, **kwargs) -> None:
        super().__init__(weight=weight, **kwargs)
        self.a_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)


class Nudge(_Synapses):
    """Output nudging ``-beta dL/ds^N`` ``(B, *shape)`` from the last state layer's ``s^N``.

    ``output="softmax"``: ``L = CE(W s + b, y)``, ``dL/ds = W^T (softmax(W s + b) - y)``
    (``weight`` ``(classes, n)``, ``bias`` ``(classes,)``: the readout); ``output="mse"``:
    ``L = |s - y|^2 / 2``, ``dL/ds = s - y`` (``weight`` unused). ``beta`` arrives with every
    ``ctrl`` message, the target ``y`` ``(B, classes)`` on ``load`` at every reset.
    """

    def __init__(self, *, shape, classes: int, output: str, weight, bias, **kwargs) -> None:
        super().__init__(weight=weight, bias=bias, output=output, **kwargs)
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
