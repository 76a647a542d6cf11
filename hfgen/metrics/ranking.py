"""Full-ranking metrics for sequential recommendation: HR@K and NDCG@K, with bootstrap intervals.

Protocol (IISAN, ``data_utils/metrics.py``): each user's next item is ranked against **all** items;
every item already in the user's history is removed from the ranking (score ``-inf``), and so is the
padding item 0. With the target's 1-based rank ``r``::

    HR@K   = 1[r <= K]
    NDCG@K = 1[r <= K] / log2(r + 1)          # one relevant item, so IDCG = 1

The candidate set never depends on the label. Two rules are offered, nothing else:

- ``exclude_history=True`` (default, the official IISAN rule): every history item is masked, so a
  target the user interacted with before is a **miss** (it has no rank);
- ``exclude_history=False``: nothing is masked but the padding item (repeat consumption counts).

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
    "MISS_RANK", "RANKING_MODULE_PATH", "bootstrap_ci", "expected_random_hr", "hit_rate_at_k", "mask_history", "ndcg_at_k",
    "per_user_metric", "ranking_metrics", "ranks_from_lists", "target_ranks", "tpme",
]


#: The rank of a target that is not a candidate (masked): it never hits, whatever K.
MISS_RANK = torch.iinfo(torch.int64).max


def mask_history(scores: torch.Tensor, history: torch.Tensor, padding_idx: int | None = 0) -> torch.Tensor:
    """Set the scores of each user's history items (and of the padding item) to ``-inf``.

    The mask depends on the history alone, never on the label: a target that is also a history item
    is masked too, and [`target_ranks`] then counts it as a miss (the official IISAN rule).

    Args:
        scores: ``[U, n_items]`` scores.
        history: ``[U, H]`` item ids (right- or left-padded with ``padding_idx``).
        padding_idx: the id of the padding item, or ``None`` if there is none.
    """
    if history.dim() != 2 or history.shape[0] != scores.shape[0]:
        raise ValueError(f"`history` must be [U, H] with U = {scores.shape[0]}, got {tuple(history.shape)}.")
    scores = scores.clone()
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(history)
    scores[rows, history] = float("-inf")
    if padding_idx is not None:
        scores[:, padding_idx] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``target`` in each row of ``scores`` (ties count against the target).

    A target whose score is ``-inf`` (masked by [`mask_history`]) is not a candidate: its rank is
    [`MISS_RANK`], a miss at every K.
    """
    if target.dim() != 1 or target.shape[0] != scores.shape[0]:
        raise ValueError(f"`target` must be [U] with U = {scores.shape[0]}, got {tuple(target.shape)}.")
    s_t = scores.gather(1, target[:, None])
    ranks = (scores >= s_t).sum(1)  # counts the target itself once, so this is 1 + #others >= s_t
    return ranks.masked_fill(s_t[:, 0] == float("-inf"), MISS_RANK)


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
                    ks: Iterable[int] = (10,), padding_idx: int | None = 0,
                    exclude_history: bool = True) -> dict[str, float]:
    """``{"hr@K": ..., "ndcg@K": ...}`` for full ranking.

    Args:
        scores: ``[U, n_items]``; target: ``[U]``; history: ``[U, H]`` padded with ``padding_idx``.
        exclude_history: ``True`` (official IISAN rule): every history item is removed from the
            candidates, so a repeated target is a miss; ``False``: only the padding item is removed.
    """
    if exclude_history and history is not None:
        scores = mask_history(scores, history, padding_idx)
    elif padding_idx is not None:
        scores = mask_history(scores, target.new_zeros(target.shape[0], 0), padding_idx)
    ranks = target_ranks(scores, target)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    return out


def per_user_metric(ranks: torch.Tensor, metric: str, k: int) -> torch.Tensor:
    """Per-user values of ``"hr"`` (``1[r <= K]``) or ``"ndcg"`` (``1[r <= K] / log2(r + 1)``), float64."""
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}.")
    r = ranks.double()
    if metric == "hr":
        return (r <= k).double()
    if metric == "ndcg":
        return torch.where(r <= k, 1.0 / torch.log2(r + 1.0), torch.zeros_like(r))
    raise ValueError(f"`metric` must be 'hr' or 'ndcg', got {metric!r}.")


def bootstrap_ci(values, confidence: float = 0.95, num_resamples: int = 10_000,
                 seed: int = 0, hierarchical: bool = False) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap confidence interval over users: ``(mean, low, high)``.

    Args:
        values: per-user values ``[U]`` (e.g. [`per_user_metric`]), or ``[S, U]`` for S seeds
            evaluated on the same U users. For a paired comparison of two methods on the same users, pass the
            per-user difference.
        hierarchical: with ``[S, U]`` values, resample the seeds (with replacement), then the users within each
            drawn seed, so the interval covers the spread between seeds as well as between users (the interval
            ``docs/`` reports for ranking metrics). ``False``: users only, the same draw for every seed, i.e.
            a bootstrap of the per-user mean over seeds (no seed variance).
        confidence: e.g. 0.95 for a 95% interval.
        num_resamples: bootstrap resamples.
        seed: seed of the resampling (the same seed gives the same interval).
    """
    x = torch.as_tensor(values, dtype=torch.float64)
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2 or x.shape[1] < 1:
        raise ValueError(f"`values` must be [U] or [S, U] with U >= 1, got shape {tuple(x.shape)}.")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence}.")
    if num_resamples < 1:
        raise ValueError(f"`num_resamples` must be >= 1, got {num_resamples}.")
    per_user = x.mean(0)  # the mean over seeds of each user; resampling users commutes with it
    g = torch.Generator().manual_seed(seed)
    stats = torch.empty(num_resamples, dtype=torch.float64)
    S, U = x.shape
    chunk = max(1, min(1000, 4_000_000 // (S * U)))
    for i in range(0, num_resamples, chunk):
        n = min(chunk, num_resamples - i)
        if hierarchical:
            seeds = torch.randint(0, S, (n, S, 1), generator=g)
            users = torch.randint(0, U, (n, S, U), generator=g)
            stats[i:i + n] = x[seeds, users].mean((1, 2))
        else:
            idx = torch.randint(0, U, (n, U), generator=g)
            stats[i:i + n] = per_user[idx].mean(1)
    alpha = (1 - confidence) / 2
    low, high = torch.quantile(stats, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return per_user.mean().item(), low, high


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
