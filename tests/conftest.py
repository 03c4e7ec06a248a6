"""Shared fixtures: small random energy models in float64."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable

import pytest
import torch

from ephw.model import ConvSpec, EnergyModel, ModelConfig

# A shell starts background jobs (`make test &`, nohup) with SIGINT ignored, and Python keeps an
# inherited SIG_IGN; the Ctrl-C tests need the interactive default however the suite was started.
signal.signal(signal.SIGINT, signal.default_int_handler)


def make_net(
    output: str = "softmax",
    activation: str = "laborieux",
    seed: int = 0,
    init_scale: float = 1.0,
    dense: tuple[int, ...] = (6,),
) -> EnergyModel:
    """A tiny EP-CNN on 1x8x8 inputs (conv-pool, conv-pool, dense, output), float64."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        in_shape=(1, 8, 8),
        convs=(ConvSpec(3, 1), ConvSpec(4, 1)),
        dense=dense,
        classes=3,
        output=output,
        activation=activation,
        init_scale=init_scale,
    )
    return EnergyModel(cfg).double()


def make_batch(n: int = 6, seed: int = 0, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


@pytest.fixture
def net_factory() -> Callable[..., EnergyModel]:
    return make_net


@pytest.fixture
def batch_factory() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return make_batch


def synapse_probes(net: EnergyModel, ops, seed: int = 0):
    """For every synapse layer ``j``: ``(j, src, out, v)`` with a random input ``src``, the
    bias-free forward map ``out = ops.forward(j, src) - b_j`` and a random ``v`` shaped like
    ``out`` -- the pieces of an adjointness check ``<out, v> == <src, ops.adjoint(j, v, src)>``."""
    g = torch.Generator().manual_seed(seed)
    shapes = [net.config.in_shape, *net.config.feature_shapes()]
    for j, layer in enumerate(net.synapses):
        src = torch.rand(2, *shapes[j], generator=g, dtype=torch.float64)
        if j >= len(net.convs):
            src = src.flatten(1)
        bias = layer.bias.view(1, -1, 1, 1) if src.dim() == 4 else layer.bias
        out = ops.forward(j, src) - bias
        yield j, src, out, torch.rand(out.shape, generator=g, dtype=torch.float64)


@pytest.fixture
def probes() -> Callable[..., object]:
    return synapse_probes


@pytest.fixture
def full_disk(tmp_path_factory: pytest.TempPathFactory):
    """A real, tiny tmpfs (64 KiB) filled to the last block: every write there fails with ENOSPC.

    Creating files and folders still works (tmpfs counts inodes apart from blocks), as on a
    real full disk. Needs the right to mount (root); skipped otherwise.
    """
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    root = tmp_path_factory.mktemp("full-disk")
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0777", "tmpfs", str(root)]
    mounted = subprocess.run(mount, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        fd = os.open(root / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:  # fill every block
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
