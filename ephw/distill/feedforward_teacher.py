"""A feed-forward teacher: the control of attractor distillation.

The seed paper distils students from an EP-CNN's fixed points and finds them more robust than a
BP-CNN. Whether that robustness comes from the energy-based teacher or from distillation as
such (soft targets) is what the same students distilled from a **BP-CNN of the same topology and
activation** answer. :class:`FeedForwardTeacher` gives such a network the interface of the EP
:class:`~ephw.distill.teacher.Teacher`: the same :class:`~ephw.distill.teacher.TeacherTargets`,

- ``hidden``: the post-activation layer states :meth:`EPTopologyCNN.states` returns, in the
  layout and range (``[0, 1]``, hard sigmoid) of the EP fixed point's states (Eq. 8);
- ``output``: its class distribution by the EP teacher's convention
  (:func:`~ephw.distill.teacher.output_distribution`: the softmax of the logits for a ``softmax``
  readout, the normalised output state for ``mse``) (Eq. 8's CE term, Eq. 9);

computed by one forward pass (nothing settles: ``steps`` are 0, ``converged`` is ``None``) and
cached per teacher and images as the EP teacher's fixed points are. A ``relu-bn`` network's
activations are neither in ``[0, 1]`` nor the EP states, so it teaches Eq. 9 only (its
``hidden`` is empty).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ephw.checkpoint import checkpoint_format
from ephw.distill.teacher import TargetSource, TeacherTargets, output_distribution
from ephw.errors import ConfigError
from ephw.feedforward import EPTopologyCNN
from ephw.model import ModelConfig

#: What a feed-forward teacher's student records as its ``teacher_backend`` (nothing settles).
FEEDFORWARD_BACKEND = "feedforward"


def is_feedforward_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` (a file or a shipped name) is a feed-forward ephw model (``ephw.feedforward*``)."""
    return checkpoint_format(path).startswith("ephw.feedforward")


class FeedForwardTeacher(TargetSource):
    """A feed-forward EP-topology CNN (a BP-CNN) as a distillation teacher.

    Args:
        net: the trained :class:`~ephw.feedforward.EPTopologyCNN` (``load_feedforward``).
        eq8: whether a student matches its hidden states (Eq. 8); refused for a ``relu-bn``
            network, whose activations are not EP states.

    Raises:
        ConfigError: (one line) ``net`` is no EP-topology CNN, or Eq. 8 of a ``relu-bn`` one.
    """

    kind: ClassVar[str] = "feedforward"

    def __init__(self, net: nn.Module, eq8: bool = True) -> None:
        if not isinstance(net, EPTopologyCNN):
            raise ConfigError(
                f"a feed-forward teacher must be an EP-topology CNN (BP-CNN, Adv-CNN), not a {type(net).__name__}"
            )
        if eq8 and net.spec.activation != "hard-sigmoid":
            raise ConfigError(
                f"a {net.spec.activation} teacher's activations are not EP states (not in [0, 1]): "
                "it can teach Eq. 9 students (cnn-ll, resnet18), not the Eq. 8 one (cnn)"
            )
        self.net = net.eval()

    @property
    def config(self) -> ModelConfig:
        """The network's EP topology."""
        return self.net.spec.config

    @property
    def has_states(self) -> bool:
        """Whether its hidden activations are EP states (hard sigmoid), i.e. targets for Eq. 8."""
        return self.net.spec.activation == "hard-sigmoid"

    @property
    def n_hidden(self) -> int:
        """Number of hidden state layers (the MSE terms of Eq. 8); 0 for a ``relu-bn`` network."""
        if not self.has_states:
            return 0
        cfg = self.config
        return len(cfg.state_shapes()) - (cfg.output == "mse")

    @torch.no_grad()
    def targets(self, x: Tensor) -> TeacherTargets:
        """The targets of a batch of images ``x (B, C, H, W)`` in ``[0, 1]``: one forward pass."""
        param = next(self.net.parameters())
        out = self.net.states(x.to(param.device, param.dtype))
        states, logits = out[:-1], out[-1]
        mse = self.config.output == "mse"
        output = output_distribution(self.config.output, logits, states[-1] if mse else None)
        hidden = [s.contiguous() for s in states[: self.n_hidden]]
        steps = torch.zeros(x.shape[0], dtype=torch.int64)
        return TeacherTargets(hidden, output, logits.argmax(1), steps, None)

    def describe(self) -> dict[str, Any]:
        """What teaches (for checkpoint meta): no backend, no settle, the network's activation and readout."""
        return {
            "backend": FEEDFORWARD_BACKEND,
            "activation": self.net.spec.activation,
            "output": self.config.output,
            "hidden": "post-activation states" if self.has_states else "none (not EP states)",
        }
