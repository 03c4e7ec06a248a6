"""Activity of a lava settle: messages, synaptic operations, timesteps, neuron updates.

Counted inside the process models (:mod:`ephw.lava.procs.models`): at every timestep each
sender (input layer, state layers) reports per image the messages (graded spikes) it
sent and the synaptic operations they cause (one per synapse a sending neuron drives,
:func:`ephw.lava.network.fanouts`). Dense messaging sends every nonzero state every
timestep; delta (sigma-delta) messaging only the neurons whose state moved more than the
threshold since their last message. A sample stops counting once it is frozen (on a chip
it would be done): timesteps after its freezing step are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Activity:
    """Per-image activity of one settle of ``B`` images over ``T`` lava timesteps.

    Attributes:
        messages: ``(T, B)`` messages sent at each timestep (0 after the image froze).
        synops: ``(T, B)`` synaptic operations at each timestep.
        timesteps: ``(B,)`` timesteps each image ran (its freezing step, or ``T``).
        neurons: neurons of one copy of the network (each updates once per timestep).
        delta_threshold: ``None`` (dense messaging) or the delta threshold (state units).
    """

    messages: np.ndarray
    synops: np.ndarray
    timesteps: np.ndarray
    neurons: int
    delta_threshold: float | None

    @classmethod
    def from_rows(
        cls, messages: np.ndarray, synops: np.ndarray, timesteps: np.ndarray, neurons: int, threshold: float | None
    ) -> Activity:
        """Counts ``(T, B)`` as reported, with the timesteps after each image's freezing step zeroed."""
        ran = np.arange(1, messages.shape[0] + 1)[:, None] <= np.asarray(timesteps)[None, :]
        return cls(messages * ran, synops * ran, np.asarray(timesteps), int(neurons), threshold)

    @property
    def neuron_updates(self) -> np.ndarray:
        """``(B,)`` neuron updates per image: every neuron of the network once per timestep."""
        return self.timesteps * self.neurons

    def per_image(self) -> dict[str, float]:
        """Means over the images: messages, synaptic ops, timesteps, neuron updates."""
        return {
            "messages": float(self.messages.sum(0).mean()),
            "synops": float(self.synops.sum(0).mean()),
            "timesteps": float(self.timesteps.mean()),
            "neuron_updates": float(self.neuron_updates.mean()),
        }

    def decay(self, points: int = 6) -> list[dict[str, float]]:
        """Mean messages and synaptic ops per image at ``points`` timesteps spread over the settle."""
        t = self.messages.shape[0]
        if t == 0:
            return []
        picks = sorted({int(round(k)) for k in np.linspace(0, t - 1, points)})
        return [
            {"timestep": i + 1, "messages": float(self.messages[i].mean()), "synops": float(self.synops[i].mean())}
            for i in picks
        ]

    @staticmethod
    def concat(parts: list[Activity]) -> Activity:
        """Several batches' activity as one (timesteps padded with zeros to the longest)."""
        t = max(p.messages.shape[0] for p in parts)

        def pad(a: np.ndarray) -> np.ndarray:
            return np.pad(a, ((0, t - a.shape[0]), (0, 0)))

        return Activity(
            np.concatenate([pad(p.messages) for p in parts], 1),
            np.concatenate([pad(p.synops) for p in parts], 1),
            np.concatenate([p.timesteps for p in parts]),
            parts[0].neurons,
            parts[0].delta_threshold,
        )


__all__ = ["Activity"]
