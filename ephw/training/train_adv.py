"""``ephw train adv``: Adv-CNN, BP-CNN trained on PGD-l2 examples (Madry et al. 2018).

The seed paper trained with 200 PGD iterations; every iteration costs one forward and one
backward pass, so an epoch costs about ``pgd_steps + 1`` BP epochs (200 steps: ~200x). The
default here is 10 iterations with Madry's step size ``2.5 eps / steps``, which reaches the
l2 ball's boundary and is the usual cheap setting (docs/distillation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw import distributed
from ephw.errors import ConfigError
from ephw.training.run import seeded
from ephw.training.train_bp import BPTrainSettings, train_classifier


@dataclass
class AdvTrainSettings(BPTrainSettings):
    """A BP-CNN run on PGD-l2 examples.

    Attributes:
        eps: l2 radius of the training perturbation, for images in ``[0, 1]``.
        pgd_steps: PGD iterations per batch (paper: 200).
        pgd_step_size: l2 length of each step (``None``: ``2.5 * eps / pgd_steps``).
        random_start: start each PGD run at a uniformly random point of the l2 ball.
    """

    eps: float = 0.5
    pgd_steps: int = 10
    pgd_step_size: float | None = None
    random_start: bool = True


def _l2_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def random_l2_ball(shape: torch.Size, eps: float, generator: torch.Generator) -> Tensor:
    """Points drawn uniformly from the l2 ball of radius ``eps`` in ``prod(shape[1:])`` dimensions, ``shape``."""
    g = torch.randn(shape, generator=generator)
    d = g[0].numel()
    radius = eps * torch.rand(shape[0], generator=generator).pow(1.0 / d)
    return g / _l2_norm(g) * radius.view(-1, *([1] * (len(shape) - 1)))


def pgd_l2(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PGD-l2 examples: ``steps`` normalised-gradient ascent steps on the cross-entropy, projected
    onto ``||x' - x||_2 <= eps`` and the image box ``[0, 1]``.

    Hand-written rather than foolbox (the evaluation library): a training loop calls it once per
    batch, and foolbox's per-call overhead and its eval-only design make it a poor fit there.

    Args:
        x: images ``(B, C, H, W)`` in ``[0, 1]``; ``y``: labels ``(B,)``.
        generator: random start in the ball (``None``: start at ``x``).

    Returns:
        Adversarial images ``(B, C, H, W)``, detached.
    """
    x = x.detach()
    delta = torch.zeros_like(x)
    if generator is not None:
        # under torchrun: drawn for the whole global batch, this rank's rows kept (= one rank's draw)
        n_global, rows = distributed.step_rows(x.shape[0])
        delta = random_l2_ball(torch.Size((n_global, *x.shape[1:])), eps, generator)[rows].to(x)
    x_adv = (x + delta).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            delta = x_adv + step_size * grad / _l2_norm(grad) - x
            delta = delta * (eps / _l2_norm(delta)).clamp(max=1.0)
            x_adv = (x + delta).clamp(0.0, 1.0)
    return x_adv.detach()


def train_adv(s: AdvTrainSettings) -> dict[str, Any]:
    """Run (or resume) Adv-CNN training; returns the final (clean) metrics."""
    if not s.eps > 0 or s.pgd_steps < 1:
        raise ConfigError(f"adv: eps must be > 0 and pgd_steps >= 1, got {s.eps} and {s.pgd_steps}")
    step = s.pgd_step_size if s.pgd_step_size is not None else 2.5 * s.eps / s.pgd_steps

    def perturb(model: nn.Module, x: Tensor, y: Tensor, epoch: int, b: int) -> Tensor:
        # attack the model as it predicts (BatchNorm on running statistics), train on the result
        model.eval()
        gen = seeded(s.seed, epoch, b, 1) if s.random_start else None
        return pgd_l2(model, x, y, s.eps, s.pgd_steps, step, gen)

    return train_classifier(s, "adv", perturb, {"pgd": {"eps": s.eps, "steps": s.pgd_steps, "step_size": step}})
