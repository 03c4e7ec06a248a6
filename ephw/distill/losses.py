"""Attractor-distillation losses (seed paper Eq. 8 and 9).

Eq. 8:  L = sum_{i=1}^{N-1} w_i MSE(s*^i, s~^i) + w_ce CE(s*^N, y~)
Eq. 9:  L = w_ce CE(s*^N, y~)

(the paper's loss has all weights 1; ``ephw distill`` defaults to ``w_i = 10``, ``w_ce = 1``,
see docs/distillation.md).

``MSE`` is the mean over a layer's units and the batch (``nn.MSELoss``); ``CE(s*^N, y~)`` is
the cross-entropy of the student's softmax against the teacher's output distribution
``p* = TeacherTargets.output`` (soft targets, temperature 1):
``-sum_k p*_k log softmax(y~)_k``, averaged over the batch -- equal to ``KL(p* || softmax y~)``
up to the teacher's entropy, which does not depend on the student.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ephw.distill.teacher import TeacherTargets
from ephw.errors import ConfigError


def soft_cross_entropy(target: Tensor, logits: Tensor) -> Tensor:
    """``mean_b -sum_k target[b, k] log softmax(logits)[b, k]`` for ``target, logits (B, classes)``."""
    return -(target * torch.log_softmax(logits, 1)).sum(1).mean()


def layer_weights(values: Sequence[float], n_hidden: int) -> list[float]:
    """Weights ``[w_1 .. w_{N-1}]`` of the hidden-layer MSE terms from one value (all alike) or ``n_hidden`` values."""
    if len(values) == 1:
        return [float(values[0])] * n_hidden
    if len(values) != n_hidden:
        raise ConfigError(f"layer weights need 1 or {n_hidden} values (one per hidden layer), got {len(values)}")
    return [float(v) for v in values]


def distill_loss(
    hidden: Sequence[Tensor] | None,
    logits: Tensor,
    targets: TeacherTargets,
    weights: Sequence[float] | None = None,
    ce_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 8 (``hidden`` given: the student's post-activation hidden states) or Eq. 9 (``hidden=None``).

    Args:
        hidden: ``N - 1`` tensors shaped like ``targets.hidden``, or ``None``.
        logits: the student's output ``(B, classes)``.
        targets: the teacher's fixed-point targets of the same images.
        weights: the hidden-layer weights ``w_1 .. w_{N-1}`` (:func:`layer_weights`; default all 1;
            unused for Eq. 9).
        ce_weight: weight ``w_ce`` of the output term.

    Returns:
        The scalar loss and its terms as floats (``mse1``, ``mse2``, ..., ``ce``).
    """
    ce = soft_cross_entropy(targets.output, logits)
    loss = ce_weight * ce
    parts = {"ce": float(ce.detach())}
    if hidden is not None:
        if len(hidden) != len(targets.hidden):
            raise ConfigError(f"student has {len(hidden)} hidden layers, teacher {len(targets.hidden)}")
        weights = [1.0] * len(hidden) if weights is None else weights
        if len(weights) != len(hidden):
            raise ConfigError(f"{len(weights)} layer weights for {len(hidden)} hidden layers")
        for i, (s, t, w) in enumerate(zip(hidden, targets.hidden, weights)):
            mse = F.mse_loss(s, t)
            loss = loss + w * mse
            parts[f"mse{i + 1}"] = float(mse.detach())
    return loss, parts
