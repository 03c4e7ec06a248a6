"""Feed-forward models: BP-CNN / Adv-CNN / distilled students with the EP-CNN topology, and ResNet-18.

Every model maps images ``(B, C, H, W)`` in ``[0, 1]`` to logits ``(B, classes)`` with the
input normalisation inside, and is saved with :func:`save_feedforward` (format
``"ephw.feedforward"``) and rebuilt by :func:`load_feedforward` from its JSON spec.

>>> from ephw.feedforward import load_feedforward
>>> student, meta = load_feedforward("runs/distill-cnn/model.pt")
>>> logits = student(x)                  # x: (B, 1, 8, 8) in [0, 1]
>>> init = student.settle_init(x)        # EP-CNN students: warm start for ephw.settle
"""

from ephw.feedforward.checkpoint import (
    FORMAT,
    FeedForwardCheckpoint,
    build_feedforward,
    load_feedforward,
    read_feedforward_checkpoint,
    save_feedforward,
    save_feedforward_checkpoint,
    spec_from_dict,
)
from ephw.feedforward.cnn import CNN_ACTIVATIONS, CNNSpec, EPTopologyCNN
from ephw.feedforward.resnet import ResNet18, ResNetSpec

__all__ = [
    "CNN_ACTIVATIONS",
    "FORMAT",
    "CNNSpec",
    "EPTopologyCNN",
    "FeedForwardCheckpoint",
    "ResNet18",
    "ResNetSpec",
    "build_feedforward",
    "load_feedforward",
    "read_feedforward_checkpoint",
    "save_feedforward",
    "save_feedforward_checkpoint",
    "spec_from_dict",
]
