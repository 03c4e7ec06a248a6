"""CIFAR-style ResNet-18 (He et al. 2016): 3x3 stem, no max pooling, four stages of two BasicBlocks.

Written here because torchvision is not available; the layout is the usual CIFAR variant
(e.g. Madry et al.'s robustness library): stages of ``width x (1, 2, 4, 8)`` channels at
strides ``1, 2, 2, 2``, global average pooling, one linear classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw.errors import ConfigError


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture of a :class:`ResNet18` (stored as JSON in its checkpoint).

    Attributes:
        in_shape: image shape ``(C, H, W)``.
        classes: number of classes.
        width: channels of the first stage (64 for the standard ResNet-18; smaller for
            tests and 8x8 digits).
        blocks: BasicBlocks per stage.
        input_mean, input_std: per-channel normalisation applied inside the model.
    """

    in_shape: tuple[int, int, int]
    classes: int = 10
    width: int = 64
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    input_mean: tuple[float, ...] = (0.0,)
    input_std: tuple[float, ...] = (1.0,)
    kind: ClassVar[str] = "resnet18"

    def __post_init__(self) -> None:
        if self.width < 1 or self.classes < 2 or not self.blocks or min(self.blocks) < 1:
            raise ConfigError(f"invalid ResNet spec: width {self.width}, classes {self.classes}, blocks {self.blocks}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_shape": list(self.in_shape),
            "classes": self.classes,
            "width": self.width,
            "blocks": list(self.blocks),
            "input_mean": list(self.input_mean),
            "input_std": list(self.input_std),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResNetSpec:
        try:
            return cls(
                in_shape=tuple(d["in_shape"]),
                classes=int(d["classes"]),
                width=int(d["width"]),
                blocks=tuple(d["blocks"]),
                input_mean=tuple(d["input_mean"]),
                input_std=tuple(d["input_std"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid ResNet spec: {exc}") from None


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """``forward(x)``: images ``(B, C, H, W)`` in ``[0, 1]`` -> logits ``(B, classes)``."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        w = spec.width
        self.stem = nn.Sequential(nn.Conv2d(spec.in_shape[0], w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        stages = []
        c_in = w
        for i, n in enumerate(spec.blocks):
            c_out = w * 2**i
            blocks = [BasicBlock(c_in, c_out, 1 if i == 0 else 2)]
            blocks += [BasicBlock(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(c_in, spec.classes)
        # Plain NCHW on purpose: with channels-last, torch 2.13's oneDNN 1x1 stride-2 weight-gradient kernel
        # (jit_avx512_common_1x1 bwd weights) corrupts the heap with 2 threads (e.g. 8->16 channels, 16x16 input).
        self.register_buffer("input_mean", torch.tensor(spec.input_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(spec.input_std, dtype=torch.float32).view(1, -1, 1, 1))

    def layer_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Parameter groups for per-group learning rates: stem, each stage, classifier."""
        groups = [("stem", list(self.stem.parameters()))]
        groups += [(f"stage{i + 1}", list(s.parameters())) for i, s in enumerate(self.stages)]
        return [*groups, ("fc", list(self.fc.parameters()))]

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem((x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype))
        for stage in self.stages:
            h = stage(h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))
