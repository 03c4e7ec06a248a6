"""Datasets for ephw: scikit-learn digits, CIFAR-10 and CIFAR-100, plus batch augmentation.

>>> from ephw.data import load_dataset
>>> test = load_dataset("digits", "test")
>>> images, labels = test.batch(slice(0, 32))   # float32 (32, 1, 8, 8) in [0, 1], int64 (32,)
"""

from __future__ import annotations

from ephw.data.augment import random_crop_flip
from ephw.data.catalog import DATASETS, dataset_stats, load_dataset
from ephw.data.imageset import ImageSet

__all__ = ["DATASETS", "ImageSet", "dataset_stats", "load_dataset", "random_crop_flip"]
