"""The published robustness protocol of the seed paper's code, run by IBM's Adversarial Robustness Toolbox.

lanl/AdvEP (``CIFAR10Codes/model_utils.py``, ``attack()``) evaluated its EP-CNN and BP-CNNs with
ART's ``ProjectedGradientDescentPyTorch(classifier, norm, eps, 2.5 * eps / 20, max_iter=20,
batch_size=...)``, ART's defaults otherwise (``num_random_init=0``: no random start, one run,
untargeted), called ``generate(x)`` without labels (so ART attacks the model's own predictions)
and counted accuracy against the true labels. Its ``PyTorchClassifier`` had ``clip_values=None``
(no ``[0, 1]`` box) and ``preprocessing=(mean, std)``; for the EP-CNN it was ART's classifier
patched with two step counts (``ART_Timesteps_Addition/pytorch.py``): ``predict`` (and
``compute_loss``) ran ``T1`` = 250 free-phase steps from the null state, ``loss_gradient`` (and
``class_gradient``) ran ``T2`` = K steps from the null state with autograd through them and took
the cross-entropy **of the K-step readout** (K = 29 for l2, 70 for linf).

Here ART itself (``adversarial-robustness-toolbox``, pinned) runs the attack; only the module it
wraps is ours, and it does what the patch did without patching ART:

* **EP models** -- :class:`UnrolledLossEP`: a forward without a graph to the images (ART's
  ``predict``, ``compute_loss``; the labels ``generate(x)`` picks; the verdict) is the
  :class:`~ephw.robustness.models.EPClassifier`'s full settle; a forward on images that require
  grad (ART's ``loss_gradient`` and ``class_gradient``) returns the logits of the state after
  ``K`` updates of the backend's rule unrolled from the null state (``GradMode("bptt", k=K)``,
  :func:`~ephw.robustness.gradients.surrogate_logits`), values and graph. So ART's loss gradient is
  ``d CE(readout(s_K(x)), label) / dx`` exactly -- the loss *at the K-step state*, not the
  settled logits with a K-step backward (the harness's straight-through ``bptt:K``, which
  differs whenever K updates have not converged).
* **Feed-forward models** are given to ART as they are.
* **Normalisation.** ART perturbs, projects and measures eps in the space of the images it is
  given. AdvEP gave it ``[0, 1]`` pixels and ``preprocessing=(mean, std)``, which ART applies
  (differentiably) inside its classifier, so AdvEP's eps is in ``[0, 1]`` pixel units. ephw's
  models normalise inside their own forward (``input_mean`` / ``input_std``), so they are given to
  ART with ``preprocessing=None`` on the same ``[0, 1]`` pixels: the same function of the same
  pixels, eps in the same units.
* **No box.** With ``clip = "none"`` the adversarial images may leave ``[0, 1]``; the EP
  classifier then settles them inside :meth:`EPClassifier.unbounded_inputs` (its range check is
  off for this protocol only) and they are judged as they are, as AdvEP judged them.

ART here is release 1.20.1, not the older one AdvEP copied; the one numerical difference in the PGD
loop is the l2 step, ``grad / ||grad||`` here and ``grad / (||grad|| + 1e-7)`` there (see
docs/robustness.md, "The published protocol").

Everything is deterministic without a random start; ART's random starts draw from numpy's global
generator, which is seeded with the row's seed here and restored afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Any

import art
import numpy as np
import torch
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.estimators.classification import PyTorchClassifier
from torch import Tensor, nn

from ephw.robustness.gradients import AdjointStats, GradMode, dynamics_step, surrogate_logits
from ephw.robustness.models import Classifier, EPClassifier

#: The ART release the protocol runs on (pinned in pyproject.toml).
ART_VERSION: str = art.__version__


class UnrolledLossEP(nn.Module):
    """An :class:`EPClassifier` as ART's ``PyTorchClassifier`` of the published protocol sees it.

    ``forward(x)`` with ``x`` ``(B, C, H, W)`` in ``[0, 1]`` (outside it too, inside
    ``ep.unbounded_inputs()``) returns ``(B, classes)`` logits:

    * no graph to ``x`` (ART's ``predict`` / ``compute_loss``): the full settle, ``ep(x)``;
    * ``x.requires_grad`` (ART's ``loss_gradient`` / ``class_gradient``): the readout of the
      state after ``unroll`` updates from the null state, with autograd through them.

    Attributes:
        gradient_calls, gradient_images: unrolled forwards run (the settles are counted in
            ``ep.settle_stats``).
    """

    def __init__(self, ep: EPClassifier, unroll: int) -> None:
        super().__init__()
        self.ep = ep
        self.mode = GradMode("bptt", k=int(unroll), start="zero")
        self._step = dynamics_step(ep.net, ep.backend)
        self.gradient_calls = 0
        self.gradient_images = 0

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self.ep(x)
        xs = x.to(next(self.ep.net.parameters()).dtype)
        self.ep.check_images(xs)
        self.gradient_calls += 1
        self.gradient_images += x.shape[0]
        return surrogate_logits(self.mode, self.ep.net, self._step, xs, (), AdjointStats())


def art_classifier(
    model: Classifier, input_shape: tuple[int, ...], nb_classes: int, *, unroll: int, clip: str, device: torch.device
) -> PyTorchClassifier:
    """ART's ``PyTorchClassifier`` of ``model`` under the published protocol (see the module docstring).

    Args:
        input_shape: one image's ``(C, H, W)``; ``nb_classes``: the logits' width.
        unroll: EP models: the K of the loss gradient (ignored for feed-forward models).
        clip: ``"none"`` (``clip_values=None``) or ``"unit-box"`` (``clip_values=(0, 1)``).
        device: where ART runs the module (``cpu`` or a CUDA device).
    """
    module = UnrolledLossEP(model.module, unroll) if isinstance(model.module, EPClassifier) else model.module
    return PyTorchClassifier(
        model=module,
        loss=nn.CrossEntropyLoss(),  # AdvEP's; its mean over the batch rescales, L2/sign steps normalise it away
        input_shape=tuple(input_shape),
        nb_classes=int(nb_classes),
        clip_values=None if clip == "none" else (0.0, 1.0),
        preprocessing=None,  # the models normalise [0, 1] pixels themselves: eps in pixel units, as AdvEP's
        device_type="cpu" if device.type == "cpu" else "gpu",
    )


def run_art_pgd(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    norm: str,
    steps: int,
    eps_step: float,
    num_random_init: int,
    unroll: int,
    clip: str,
    labels: str,
    batch_size: int,
    seed: int,
) -> tuple[Tensor, dict[str, Any], Tensor]:
    """One run of ART's PGD on ``model`` under the published protocol.

    Args:
        x: images ``(n, C, H, W)`` in ``[0, 1]``; ``y``: true labels ``(n,)``.
        eps: the budget (pixel units); ``norm``: ``"L2"`` or ``"Linf"``.
        steps, eps_step, num_random_init, batch_size: ART's ``max_iter``, ``eps_step`` (absolute),
            ``num_random_init`` and ``batch_size``.
        unroll: EP models: the loss is taken at the state after ``unroll`` updates from the null state.
        clip: ``"none"`` or ``"unit-box"``; ``labels``: ``"predictions"`` (``generate(x)``) or ``"true"``.
        seed: seeds numpy's global generator (ART's random starts) for the call; restored after.

    Returns:
        ``(correct (n,) bool, notes, adv (n, C, H, W))``: whether the settled model still predicts
        ``y`` on ART's returned images, the settings and facts for the row, and the images.
    """
    module = model.module
    ep = module if isinstance(module, EPClassifier) else None
    unbounded = ep.unbounded_inputs() if ep is not None and clip == "none" else contextlib.nullcontext()
    device = x.device
    on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    rng = np.random.get_state()
    try:
        np.random.seed(seed % 2**32)
        with unbounded, on_device:
            with torch.no_grad():
                nb_classes = int(module(x[:1]).shape[1])
            classifier = art_classifier(model, tuple(x.shape[1:]), nb_classes, unroll=unroll, clip=clip, device=device)
            attack = ProjectedGradientDescentPyTorch(
                classifier,
                norm=2 if norm == "L2" else np.inf,
                eps=float(eps),
                eps_step=float(eps_step),
                max_iter=int(steps),
                num_random_init=int(num_random_init),
                batch_size=int(batch_size),
                verbose=False,
            )
            x_np = x.detach().cpu().numpy().astype(np.float32)
            if labels == "true":
                onehot = np.eye(nb_classes, dtype=np.float32)[y.cpu().numpy()]
                adv_np = attack.generate(x_np, y=onehot)
            else:
                adv_np = attack.generate(x_np)  # ART labels the images with the model's own predictions
            adv = torch.from_numpy(adv_np).to(device=device, dtype=x.dtype)
            correct = model.predict(adv, batch_size) == y  # the verdict: the settled model vs the true labels
    finally:
        np.random.set_state(rng)
    flat = adv.flatten(1)
    outside = ((flat < 0) | (flat > 1)).any(1)
    notes: dict[str, Any] = {
        "protocol": "advep",
        "library": f"adversarial-robustness-toolbox {ART_VERSION}",
        "art": {
            "attack": "ProjectedGradientDescentPyTorch",
            "norm": "2" if norm == "L2" else "inf",
            "eps_step": float(eps_step),
            "max_iter": int(steps),
            "num_random_init": int(num_random_init),
            "targeted": False,
            "batch_size": int(batch_size),
            "clip_values": None if clip == "none" else [0.0, 1.0],
            "preprocessing": None,
            "loss": "CrossEntropyLoss",
            "generate": "x, y=true labels" if labels == "true" else "x (labels: the model's predictions)",
        },
        "clip": clip,
        "labels": labels,
        "outside_unit_box": int(outside.sum()),
        "pixel_range": [round(float(flat.min()), 6), round(float(flat.max()), 6)] if flat.numel() else None,
    }
    if ep is not None:
        unrolled = classifier.model
        notes |= {
            "unroll": int(unroll),
            "grad": unrolled.mode.label,
            "loss_at": f"the state after {int(unroll)} updates from the null state; predictions: the settle",
            "unrolled_forwards": unrolled.gradient_calls,
        }
    return correct.to(y.device), notes, adv
