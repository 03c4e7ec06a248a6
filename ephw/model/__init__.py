"""The energy model (the *what*): topology, energy, primitive and drives."""

from ephw.model.config import ACTIVATIONS, CONFIG_NAMES, OUTPUTS, ConvSpec, ModelConfig, named_config
from ephw.model.energy import EnergyModel, States
from ephw.model.synapses import DigitalSynapses, Synapses

__all__ = [
    "ACTIVATIONS",
    "CONFIG_NAMES",
    "OUTPUTS",
    "ConvSpec",
    "DigitalSynapses",
    "EnergyModel",
    "ModelConfig",
    "States",
    "Synapses",
    "named_config",
]
