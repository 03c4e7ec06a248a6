"""CIFAR-style ResNet-18: the standard parameter count, shapes at CIFAR and digits sizes."""

from __future__ import annotations

import torch

from ephw.feedforward import ResNet18, ResNetSpec


def test_standard_width_has_resnet18_cifar_parameter_count():
    # the CIFAR ResNet-18 (3x3 stem, no max-pool, 64-128-256-512) has 11,173,962 parameters for 10 classes
    net = ResNet18(ResNetSpec((3, 32, 32), 10, 64))
    assert sum(p.numel() for p in net.parameters()) == 11_173_962
    assert len(net.stages) == 4 and [len(s) for s in net.stages] == [2, 2, 2, 2]
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())


def test_narrow_resnet_on_cifar_and_digits_shapes_and_gradients():
    torch.manual_seed(0)
    for shape in [(3, 32, 32), (1, 8, 8)]:
        net = ResNet18(ResNetSpec(shape, 10, 4, input_mean=(0.5,), input_std=(0.25,)))
        x = torch.rand(3, *shape, requires_grad=True)
        logits = net(x)
        assert logits.shape == (3, 10)
        logits.sum().backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0
        assert [name for name, _ in net.layer_groups()] == ["stem", "stage1", "stage2", "stage3", "stage4", "fc"]


def test_spec_roundtrip():
    spec = ResNetSpec((1, 8, 8), 10, 8, (1, 1, 1, 1), (0.3,), (0.3,))
    assert ResNetSpec.from_dict(spec.to_dict()) == spec
