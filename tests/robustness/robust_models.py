"""Small models for the robustness tests: a tiny digits CNN, and an input-quantising wrapper whose
input gradient is identically zero (a deliberately obfuscated model)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyCNN(nn.Module):
    """conv(1->8, 3x3) - ReLU - maxpool 2 - linear(8*4*4 -> 10), normalisation inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv((x - 0.3) / 0.3)), 2)
        return self.fc(h.flatten(1))


class Quantised(nn.Module):
    """``model(round(4 x) / 4)``: the rounding has zero gradient, so white-box attacks are blind."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)


class Wiggly(nn.Module):
    """``model(x) + alpha sin(omega <w_k, x>)``: a small, fast-oscillating term per class.

    Predictions barely change, but the input gradient is dominated by the oscillation, so a
    single PGD start wanders and restarts or more steps keep finding adversarials: a model
    built to fool a 1-start / 20-step evaluation.
    """

    def __init__(self, model: nn.Module, alpha: float = 0.5, omega: float = 300.0, pixels: int = 64) -> None:
        super().__init__()
        self.model, self.alpha, self.omega = model, alpha, omega
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn(10, pixels, generator=g) / pixels**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.alpha * torch.sin(self.omega * x.flatten(1) @ self.w.T)


class Noisy(nn.Module):
    """``model(x + sigma N(0, 1))``: a randomised model (every query sees a new draw)."""

    def __init__(self, model: nn.Module, sigma: float = 0.3) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))
