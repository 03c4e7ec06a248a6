"""Lava Processes of a settling EP-CNN: *what* each part holds and which ports it has.

Every port carries a whole batch: arrays ``(B, ...)``. One lava timestep is one
synchronous (Jacobi) update of all state layers; see docs/lava.md for the diagram.

* :class:`InputLayer` holds ``s^0`` (normalised images) and sends it every timestep.
* :class:`StateLayer` holds ``s^n``; at each timestep it first sends the state of the
  previous timestep (**the network's one-step delay**), then receives its summed drive
  (lava adds the messages of every OutPort connected to ``a_in``: forward + feedback)
  and updates ``s <- (1 - dt) s + dt sigma(u)``.
* :class:`ConvSynapses` ``w * s + b`` (pre-pooling), :class:`MaxPool` (pooled map and
  switches), :class:`Unpool` (``P^-1``: feedback to the switch positions of the current
  forward conv), :class:`ConvTransposeSynapses` ``w~ * v``, :class:`DenseSynapses`
  ``W s + b`` and :class:`DenseTransposeSynapses` ``W^T v``: stateless, they receive and
  send within the same timestep.
* :class:`Monitor` collects per-sample residuals, freezes converged samples (as the
  digital loop does) and reports to the host every chunk of timesteps.

Host I/O goes through lava's external pipes (as ``lava.proc.io.injector``/``extractor``):
``ctrl`` (``[steps of this chunk, reset, tol]`` at the first timestep of every chunk),
``load`` (new images/initial states, read when ``reset`` is set) and ``state_out`` /
``report`` (sent at the last timestep of every chunk). ``Var.get``/``Var.set`` would move
arrays one element per message.
"""

from __future__ import annotations

from ephw.lava import compat

compat.install()

from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402

#: ``ctrl`` message: ``[timesteps in this chunk, reset (0/1), tol (< 0: none)]``.
CTRL_SIZE = 3
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


class InputLayer(AbstractProcess):
    """``s^0``: normalised images ``(B, C, H, W)``, loaded by the host, sent every timestep."""

    def __init__(self, *, shape: tuple[int, ...], **kwargs) -> None:
        super().__init__(shape=shape, **kwargs)
        self.s_out = OutPort(shape=shape)
        self.ctrl = _host_in((CTRL_SIZE,))
        self.load = _host_in(shape)
        self.s = Var(shape=shape, init=0)


class StateLayer(AbstractProcess):
    """A dynamic layer ``s^n`` ``(B, *shape)``: ``s <- (1 - dt) s + dt clamp(g u, 0, 1)``.

    Args:
        shape: ``(B, *state_shape)``.
        index: 0-based layer index (its row in the monitor's residual matrix).
        n_layers: number of state layers.
        gain: slope ``g`` of the hard sigmoid.
        dt: damping of the update (1: plain Jacobi iteration).
        fixed: fixed-point parameters (``frac_bits``, ``payload_bits``) or ``None``.
        fail_at_step: diagnostic/test hook: raise inside the process model at this timestep.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        index: int,
        n_layers: int,
        gain: float,
        dt: float,
        fixed: dict | None = None,
        fail_at_step: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(shape=shape, index=index, gain=gain, dt=dt, fixed=fixed, fail_at_step=fail_at_step, **kwargs)
        batch = shape[0]
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.r_out = OutPort(shape=(n_layers, batch))
        self.frozen_in = InPort(shape=(batch,))
        self.ctrl = _host_in((CTRL_SIZE,))
        self.load = _host_in(shape)
        self.state_out = _host_out(shape)
        self.s = Var(shape=shape, init=0)


class ConvSynapses(AbstractProcess):
    """Forward conv ``w * s + b`` ``(B, C_in, H, W) -> (B, C_out, H', W')`` (pre-pooling)."""

    def __init__(self, *, in_shape, out_shape, weight, bias, padding: int, weight_exp: int = 0, **kwargs) -> None:
        super().__init__(padding=padding, weight_exp=weight_exp, **kwargs)
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)


class ConvTransposeSynapses(AbstractProcess):
    """Feedback ``w~ * v`` ``(B, C_out, H', W') -> (B, C_in, H, W)`` (no bias)."""

    def __init__(self, *, in_shape, out_shape, weight, padding: int, weight_exp: int = 0, **kwargs) -> None:
        super().__init__(padding=padding, weight_exp=weight_exp, **kwargs)
        self.a_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.weight = Var(shape=weight.shape, init=weight)


class MaxPool(AbstractProcess):
    """``pool x pool`` max pooling: sends the pooled drive and the switches (argmax positions)."""

    def __init__(self, *, in_shape, out_shape, pool: int, **kwargs) -> None:
        super().__init__(pool=pool, **kwargs)
        self.a_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.switch_out = OutPort(shape=out_shape)


class Unpool(AbstractProcess):
    """``P^-1``: routes a pooled state to the switch positions of the current forward conv."""

    def __init__(self, *, in_shape, out_shape, pool: int, **kwargs) -> None:
        super().__init__(pool=pool, **kwargs)
        self.s_in = InPort(shape=in_shape)
        self.switch_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)


class DenseSynapses(AbstractProcess):
    """Forward ``W s + b``: ``(B, *in) -> (B, out)`` (the input is flattened)."""

    def __init__(self, *, in_shape, out_shape, weight, bias, weight_exp: int = 0, **kwargs) -> None:
        super().__init__(weight_exp=weight_exp, **kwargs)
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)


class DenseTransposeSynapses(AbstractProcess):
    """Feedback ``W^T v``: ``(B, out) -> (B, *in)``."""

    def __init__(self, *, in_shape, out_shape, weight, weight_exp: int = 0, **kwargs) -> None:
        super().__init__(weight_exp=weight_exp, **kwargs)
        self.a_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.weight = Var(shape=weight.shape, init=weight)


class Monitor(AbstractProcess):
    """Convergence monitor of ``n_layers`` layers and ``batch`` samples.

    Per timestep: ``r = max`` over the layers' residual rows; samples with ``r < tol`` are
    frozen (sent to the layers, which stop updating them from the next timestep on, as the
    digital loop does). At the end of a chunk it reports ``(rows + 2, B)``: the residual of
    each timestep of the chunk, then the frozen flags, then each sample's freezing timestep.
    """

    def __init__(self, *, n_layers: int, batch: int, rows: int, **kwargs) -> None:
        super().__init__(rows=rows, **kwargs)
        self.r_in = InPort(shape=(n_layers, batch))
        self.frozen_out = OutPort(shape=(batch,))
        self.ctrl = _host_in((CTRL_SIZE,))
        self.report = _host_out((rows + 2, batch))
