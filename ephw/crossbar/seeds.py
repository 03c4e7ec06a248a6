"""Independent, reproducible random streams of a crossbar chip.

Every random draw of the programming has its own stream, derived from
``(chip_seed, layer, programming index, stream)``: switching one non-ideality on or
off never changes the draws of another, arrays of different layers are independent,
and ``reprogram`` continues with fresh draws. The read noise has one stream per array
from ``(read_seed, layer)``, continued from read to read.
Streams are ``torch.Generator`` objects on the chip's device, so the same seeds give
the same chip on the same kind of device (CPU and CUDA generators differ).
"""

from __future__ import annotations

import torch

from ephw.seeds import derive_seed

__all__ = ["derive_seed", "generator", "PROGRAMMING_STREAMS", "VARIABILITY", "PROGRAMMING", "STUCK", "DRIFT", "READ"]

#: Stream identifiers (fixed: changing them changes every chip).
VARIABILITY, PROGRAMMING, STUCK, DRIFT, READ = 1, 2, 3, 4, 5
PROGRAMMING_STREAMS = (VARIABILITY, PROGRAMMING, STUCK, DRIFT)


def generator(seed: int, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
