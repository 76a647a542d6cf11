"""HR@K / NDCG@K with full ranking and history masking, against hand-computed values and known limits."""

import math

import pytest
import torch

from hfgen.metrics.ranking import (
    MISS_RANK,
    RANKING_MODULE_PATH,
    bootstrap_ci,
    expected_random_hr,
    hit_rate_at_k,
    mask_history,
    ndcg_at_k,
    per_user_metric,
    ranking_metrics,
    target_ranks,
    tpme,
)


def test_hr_ndcg_match_hand_computed_values():
    # user 0: target 3 has the 2nd best score -> r = 2; user 1: target 1 is 4th of 5 -> r = 4
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5, 0.2], [0.0, 0.1, 0.8, 0.7, 0.9]])
    target = torch.tensor([3, 1])
    ranks = target_ranks(scores, target)
    assert ranks.tolist() == [2, 4]
    assert hit_rate_at_k(ranks, 2) == 0.5
    assert hit_rate_at_k(ranks, 4) == 1.0
    assert ndcg_at_k(ranks, 10) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)
    assert ndcg_at_k(ranks, 3) == pytest.approx(1 / math.log2(3) / 2)


def test_history_items_and_a_repeated_target_are_removed_from_the_ranking():
    scores = torch.tensor([[9.0, 0.9, 0.8, 0.5, 0.2]])  # item 0 is padding, scored highest on purpose
    history = torch.tensor([[1, 2, 3, 0]])
    masked = mask_history(scores, history)
    assert torch.isinf(masked[0, [0, 1, 2, 3]]).all() and masked[0, 4] == 0.2
    # the target 3 was seen before: official IISAN rule, it is not a candidate, so it is a miss
    assert ranking_metrics(scores, torch.tensor([3]), history, ks=(1, 4)) == {"hr@1": 0.0, "ndcg@1": 0.0,
                                                                             "hr@4": 0.0, "ndcg@4": 0.0}
    assert target_ranks(masked, torch.tensor([3])).item() == MISS_RANK
    assert ranking_metrics(scores, torch.tensor([4]), history, ks=(1,))["hr@1"] == 1.0  # 4 is the only candidate
    # "mask nothing" (only padding): the repeated target 3 is ranked among all items, 3rd after 1 and 2
    m = ranking_metrics(scores, torch.tensor([3]), history, ks=(2, 3), exclude_history=False)
    assert m["hr@2"] == 0.0 and m["hr@3"] == 1.0 and m["ndcg@3"] == pytest.approx(0.5)


def _repeat_data(users=4000, n=200, h=8, repeat=0.3, seed=0):
    """Histories of ``h`` distinct items; the target repeats a history item with probability ``repeat``."""
    g = torch.Generator().manual_seed(seed)
    history = torch.stack([torch.randperm(n - 1, generator=g)[:h] + 1 for _ in range(users)])
    fresh = torch.randint(1, n, (users,), generator=g)
    seen = (history == fresh[:, None]).any(1)
    fresh[seen] = history[seen, 0]  # (rare) collisions become repeats
    repeated = history[torch.arange(users), torch.randint(0, h, (users,), generator=g)]
    target = torch.where(torch.rand(users, generator=g) < repeat, repeated, fresh)
    return history, target, g


def test_a_history_first_scorer_that_never_sees_the_label_stays_at_chance():
    """The candidate set must not depend on the label (issue 20, item 1).

    The scorer ranks the user's history items first and the rest at random; it never sees the label.
    On the old rule (history masked *except the target*), the label put a repeated target back among
    the candidates, where this scorer ranks it in the top 8: HR@10 = 0.377 here (chance 0.052). With
    label-independent candidates it stays at chance. Checked: restoring the old rule in
    ``mask_history`` makes this test fail (HR@10 0.377 > 0.072).
    """
    n = 200
    history, target, g = _repeat_data(n=n)
    scores = torch.rand(len(target), n, generator=g)
    scores[torch.arange(len(target))[:, None], history] += 10.0  # history first
    hr = ranking_metrics(scores, target, history, ks=(10,))["hr@10"]
    chance = expected_random_hr(10, n - 1 - history.shape[1])  # uniform over the candidates, repeats miss
    assert hr <= chance + 0.02, (hr, chance)
    # with "mask nothing" the same scorer legitimately finds the repeats (about 30% of targets)
    assert ranking_metrics(scores, target, history, ks=(10,), exclude_history=False)["hr@10"] > 0.25


def test_the_rank_of_every_possible_label_is_read_from_one_fixed_candidate_set():
    """Whatever the label, ``ranking_metrics`` scores it against a candidate set fixed from the history
    alone: ``rank = 1 + #{candidates scored above it}``, and a label outside the set is a miss.
    Checked: the old rule (the label unmasked) fails here (a repeated label got a finite rank)."""
    n = 30
    history, _, g = _repeat_data(users=4, n=n, h=5)
    scores = torch.rand(4, n, generator=g)
    for exclude in (True, False):
        for u in range(4):
            allowed = torch.ones(n, dtype=torch.bool)
            allowed[0] = False
            if exclude:
                allowed[history[u]] = False
            for j in range(n):
                m = ranking_metrics(scores[u:u + 1], torch.tensor([j]), history[u:u + 1], ks=range(1, n + 1),
                                    exclude_history=exclude)
                hits = [k for k in range(1, n + 1) if m[f"hr@{k}"] == 1.0]
                want = 1 + int((scores[u][allowed] > scores[u, j]).sum()) if allowed[j] else None
                assert (hits[0] if hits else None) == want, (exclude, u, j)


