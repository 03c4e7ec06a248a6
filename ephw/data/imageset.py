"""In-memory image datasets: :class:`ImageSet` (one split, as torch tensors) and
:class:`DecodedSplits` (the numpy arrays a reader or the cache produces)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ephw.errors import InputError

SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value
class ImageSet:
    """One split of an image classification dataset.

    Attributes:
        name: dataset name, e.g. ``"digits"`` or ``"cifar10"``.
        split: ``"train"`` or ``"test"``.
        images: ``(N, C, H, W)`` tensor, either ``uint8`` in 0..255 or ``float32`` in [0, 1].
        labels: ``(N,)`` ``int64`` tensor of class indices into ``classes``.
        classes: class names; ``classes[k]`` is the name of label ``k``.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise InputError(f"ImageSet images must be (N, C, H, W); got shape {tuple(self.images.shape)}")
        if self.images.dtype not in (torch.uint8, torch.float32):
            raise InputError(f"ImageSet images must be uint8 or float32; got {self.images.dtype}")
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            raise InputError(
                f"ImageSet labels must be a 1-D int64 tensor; got {self.labels.dtype} "
                f"of shape {tuple(self.labels.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise InputError(f"ImageSet has {self.images.shape[0]} images but {self.labels.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels at ``index`` (a slice or a 1-D index tensor).

        Returns ``(images, labels)``: ``(B, C, H, W)`` ``float32`` in [0, 1] (``uint8`` storage
        is divided by 255) and ``(B,)`` ``int64``.
        """
        images = self.images[index]
        if images.dtype == torch.uint8:
            images = images.to(torch.float32).div_(255.0)
        return images, self.labels[index]

    def subset(self, n: int) -> ImageSet:
        """The first ``n`` images; ``n`` must be >= 1 and at most ``len(self)``.

        Splits from :func:`~ephw.data.load_dataset` are in class-stratified order, so this is a
        class-balanced sample.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"subset size must be an integer >= 1; got {n!r}")
        if n > len(self):
            raise InputError(
                f"asked for {n} images but the {self.name} {self.split} split has {len(self)}: ask for at most that"
            )
        return self.reordered(slice(0, n))

    def reordered(self, index: np.ndarray | torch.Tensor | slice) -> ImageSet:
        """The images and labels at ``index`` (a permutation, an index array or a slice), same classes."""
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        return ImageSet(
            name=self.name,
            split=self.split,
            images=self.images[index].contiguous(),
            labels=self.labels[index].contiguous(),
            classes=self.classes,
        )

    def class_counts(self) -> list[int]:
        """Images per class, in label order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()


@dataclass(frozen=True)
class DecodedSplits:
    """Decoded arrays of some splits of one dataset, as readers and the cache hand them over.

    Attributes:
        splits: ``split -> (images, labels)``; images ``(N, C, H, W)`` ``uint8``,
            labels ``(N,)`` ``int64``.
        classes: class names in label order.
    """

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    classes: tuple[str, ...]

    def to_imageset(self, name: str, split: str) -> ImageSet:
        """The ``split`` arrays wrapped (without copying) as an :class:`ImageSet`."""
        images, labels = self.splits[split]
        return ImageSet(
            name=name,
            split=split,
            images=torch.from_numpy(images),
            labels=torch.from_numpy(labels),
            classes=self.classes,
        )
