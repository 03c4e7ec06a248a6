"""Loihi 2 resources the lava network of a model would need (a pure estimate, per image).

Populations (one copy of the network settles one image; lava's batch is a simulation
convenience): the input ``s^0``, every state layer ``s^n``, every conv's pre-pooling
output (the max-pool reads it) and, for convs with feedback, the unpooled feedback map.
Synapses are counted as connections (a conv's shared kernel counted once per use, as a
dense-equivalent synaptic memory would store it; Loihi 2's convolutional weight sharing
can store far fewer) -- forward and transposed projections separately, since a Loihi
synapse array is read in one direction only.

Per-core limits (Intel, Loihi 2 technology brief, 2021; also summarised at
https://open-neuromorphic.org/neuromorphic-computing/hardware/loihi-2-intel/):
128 neuro-cores per chip, up to 1 million neurons and 120 million synapses per chip,
i.e. up to 8,192 neurons per core and on average 120e6 / 128 = 937,500 synapses per core.
A population takes ``max(ceil(neurons / 8192), ceil(incoming synapses / 937500))`` cores;
this is a lower bound, not the output of lava's Loihi compiler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ephw.lava.conv import conv2d

CORES_PER_CHIP = 128
NEURONS_PER_CORE = 8192
SYNAPSES_PER_CHIP = 120_000_000
SYNAPSES_PER_CORE = SYNAPSES_PER_CHIP // CORES_PER_CHIP


@dataclass(frozen=True)
class Population:
    """One group of neurons and the synapses that end on it."""

    name: str
    neurons: int
    synapses_in: int

    @property
    def cores(self) -> int:
        return max(math.ceil(self.neurons / NEURONS_PER_CORE), math.ceil(self.synapses_in / SYNAPSES_PER_CORE), 1)


def conv_connections(in_shape: tuple[int, int, int], c_out: int, kernel: int, padding: int) -> int:
    """Number of (input unit, output unit) pairs a ``kernel x kernel`` conv connects (zero padding excluded)."""
    c_in, h, w = in_shape
    taps = conv2d(np.ones((1, 1, h, w)), np.ones((1, 1, kernel, kernel)), padding)  # valid taps per output position
    return int(taps.sum()) * c_in * c_out


def populations(spec) -> list[Population]:
    """The populations of a :class:`~ephw.lava.network.NetworkSpec` (see the module docstring)."""
    pops = [Population("input", math.prod(spec.input_shape), 0)]
    feedback_in = [0] * len(spec.state_shapes)
    for n, proj in enumerate(spec.projections):
        if n == 0:
            continue
        size = math.prod(proj.pre_pool) if proj.kind == "conv" else 0
        if proj.kind == "conv":
            links = conv_connections(proj.src, proj.pre_pool[0], proj.weight.shape[-1], proj.padding)
            pops.append(Population(f"unpool{n + 1}", size, size))  # one switch-routed link per position
        else:
            links = math.prod(proj.src) * math.prod(proj.dst)
        feedback_in[n - 1] = links
    for n, proj in enumerate(spec.projections):
        if proj.kind == "conv":
            links = conv_connections(proj.src, proj.pre_pool[0], proj.weight.shape[-1], proj.padding)
            pre = math.prod(proj.pre_pool)
            pops.append(Population(f"conv{n + 1}", pre, links))
            pops.append(Population(f"s{n + 1}", math.prod(proj.dst), pre + feedback_in[n]))  # pooling + feedback
        else:
            links = math.prod(proj.src) * math.prod(proj.dst)
            pops.append(Population(f"s{n + 1}", math.prod(proj.dst), links + feedback_in[n]))
    return pops


def resource_report(spec) -> dict:
    """Neurons, synapses and Loihi 2 neuro-cores of one copy of the network."""
    pops = populations(spec)
    cores = sum(p.cores for p in pops)
    return {
        "neurons": sum(p.neurons for p in pops),
        "synapses": sum(p.synapses_in for p in pops),
        "weights": int(sum(p.weight.size for p in spec.projections)),
        "neuro_cores": cores,
        "chips": math.ceil(cores / CORES_PER_CHIP),
        "limits": {
            "neurons_per_core": NEURONS_PER_CORE,
            "synapses_per_core": SYNAPSES_PER_CORE,
            "cores_per_chip": CORES_PER_CHIP,
            "source": "Intel Loihi 2 technology brief (2021): 128 cores, 1M neurons, 120M synapses per chip",
        },
        "populations": [
            {"name": p.name, "neurons": p.neurons, "synapses_in": p.synapses_in, "cores": p.cores} for p in pops
        ],
    }
