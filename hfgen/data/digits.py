"""scikit-learn's 8x8 handwritten digits as a small image data set (ships with scikit-learn, offline).

Images are ``float32`` tensors in ``[-1, 1]`` of shape ``(N, 1, size, size)``; ``size`` 8 is the
original resolution, larger sizes are bilinear upsamplings (e.g. 16 or 32 for UNets that downsample).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

SPLITS = ("train", "test", "all")


@lru_cache(maxsize=8)
def _load(size: int, split: str, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2.0 - 1.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    if size != 8:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp(-1.0, 1.0)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    index = {"test": order[:n_test], "train": order[n_test:], "all": np.arange(len(labels))}[split]
    index = torch.as_tensor(np.sort(index))
    return images[index].contiguous(), labels[index].contiguous()


def load_digits_images(size: int = 8, split: str = "train", test_fraction: float = 0.2, seed: int = 0):
    """Return ``(images, labels)``: ``(N, 1, size, size)`` in ``[-1, 1]`` and ``(N,)`` class ids 0-9.

    The train/test split is a fixed seeded permutation, so it is the same for every caller.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"`size` must be an int >= 8, got {size!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
    images, labels = _load(size, split, float(test_fraction), int(seed))
    return images.clone(), labels.clone()


def digits_dataset(size: int = 8, split: str = "train", **kwargs):
    """The digits as a ``datasets.Dataset`` with columns ``pixel_values`` (1xSxS floats) and ``labels``."""
    from datasets import Dataset

    images, labels = load_digits_images(size=size, split=split, **kwargs)
    return Dataset.from_dict({"pixel_values": images.numpy(), "labels": labels.numpy()}).with_format("torch")
