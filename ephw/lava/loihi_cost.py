"""Loihi time and energy per settled image, estimated from the lava network's activity counts.

**An estimate, not a measurement.** Intel has not published a per-operation energy/time
table for Loihi 2; the per-operation figures below are Loihi's (first generation, 14 nm)
from Davies et al. 2018, Table 2 ("Loihi pre-silicon performance and energy measurements",
SDF/SPICE simulations "consistent with early post-silicon characterization"). Intel's
Loihi 2 technology brief (2021) states that Loihi 2 processes "up to 10x faster" than Loihi
and adds graded spikes (integer payloads, which this network's messages are); the
speed-up is reported separately (:attr:`LoihiEstimate.seconds_per_image_loihi2_bound`), not
folded into the energy. Every number carries its source.

Model (per image, per timestep ``t`` while the image is not frozen):

* energy ``= synops_t * E_synop + messages_t * (E_message + E_neuron_active)
  + (neurons - messages_t) * E_neuron_inactive``: a neuron that sends is an active update,
  every other neuron an inactive one; messages cost the within-tile spike energy (a lower
  bound: tile hops are not counted);
* time ``= (synops_t * T_synop + messages_t * T_neuron_active + (neurons - messages_t) *
  T_neuron_inactive) / cores + T_barrier``: the work spread evenly over the network's
  neuro-cores (:mod:`ephw.lava.resources`), which run in parallel, then one barrier
  synchronisation per timestep (the smallest published value, 1 tile).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ephw.lava.activity import Activity

DAVIES_2018 = (
    "Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
    "IEEE Micro 38(1), 2018, Table 2 (Loihi, 14 nm, pre-silicon simulation)"
)
LOIHI2_BRIEF = (
    "Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021 "
    "('outperforms its predecessor by up to 10x')"
)


@dataclass(frozen=True)
class Figure:
    """One published figure: ``value`` in SI ``unit`` and where it is from (with the quoted row)."""

    value: float
    unit: str
    source: str


def _davies(value: float, unit: str, row: str) -> Figure:
    """A figure from Davies et al. 2018, Table 2, with the quoted row."""
    return Figure(value, unit, f"{DAVIES_2018}: '{row}'")


_NEURON_ENERGY = "Energy per neuron update (active / inactive) 81 pJ / 52 pJ"
_NEURON_TIME = "Time per neuron update (active / inactive) 8.4 ns / 5.3 ns"


@dataclass(frozen=True)
class LoihiFigures:
    """Per-operation energies (J) and times (s) of a Loihi neuro-core, with sources."""

    synop_energy: Figure = field(
        default_factory=lambda: _davies(23.6e-12, "J", "Energy per synaptic spike op (min) 23.6 pJ")
    )
    neuron_active_energy: Figure = field(default_factory=lambda: _davies(81e-12, "J", _NEURON_ENERGY))
    neuron_inactive_energy: Figure = field(default_factory=lambda: _davies(52e-12, "J", _NEURON_ENERGY))
    message_energy: Figure = field(default_factory=lambda: _davies(1.7e-12, "J", "Within-tile spike energy 1.7 pJ"))
    synop_time: Figure = field(default_factory=lambda: _davies(3.5e-9, "s", "Time per synaptic spike op (max) 3.5 ns"))
    neuron_active_time: Figure = field(default_factory=lambda: _davies(8.4e-9, "s", _NEURON_TIME))
    neuron_inactive_time: Figure = field(default_factory=lambda: _davies(5.3e-9, "s", _NEURON_TIME))
    barrier_time: Figure = field(
        default_factory=lambda: _davies(113e-9, "s", "Mesh-wide barrier sync time (1-32 tiles) 113-465 ns")
    )
    loihi2_speedup: Figure = field(default_factory=lambda: Figure(10.0, "1", LOIHI2_BRIEF))

    def sources(self) -> dict[str, str]:
        """``name -> "value unit: source"`` of every figure."""
        return {
            name: f"{getattr(self, name).value:g} {getattr(self, name).unit}: {getattr(self, name).source}"
            for name in self.__dataclass_fields__
        }


@dataclass(frozen=True)
class LoihiEstimate:
    """Estimated Loihi cost of settling one image (means over the images counted).

    Attributes:
        seconds_per_image: time of the settle on the chip (s, Loihi per-op figures).
        seconds_per_image_loihi2_bound: the same divided by the Loihi 2 brief's "up to 10x" (s).
        joules_per_image: dynamic energy (J); ``energy_breakdown`` splits it (J).
        messages, synops, timesteps, neuron_updates: per image.
        cores: neuro-cores the work is spread over.
    """

    seconds_per_image: float
    seconds_per_image_loihi2_bound: float
    joules_per_image: float
    energy_breakdown: dict[str, float]
    messages: float
    synops: float
    timesteps: float
    neuron_updates: float
    cores: int
    estimate: bool = True
    figures: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def estimate(activity: Activity, cores: int, figures: LoihiFigures | None = None) -> LoihiEstimate:
    """The Loihi time and energy per image of ``activity`` on ``cores`` neuro-cores (see the module docstring)."""
    f = figures or LoihiFigures()
    m, s = activity.messages, activity.synops  # (T, B), zero after each image froze
    t = activity.messages.shape[0]
    running = np.arange(1, t + 1)[:, None] <= activity.timesteps[None, :]
    idle = np.where(running, activity.neurons - m, 0.0)
    e_syn = s.sum(0) * f.synop_energy.value
    e_msg = m.sum(0) * f.message_energy.value
    e_act = m.sum(0) * f.neuron_active_energy.value
    e_idle = idle.sum(0) * f.neuron_inactive_energy.value
    work = s * f.synop_time.value + m * f.neuron_active_time.value + idle * f.neuron_inactive_time.value
    step_time = np.where(running, work / max(cores, 1) + f.barrier_time.value, 0.0)
    seconds = float(step_time.sum(0).mean())
    counts = activity.per_image()
    return LoihiEstimate(
        seconds_per_image=seconds,
        seconds_per_image_loihi2_bound=seconds / f.loihi2_speedup.value,
        joules_per_image=float((e_syn + e_msg + e_act + e_idle).mean()),
        energy_breakdown={
            "synops": float(e_syn.mean()),
            "messages": float(e_msg.mean()),
            "active_neuron_updates": float(e_act.mean()),
            "inactive_neuron_updates": float(e_idle.mean()),
        },
        messages=counts["messages"],
        synops=counts["synops"],
        timesteps=counts["timesteps"],
        neuron_updates=counts["neuron_updates"],
        cores=int(cores),
        figures=f.sources(),
    )


__all__ = ["Figure", "LoihiEstimate", "LoihiFigures", "estimate"]
