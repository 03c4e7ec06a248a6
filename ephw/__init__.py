"""ephw: energy-based (equilibrium propagation) networks on simulated physical hardware.

>>> import ephw
>>> net = ephw.load_model()                      # bundled digits EP-CNN
>>> res = ephw.settle(net, x, backend="async")   # x: (B, 1, 8, 8) in [0, 1]
>>> res.predictions, res.steps, res.converged
"""

from ephw.backends import BACKENDS, Backend, SettleResult, backend_names, get_backend, settle
from ephw.checkpoint import load_checkpoint, save_model
from ephw.loading import load_model
from ephw.errors import EphwError
from ephw.model import EnergyModel, ModelConfig, named_config

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "Backend",
    "EnergyModel",
    "EphwError",
    "ModelConfig",
    "SettleResult",
    "backend_names",
    "get_backend",
    "load_checkpoint",
    "load_model",
    "save_model",
    "named_config",
    "settle",
]
