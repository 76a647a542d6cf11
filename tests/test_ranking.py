"""HR@K / NDCG@K with full ranking and history masking, against hand-computed values and known limits."""

import math

import pytest
import torch

from hfgen.metrics.ranking import (
    RANKING_MODULE_PATH,
    expected_random_hr,
    hit_rate_at_k,
    mask_history,
    ndcg_at_k,
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


def test_history_items_are_removed_from_the_ranking_but_not_the_target():
    scores = torch.tensor([[9.0, 0.9, 0.8, 0.5, 0.2]])  # item 0 is padding, scored highest on purpose
    history = torch.tensor([[1, 2, 3, 0]])  # the target 3 was also seen before: it must stay rankable
    m = ranking_metrics(scores, torch.tensor([3]), history, ks=(1,))
    assert m["hr@1"] == 1.0 and m["ndcg@1"] == 1.0
    masked = mask_history(scores, history, torch.tensor([3]))
    assert torch.isinf(masked[0, [0, 1, 2]]).all() and masked[0, 3] == 0.5


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


def test_masked_target_is_refused():
    with pytest.raises(ValueError, match="-inf"):
        target_ranks(torch.tensor([[0.0, float("-inf")]]), torch.tensor([1]))


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