def test_perfect_scorer_gets_one_and_k_at_least_n_always_hits():
    n = 50
    target = torch.randint(1, n, (20,))
    perfect = torch.nn.functional.one_hot(target, n).float()
    m = ranking_metrics(perfect, target, ks=(1,))
    assert m["hr@1"] == m["ndcg@1"] == 1.0
    ranks = target_ranks(torch.randn(20, n), target)
    assert hit_rate_at_k(ranks, n) == 1.0


def test_ties_count_against_the_target_so_a_constant_scorer_is_last():
    scores = torch.zeros(4, 30)
    ranks = target_ranks(scores, torch.tensor([1, 5, 7, 29]))
    assert (ranks == 30).all()
    assert hit_rate_at_k(ranks, 10) == 0.0


def test_random_scores_hit_at_chance_level():
    g = torch.Generator().manual_seed(0)
    n, users, k = 100, 5000, 10
    ranks = target_ranks(torch.rand(users, n, generator=g), torch.randint(0, n, (users,), generator=g))
    assert hit_rate_at_k(ranks, k) == pytest.approx(expected_random_hr(k, n), abs=0.02)


def test_evaluate_module_loads_from_local_path_and_matches_functions():
    import evaluate

    metric = evaluate.load(RANKING_MODULE_PATH)
    out = metric.compute(predictions=[[5, 3, 9], [1, 2, 4], [7]], references=[3, 7, 7], k=2)
    assert out["hr@2"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3) + 0 + 1) / 3)


def test_tpme_min_max_normalises_with_paper_weights():
    scores = tpme([10.0, 20.0, 30.0], [1.0, 1.0, 1.0], [3.0, 1.0, 2.0])
    # time' = (0, .5, 1); params' all equal -> 0; memory' = (1, 0, .5)
    assert scores == pytest.approx([0.45, 0.225, 0.675])
    with pytest.raises(ValueError, match="alpha"):
        tpme([1.0], [1.0], [1.0], alpha=(0.5, 0.5, 0.5))


def test_bootstrap_ci_on_cases_with_known_answers():
    # constant values: no spread at all
    assert bootstrap_ci(torch.full((50,), 0.3)) == pytest.approx((0.3, 0.3, 0.3))
    # two users with 0 and 1: the resampled mean is 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 95% percentile interval is [0, 1] and the 40% one is [1/2, 1/2]
    assert bootstrap_ci(torch.tensor([0.0, 1.0])) == pytest.approx((0.5, 0.0, 1.0))
    assert bootstrap_ci(torch.tensor([0.0, 1.0]), confidence=0.4)[1:] == pytest.approx((0.5, 0.5))
    # hits of 10,000 users at rate 0.1: the normal approximation 0.1 +- 1.96 sqrt(0.09 / 10000) = +- 0.00588
    hits = (torch.arange(10_000) % 10 == 0).double()
    mean, low, high = bootstrap_ci(hits, num_resamples=4000)
    assert mean == pytest.approx(0.1)
    assert (high - low) / 2 == pytest.approx(1.96 * 0.003, rel=0.08)
    assert low < 0.1 < high
    # seeds x users: users are resampled jointly; a seed offset moves the mean, not the width
    two = torch.stack([hits, hits + 0.2])
    m2, l2, h2 = bootstrap_ci(two, num_resamples=4000)
    assert m2 == pytest.approx(0.2) and (h2 - l2) == pytest.approx(high - low, rel=1e-9)
    assert bootstrap_ci(hits, num_resamples=500, seed=3) == bootstrap_ci(hits, num_resamples=500, seed=3)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(hits, confidence=95)


def test_per_user_metric_averages_to_hr_and_ndcg():
    ranks = torch.tensor([1, 3, 12, MISS_RANK])
    assert per_user_metric(ranks, "hr", 10).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert per_user_metric(ranks, "ndcg", 10).mean().item() == pytest.approx(ndcg_at_k(ranks, 10))
    with pytest.raises(ValueError, match="metric"):
        per_user_metric(ranks, "mrr", 10)


def test_hierarchical_bootstrap_covers_the_spread_between_seeds():
    # every user scores the same within a seed, the seeds differ: resampling users alone sees no spread
    values = torch.tensor([[0.1] * 40, [0.5] * 40, [0.9] * 40], dtype=torch.float64)
    assert bootstrap_ci(values, num_resamples=500) == pytest.approx((0.5, 0.5, 0.5))
    mean, low, high = bootstrap_ci(values, num_resamples=2000, hierarchical=True)
    assert mean == pytest.approx(0.5) and low < 0.3 and high > 0.7 and 0.1 - 1e-9 <= low and high <= 0.9 + 1e-9
    # one seed: the same as resampling users
    hits = (torch.arange(100) % 4 == 0).double()
    flat = bootstrap_ci(hits, num_resamples=3000, seed=1)
    assert bootstrap_ci(hits[None], num_resamples=3000, seed=1, hierarchical=True) == pytest.approx(flat, abs=0.02)
