"""Sample quality for generated digits: a fixed classifier, its features, Fréchet distance.

A small MLP is trained once (seeded, a few seconds on CPU) on the digits train split; its
penultimate features give a "digits FID" (the Fréchet distance of Heusel et al., 2017, between
Gaussian fits of two feature sets) and its predictions give the class accuracy of conditional
samples. Images of any size are average-pooled to 8x8 first.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn


class DigitsClassifier(nn.Module):
    def __init__(self, hidden: int = 128, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.GELU(), nn.Linear(hidden, feature_dim), nn.GELU())
        self.head = nn.Linear(feature_dim, 10)

    @staticmethod
    def _to_8x8(images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"`images` must have shape (N, 1, H, W), got {tuple(images.shape)}.")
        images = images.float()
        if images.shape[-1] != 8:
            images = nn.functional.adaptive_avg_pool2d(images, 8)
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self._to_8x8(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@lru_cache(maxsize=2)
def digits_classifier(seed: int = 0, steps: int = 1500) -> DigitsClassifier:
    """The evaluation classifier (trained once per process; ~97% test accuracy)."""
    from hfgen.data.digits import load_digits_images

    images, labels = load_digits_images(size=8, split="train")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    with torch.enable_grad():
        _fit(model, optimizer, images, labels, generator, steps)
    return model.eval().requires_grad_(False)


def _fit(model, optimizer, images, labels, generator, steps):
    for _ in range(steps):
        idx = torch.randint(len(labels), (256,), generator=generator)
        noisy = images[idx] + 0.1 * torch.randn(images[idx].shape, generator=generator)
        loss = nn.functional.cross_entropy(model(noisy), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}) between Gaussian fits of two feature sets."""
    from scipy import linalg

    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be 2-D with the same width, got {a.shape} and {b.shape}.")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 rows.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(len(cov_a))
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


@torch.no_grad()
def digits_fid(samples: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """Fréchet distance of the classifier's features between ``samples`` and ``reference``
    (default: the digits test split at the samples' resolution), both ``(N, 1, H, W)`` in ``[-1, 1]``."""
    from hfgen.data.digits import load_digits_images

    samples = samples.detach().to("cpu", torch.float32)  # the classifier lives on the CPU: samples from any device
    if reference is None:
        reference, _ = load_digits_images(size=samples.shape[-1], split="test")
    reference = torch.as_tensor(reference).detach().to("cpu", torch.float32)
    model = digits_classifier()
    return frechet_distance(model.features(samples.clamp(-1, 1)), model.features(reference))


@torch.no_grad()
def class_accuracy(samples: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of conditional samples that the classifier assigns to their intended class."""
    if len(samples) != len(labels):
        raise ValueError(f"`samples` and `labels` differ in length: {len(samples)} vs {len(labels)}.")
    samples = samples.detach().to("cpu", torch.float32)  # the classifier lives on the CPU: samples from any device
    predictions = digits_classifier()(samples.clamp(-1, 1)).argmax(-1)
    return float((predictions == torch.as_tensor(labels).to(predictions.device)).float().mean())
