"""Identities of the NFT loss itself (arXiv 2505.18116, Eq. 10), without a trainer: milliseconds each."""

import math

import pytest
import torch

from hfgen.trainers.nft import NFTConfig, clamp_preserve_grad, nft_per_token_loss, question_weights


def _leaf(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_clamp_is_forward_clamped_and_gradient_preserving():
    x = _leaf([-0.5, 0.3, 1.0, 2.0])
    y = clamp_preserve_grad(x, 0.5)
    assert torch.equal(y.detach(), torch.tensor([0.5, 0.5, 1.0, 2.0], dtype=torch.float64))
    (g,) = torch.autograd.grad((y * torch.arange(1.0, 5.0, dtype=torch.float64)).sum(), x)
    assert torch.equal(g, torch.arange(1.0, 5.0, dtype=torch.float64))  # d/dx of the unclamped x


def test_negative_gradient_is_minus_grad_proxy_over_clamped_proxy():
    # d/dR [-log max_v(proxy, eps)] = r/(1-r) / max(proxy, eps): finite even where proxy <= 0 (R >= 1/r).
    r_q, eps = 0.4, 1.0
    log_ratio = _leaf([[math.log(0.5), 0.0, math.log(1.5), math.log(3.0)]])  # 3.0 > 1/r_q: proxy < 0
    loss, proxy = nft_per_token_loss(log_ratio, torch.zeros(1, 1), torch.full((1, 1), r_q), negative_clamp=eps)
    ratio = log_ratio.detach().exp()
    assert torch.allclose(proxy.detach(), (1 - r_q * ratio) / (1 - r_q))
    assert torch.allclose(loss.detach(), -torch.log(proxy.detach().clamp(min=eps)))
    (g,) = torch.autograd.grad(loss.sum(), log_ratio)
    expected = (r_q / (1 - r_q)) * ratio / proxy.detach().clamp(min=eps)  # chain rule through R = exp(log R)
    assert torch.allclose(g, expected)
    assert torch.isfinite(g).all() and (g > 0).all()


def test_positive_term_is_maximum_likelihood():
    # -log R = -log pi_theta + const: gradient -1 on each positive token's log-prob, whatever R is.
    log_ratio = _leaf([[-2.0, 0.0, 3.0]])
    loss, _ = nft_per_token_loss(log_ratio, torch.ones(1, 1), torch.full((1, 1), 0.3))
    (g,) = torch.autograd.grad(loss.sum(), log_ratio)
    assert torch.equal(g, -torch.ones_like(g))


def test_on_policy_coefficients_match_grpo_and_dr_grpo():
    # At R = 1: positive coefficient omega, negative -omega r/(1-r) (notes section 1.4); with omega = sqrt((1-r)/r)
    # these are the GRPO advantages (r - r_q)/std_q with the population std, with omega = 1 - r_q Dr. GRPO's r - r_q.
    r = torch.tensor([[0.25], [0.5], [0.75], [0.25], [0.5], [0.75]], dtype=torch.float64)
    correct = torch.tensor([[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]], dtype=torch.float64)
    std_pop = torch.sqrt(r * (1 - r))
    for kind, advantage in [("grpo", (correct - r) / std_pop), ("one_minus_rq", correct - r)]:
        log_ratio = torch.zeros(6, 1, dtype=torch.float64, requires_grad=True)
        loss, _ = nft_per_token_loss(log_ratio, correct, r)
        omega = question_weights(r, kind)
        (g,) = torch.autograd.grad((loss * omega).sum(), log_ratio)
        assert torch.allclose(-g, advantage), kind


@pytest.mark.parametrize("eps", [0.25, 1.0])
def test_clamp_with_eps_at_most_one_never_acts_on_policy(eps):
    log_ratio = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    loss, _ = nft_per_token_loss(log_ratio, torch.zeros(1, 1), torch.full((1, 1), 0.6), negative_clamp=eps)
    (g,) = torch.autograd.grad(loss.sum(), log_ratio)
    assert torch.allclose(g, torch.full_like(g, 0.6 / 0.4))


def test_clamp_with_eps_above_one_shrinks_on_policy_gradient():  # negative control of the condition eps <= 1
    log_ratio = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    loss, _ = nft_per_token_loss(log_ratio, torch.zeros(1, 1), torch.full((1, 1), 0.6), negative_clamp=1.5)
    (g,) = torch.autograd.grad(loss.sum(), log_ratio)
    assert torch.allclose(g, torch.full_like(g, 0.6 / 0.4 / 1.5))


def test_neg_weight_zero_is_rft():
    log_ratio = _leaf([[0.3, -0.2], [0.1, 0.4]])
    correct = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    loss, _ = nft_per_token_loss(log_ratio, correct, torch.full((2, 1), 0.5), neg_weight=0.0)
    assert torch.allclose(loss.detach(), torch.tensor([[-0.3, 0.2], [0.0, 0.0]], dtype=torch.float64), rtol=0, atol=1e-15)
    (g,) = torch.autograd.grad(loss.sum(), log_ratio)
    assert torch.equal(g, torch.tensor([[-1.0, -1.0], [0.0, 0.0]], dtype=torch.float64))


def test_rq_clip_bounds_the_correct_rate():
    # An all-wrong group (r_q = 0) uses r_q = 0.02: loss -log((1 - 0.02 R) / 0.98), non-zero gradient.
    log_ratio = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    loss, _ = nft_per_token_loss(log_ratio, torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.float64))
    (g,) = torch.autograd.grad(loss.sum(), log_ratio)
    assert torch.allclose(g, torch.full_like(g, 0.02 / 0.98))
    r_q = torch.tensor([0.0, 0.01, 0.5, 0.99, 1.0], dtype=torch.float64)
    omega = question_weights(r_q, "one_minus_rq", (0.02, 0.98), dynamic_sampling=False)
    assert torch.allclose(omega, torch.tensor([0.98, 0.98, 0.5, 0.02, 0.02], dtype=torch.float64))


