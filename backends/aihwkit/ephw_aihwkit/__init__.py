"""ephw plugin: settle EP-CNNs with every synaptic read on IBM aihwkit's analog inference tiles.

Registered as the ``aihwkit`` backend through the ``ephw.backends`` entry point (see
``backends/README.md`` in the ephw repository).
"""

from ephw_aihwkit.backend import AIHWKit
from ephw_aihwkit.config import PRESETS, AIHWKitOptions, rpu_config_for
from ephw_aihwkit.synapses import AIHWKitSynapses, AnalogMatrix

__version__ = "0.1.0"

__all__ = ["AIHWKit", "AIHWKitOptions", "AIHWKitSynapses", "AnalogMatrix", "PRESETS", "rpu_config_for"]
