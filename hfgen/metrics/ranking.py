"""Full-ranking metrics for sequential recommendation: HR@K and NDCG@K.

Protocol (IISAN, ``data_utils/metrics.py``): each user's next item is ranked against **all** items;
items already in the user's history are removed from the ranking (score ``-inf``), and so is the
padding item 0. With the target's 1-based rank ``r``::

    HR@K   = 1[r <= K]
    NDCG@K = 1[r <= K] / log2(r + 1)          # one relevant item, so IDCG = 1

Ties are broken against the target (``r = 1 + #{j != target : s_j >= s_target}``), so a constant
scorer gets rank ``n`` rather than 1: a model cannot score well by scoring everything alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

#: ``evaluate.load(RANKING_MODULE_PATH)`` gives the same metrics as an ``evaluate`` module.
RANKING_MODULE_PATH = str(Path(__file__).parent / "evaluate_modules" / "ranking")

__all__ = [
    "RANKING_MODULE_PATH", "expected_random_hr", "hit_rate_at_k", "mask_history", "ndcg_at_k", "ranking_metrics", "ranks_from_lists",
    "target_ranks", "tpme",
]


def mask_history(scores: torch.Tensor, history: torch.Tensor, target: torch.Tensor | None = None,
                 padding_idx: int | None = 0) -> torch.Tensor:
    """Set the scores of each user's history items (and the padding item) to ``-inf``.

    Args:
        scores: ``[U, n_items]`` scores.
        history: ``[U, H]`` item ids (right- or left-padded with ``padding_idx``).
        target: ``[U]`` target ids; never masked, even if the user interacted with it before.
        padding_idx: the id of the padding item, or ``None`` if there is none.
    """
    if history.dim() != 2 or history.shape[0] != scores.shape[0]:
        raise ValueError(f"`history` must be [U, H] with U = {scores.shape[0]}, got {tuple(history.shape)}.")
    scores = scores.clone()
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(history)
    keep = scores.gather(1, target[:, None]) if target is not None else None
    scores[rows, history] = float("-inf")
    if padding_idx is not None:
        scores[:, padding_idx] = float("-inf")
    if target is not None:
        scores.scatter_(1, target[:, None], keep)
    return scores


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``target`` in each row of ``scores`` (ties count against the target)."""
    if target.dim() != 1 or target.shape[0] != scores.shape[0]:
        raise ValueError(f"`target` must be [U] with U = {scores.shape[0]}, got {tuple(target.shape)}.")
    s_t = scores.gather(1, target[:, None])
    if torch.isinf(s_t).any() and (s_t < 0).any():
        raise ValueError("A target item has score -inf (masked); it cannot be ranked.")
    return (scores >= s_t).sum(1)  # counts the target itself once, so this is 1 + #others >= s_t


def hit_rate_at_k(ranks: torch.Tensor, k: int) -> float:
    """HR@K = mean of 1[r <= K]."""
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}.")
    return (ranks <= k).double().mean().item()


def ndcg_at_k(ranks: torch.Tensor, k: int) -> float:
    """NDCG@K = mean of 1[r <= K] / log2(r + 1) (a single relevant item per user)."""
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}.")
    r = ranks.double()
    return torch.where(r <= k, 1.0 / torch.log2(r + 1.0), torch.zeros_like(r)).mean().item()


def ranking_metrics(scores: torch.Tensor, target: torch.Tensor, history: torch.Tensor | None = None,
                    ks: Iterable[int] = (10,), padding_idx: int | None = 0) -> dict[str, float]:
    """``{"hr@K": ..., "ndcg@K": ...}`` for full ranking with the history masked."""
    if history is not None:
        scores = mask_history(scores, history, target, padding_idx)
    elif padding_idx is not None:
        scores = mask_history(scores, target.new_zeros(target.shape[0], 0), target, padding_idx)
    ranks = target_ranks(scores, target)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    return out


def ranks_from_lists(rankings: Sequence[Sequence[int]], targets: Sequence[int]) -> torch.Tensor:
    """1-based ranks of ``targets`` in ranked item lists (a target absent from its list never hits)."""
    absent = torch.iinfo(torch.int64).max
    return torch.tensor([list(r).index(t) + 1 if t in r else absent for r, t in zip(rankings, targets)])


def expected_random_hr(k: int, n_candidates: int) -> float:
    """HR@K of a uniformly random ranking of ``n_candidates`` items (the chance level)."""
    return min(k, n_candidates) / n_candidates


def tpme(times: Sequence[float], params: Sequence[float], memory: Sequence[float],
         alpha: tuple[float, float, float] = (0.45, 0.1, 0.45)) -> list[float]:
    """TPME of K compared methods (IISAN Eq. 6-10; lower is better).

    ``TPME_i = a1 t_i' + a2 p_i' + a3 m_i'`` with min-max normalised training time, trainable parameters
    and memory; the paper's weights are ``(0.45, 0.1, 0.45)``. A quantity equal for all methods
    normalises to 0.
    """
    if abs(sum(alpha) - 1) > 1e-9:
        raise ValueError(f"`alpha` must sum to 1, got {alpha}.")

    def norm(xs):
        lo, hi = min(xs), max(xs)
        return [0.0 if hi == lo else (x - lo) / (hi - lo) for x in xs]

    return [alpha[0] * t + alpha[1] * p + alpha[2] * m for t, p, m in zip(norm(times), norm(params), norm(memory))]