def test_question_weights_closed_forms_and_dynamic_sampling():
    r_q = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    mixed = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.equal(question_weights(r_q, "none"), mixed)
    assert torch.allclose(question_weights(r_q, "one_minus_rq"), (1 - r_q) * mixed)
    assert torch.allclose(question_weights(r_q, "grpo"), torch.sqrt((1 - r_q.clamp(0.02, 0.98)) / r_q.clamp(0.02, 0.98)) * mixed)


def test_sequence_ratio_equals_token_ratio_on_policy():
    # Notes section 2.2 item 7: at R = 1 the per-answer loss with R = prod_t R_t has the token-sum gradient.
    logps = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.float64)
    correct = torch.tensor([[1.0], [0.0], [1.0], [0.0]], dtype=torch.float64)
    r_q = torch.full((4, 1), 0.5, dtype=torch.float64)
    log_ratio = logps - logps.detach()
    token, _ = nft_per_token_loss(log_ratio, correct, r_q)
    sequence, _ = nft_per_token_loss((log_ratio * mask).sum(-1, keepdim=True), correct, r_q)
    (g_token,) = torch.autograd.grad((token * mask).sum(), logps)
    (g_sequence,) = torch.autograd.grad(sequence.sum(), logps)
    assert torch.allclose(g_token, g_sequence)


def test_log_ratio_cap_stops_the_gradient():
    log_ratio = _leaf([[12.0]])
    loss, _ = nft_per_token_loss(log_ratio, torch.ones(1, 1), torch.full((1, 1), 0.5), max_log_ratio=10.0)
    assert loss.item() == pytest.approx(-10.0)
    (g,) = torch.autograd.grad(loss.sum(), log_ratio)
    assert g.item() == 0.0


def test_nft_population_optimum_is_the_positive_policy():
    # Theorem 3.1: minimising E_{a ~ pi_old}[NFT loss] over pi_theta gives pi^+ = pi_old(a | correct).
    torch.manual_seed(0)
    pi_old = torch.softmax(torch.randn(6, dtype=torch.float64), 0)
    correct = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    r_q = (pi_old * correct).sum()
    pi_plus = pi_old * correct / r_q
    logits = pi_old.log().clone().requires_grad_(True)  # start at pi_old
    optimizer = torch.optim.Adam([logits], lr=0.5)
    for _ in range(300):
        log_ratio = torch.log_softmax(logits, 0) - pi_old.log()
        loss, _ = nft_per_token_loss(log_ratio[:, None], correct[:, None], r_q.expand(6, 1), rq_clip=(1e-6, 1 - 1e-6))
        optimizer.zero_grad()
        (pi_old[:, None] * loss).sum().backward()
        optimizer.step()
    pi_theta = torch.softmax(logits.detach(), 0)
    assert (pi_theta - pi_plus).abs().sum() < 1e-3


# ---------------------------------------------------------------------------------------- config


def _config(**kwargs):
    kwargs.setdefault("output_dir", "unused")
    return NFTConfig(use_cpu=True, bf16=False, report_to="none", **kwargs)


def test_config_defaults_are_the_official_ones():
    args = _config()
    assert (args.neg_weight, args.question_weight, args.negative_clamp) == (1.0, "one_minus_rq", 1.0)
    assert args.rq_clip == [0.02, 0.98] and args.ratio_type == "token" and args.dynamic_sampling
    assert args.max_log_ratio == 10.0 and args.loss_type == "dr_grpo" and args.beta == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"neg_weight": -1.0}, "neg_weight"),
        ({"question_weight": "sqrt"}, "question_weight"),
        ({"negative_clamp": 0.0}, "negative_clamp"),
        ({"rq_clip": [0.5, 0.2]}, "rq_clip"),
        ({"rq_clip": [0.0, 0.9]}, "rq_clip"),
        ({"rq_clip": [0.1]}, "rq_clip"),
        ({"max_log_ratio": 0.0}, "max_log_ratio"),
        ({"ratio_type": "answer"}, "ratio_type"),
        ({"loss_type": "cispo"}, "loss_type"),
        ({"num_generations": 1}, "num_generations"),
        ({"importance_sampling_level": "sequence"}, "ratio_type"),
        ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
        ({"entropy_coef": 0.01}, "entropy_coef"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        _config(**kwargs)
