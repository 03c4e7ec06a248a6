"""Training: the EP gradient estimator and the EP training loop."""

from ephw.training.ep import EPStep, ep_gradient, ep_step

__all__ = ["EPStep", "ep_gradient", "ep_step"]
