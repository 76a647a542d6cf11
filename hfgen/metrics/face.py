"""Face-analysis metrics: AU F1 (per AU and mean, the BP4D/DISFA protocol) and emotion accuracy.

Plain functions on arrays, and the same math as ``evaluate`` modules loadable from a local path
(no Hub)::

    import evaluate
    from hfgen.metrics.face import au_f1_module_path
    au_f1 = evaluate.load(au_f1_module_path())
    au_f1.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]], au_names=["AU1", "AU2"])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _as_matrix(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a [N, K] matrix of 0/1 AU occurrences, got shape {arr.shape}.")
    return arr


def au_f1(predictions, references, au_names=None, threshold: float | None = None) -> dict[str, float]:
    """Per-AU F1 and their mean (``'mean_f1'``), each AU a binary problem (BP4D / DISFA protocol).

    Args:
        predictions: ``[N, K]`` 0/1 occurrences, or scores/probabilities when ``threshold`` is given
            (a prediction is positive when ``score > threshold``; 0.0 for logits, 0.5 for probabilities).
        references: ``[N, K]`` 0/1 occurrences.
        au_names: ``K`` names for the per-AU keys (default ``'AU_0'``, ...).

    An AU with no positive reference and no positive prediction has F1 0 (sklearn's ``zero_division=0``).
    """
    pred, ref = _as_matrix(predictions, "predictions"), _as_matrix(references, "references")
    if pred.shape != ref.shape:
        raise ValueError(f"`predictions` {pred.shape} and `references` {ref.shape} must have the same shape.")
    if au_names is not None and len(au_names) != ref.shape[1]:
        raise ValueError(f"`au_names` has {len(au_names)} names for {ref.shape[1]} AU columns.")
    pred = pred > threshold if threshold is not None else pred.astype(bool)
    ref = ref.astype(bool)
    tp = (pred & ref).sum(0)
    denom = pred.sum(0) + ref.sum(0)  # 2TP + FP + FN
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    names = list(au_names) if au_names is not None else [f"AU_{k}" for k in range(ref.shape[1])]
    return {**{f"f1_{a}": float(v) for a, v in zip(names, f1)}, "mean_f1": float(f1.mean())}


def emotion_accuracy(predictions, references) -> float:
    """Top-1 accuracy; ``predictions`` are class ids ``[N]`` or scores ``[N, C]`` (argmax taken)."""
    pred, ref = np.asarray(predictions), np.asarray(references)
    if pred.ndim == 2:
        pred = pred.argmax(-1)
    if pred.shape != ref.shape or ref.ndim != 1:
        raise ValueError(f"`predictions` {pred.shape} must be [N] or [N, C] and `references` [N], got {ref.shape}.")
    return float((pred == ref).mean())


def au_f1_module_path() -> str:
    """Local path of the AU F1 ``evaluate`` module (``evaluate.load(path)``, offline)."""
    return str(Path(__file__).parent / "evaluate_modules" / "au_f1" / "au_f1.py")


def emotion_accuracy_module_path() -> str:
    """Local path of the emotion-accuracy ``evaluate`` module."""
    return str(Path(__file__).parent / "evaluate_modules" / "emotion_accuracy" / "emotion_accuracy.py")
