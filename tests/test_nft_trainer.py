"""NFTTrainer against TRL's own GRPOTrainer code path, its behaviour on a batch, and end-to-end training/saving.

Tiny Qwen2 models and a character-level tokenizer are built from configs (nothing is downloaded).
"""

import math

import pytest
import torch
import yaml
from trl import GRPOConfig, GRPOTrainer

import hfgen
from hfgen.data.arithmetic import (
    arithmetic_dataset,
    arithmetic_reward,
    arithmetic_tokenizer,
    sft_warm_start,
    tiny_causal_lm,
)
from hfgen.hub import verify_safetensors
from hfgen.trainers import NFTConfig, NFTTrainer

G = 4  # answers per question
K = [1 + j % (G - 1) for j in range(6)]  # correct answers in question j's group: r_q in {1/4, 2/4, 3/4}


def ordered_reward(completions, **kwargs):
    """A content-independent binary verifier: in question j's group the first K[j] answers are correct."""
    return [float(i % G < K[(i // G) % len(K)]) for i in range(len(completions))]


@pytest.fixture(scope="module")
def data():
    return arithmetic_dataset(max_operand=10, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return arithmetic_tokenizer()


def _args(config_cls, tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", disable_tqdm=True, per_device_train_batch_size=G * len(K), num_generations=G,
        max_completion_length=4, learning_rate=1e-3, logging_steps=1, seed=0,
    )
    return config_cls(**{**defaults, **kwargs})


def _trainer(trainer_cls, config_cls, model, tokenizer, data, tmp_path, reward=ordered_reward, **kwargs):
    trainer = trainer_cls(model=model, reward_funcs=reward, args=_args(config_cls, tmp_path, **kwargs),
                          train_dataset=data["train"], processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); the loss hooks read it
    return trainer


def _generate(trainer, data, seed=0):
    rows = [data["train"][j] for j in range(len(K))]
    inputs = [dict(row) for row in rows for _ in range(G)]  # what GRPO's RepeatSampler yields
    torch.manual_seed(seed)
    return trainer._generate_and_score_completions(inputs)


def _grad(trainer, model, batch):
    loss = trainer.compute_loss(model, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def _rows(batch, idx):
    return {k: v[idx] if torch.is_tensor(v) and v.dim() > 0 else v for k, v in batch.items()}


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture
def model(tokenizer):
    m = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    m.train()
    return m


# ----------------------------------------------------------------- equivalence with TRL's GRPO loss


def test_nft_gradient_equals_grpo_on_policy(model, tokenizer, data, tmp_path):
    """Prop. 4.2: omega = sqrt((1-r_q)/r_q), eps <= 1, R = 1 gives GRPO's gradient.

    TRL's GRPO divides by the Bessel std + 1e-4 and NFT's weight is built on the population std, so
    per question grad_GRPO = c_q grad_NFT with c_q = std_pop / (std_bessel + 1e-4) (notes section 2.2, item 4).
    """
    nft = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, question_weight="grpo")
    grpo = _trainer(GRPOTrainer, GRPOConfig, model, tokenizer, data, tmp_path, loss_type="dr_grpo",
                    scale_rewards="group")
    b_nft, b_grpo = _generate(nft, data), _generate(grpo, data)
    assert torch.equal(b_nft["completion_ids"], b_grpo["completion_ids"])
    assert "old_per_token_logps" not in b_nft  # strict on-policy: TRL uses pi_old = pi_theta.detach()
    assert torch.equal(b_nft["nft_correct"], torch.tensor(ordered_reward([None] * G * len(K))))

    for j, k in enumerate(K):
        rows = slice(j * G, (j + 1) * G)
        r = k / G
        c_q = math.sqrt(r * (1 - r)) / (math.sqrt(r * (1 - r) * G / (G - 1)) + 1e-4)
        g_nft, g_grpo = _grad(nft, model, _rows(b_nft, rows)), _grad(grpo, model, _rows(b_grpo, rows))
        assert _rel(c_q * g_nft, g_grpo) < 1e-5, (j, k)
    # Whole batch: the c_q differ only through the 1e-4, so one constant sqrt((G-1)/G) fits to 1e-3.
    g_nft, g_grpo = _grad(nft, model, b_nft), _grad(grpo, model, b_grpo)
    assert _rel(math.sqrt((G - 1) / G) * g_nft, g_grpo) < 1e-3
    # Negative control: another question weight is not GRPO.
    nft.args.question_weight = "one_minus_rq"
    b_other = _generate(nft, data)
    assert _rel(math.sqrt((G - 1) / G) * _grad(nft, model, b_other), g_grpo) > 0.05


def test_nft_one_minus_rq_gradient_equals_dr_grpo_on_policy(model, tokenizer, data, tmp_path):
    nft = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, question_weight="one_minus_rq")
    dr_grpo = _trainer(GRPOTrainer, GRPOConfig, model, tokenizer, data, tmp_path, loss_type="dr_grpo",
                       scale_rewards="none")
    b_nft, b_grpo = _generate(nft, data), _generate(dr_grpo, data)
    assert torch.equal(b_nft["completion_ids"], b_grpo["completion_ids"])
    assert _rel(_grad(nft, model, b_nft), _grad(dr_grpo, model, b_grpo)) < 1e-5


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_sequence_ratio_gradient_equals_dr_grpo_on_policy(model, tokenizer, data, tmp_path, loss_type):
    """Gap 1: with ``ratio_type="sequence"`` each answer is one loss, whatever its length, so at strict on-policy
    the gradient is TRL's Dr. GRPO gradient, sum_a A_a sum_t grad log pi / (B * T_max), times T_max, for every
    ``loss_type``. The old aggregation (the per-answer loss broadcast over tokens, then reduced as a token loss)
    weighted answer a by |y_a|: rel. diff 0.09 to 0.12 (cosine 0.996) here for bnpo / dr_grpo / dapo."""
    nft = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, ratio_type="sequence",
                   loss_type=loss_type)
    dr_grpo = _trainer(GRPOTrainer, GRPOConfig, model, tokenizer, data, tmp_path, loss_type="dr_grpo",
                       scale_rewards="none")
    b_nft, b_grpo = _generate(nft, data), _generate(dr_grpo, data)
    assert torch.equal(b_nft["completion_ids"], b_grpo["completion_ids"])
    assert b_nft["completion_mask"].sum(1).unique().numel() > 1  # answers of different lengths
    g_nft, g_grpo = _grad(nft, model, b_nft), _grad(dr_grpo, model, b_grpo)
    assert _rel(g_nft / nft.max_completion_length, g_grpo) < 1e-5


def test_nft_gradient_differs_from_grpo_off_policy(model, tokenizer, data, tmp_path):
    """Negative control: once the parameters moved after sampling (R != 1), the two objectives part."""
    nft = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, question_weight="one_minus_rq")
    dr_grpo = _trainer(GRPOTrainer, GRPOConfig, model, tokenizer, data, tmp_path, loss_type="dr_grpo",
                       scale_rewards="none")
    b_nft, b_grpo = _generate(nft, data), _generate(dr_grpo, data)
    with torch.no_grad():
        ids = torch.cat([b_nft["prompt_ids"], b_nft["completion_ids"]], 1)
        mask = torch.cat([b_nft["prompt_mask"], b_nft["completion_mask"]], 1)
        old, _, _ = nft._get_per_token_logps_and_entropies(model, ids, mask, b_nft["completion_ids"].size(1))
        b_nft["old_per_token_logps"] = b_grpo["old_per_token_logps"] = old
    g_same = _rel(_grad(nft, model, b_nft), _grad(dr_grpo, model, b_grpo))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(0.3 * p.std().nan_to_num() * torch.randn(p.shape, generator=generator))
    assert g_same < 1e-5  # with pi_old given explicitly and still equal to pi_theta
    assert _rel(_grad(nft, model, b_nft), _grad(dr_grpo, model, b_grpo)) > 1e-2


# --------------------------------------------------------------------------------------- behaviour


def _mean_logp(trainer, model, batch, where):
    with torch.no_grad():
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, batch["completion_ids"].size(1))
        seq = (logps * batch["completion_mask"]).sum(-1)
    return seq[where].mean().item()


def _one_sgd_step(trainer, model, batch, lr=0.5):
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(trainer.compute_loss(model, batch), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(lr * g)


def test_one_nft_step_raises_positives_and_lowers_negatives(tokenizer, data, tmp_path):
    changes = {}
    for neg_weight in (1.0, 0.0):
        model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0).train()
        trainer = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, neg_weight=neg_weight)
        batch = _generate(trainer, data)
        positive, negative = batch["nft_correct"].bool(), ~batch["nft_correct"].bool()
        before = _mean_logp(trainer, model, batch, positive), _mean_logp(trainer, model, batch, negative)
        _one_sgd_step(trainer, model, batch)
        after = _mean_logp(trainer, model, batch, positive), _mean_logp(trainer, model, batch, negative)
        changes[neg_weight] = (after[0] - before[0], after[1] - before[1])
    assert changes[1.0][0] > 0 and changes[1.0][1] < 0  # NFT: positives up, negatives down
    assert changes[0.0][0] > 0  # RFT raises the positives too ...
    assert changes[1.0][1] < changes[0.0][1]  # ... but lowers the negatives less than NFT does


def test_neg_weight_zero_is_exactly_the_rft_loss(model, tokenizer, data, tmp_path):
    """RFT: the omega-weighted NLL of the correct answers plus a constant (log pi_old), normalised as dr_grpo."""
    rft = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, neg_weight=0.0)
    batch = _generate(rft, data)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    n = batch["completion_ids"].size(1)

    def nll():  # an independent path: logits -> log_softmax -> gather
        logits = model(input_ids=ids, attention_mask=attention).logits[:, -n - 1 : -1]
        logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["completion_ids"][..., None])[..., 0]
        per_answer = -(logps * batch["completion_mask"]).sum(-1)
        weight = batch["nft_weight"] * batch["nft_correct"]
        return (weight * per_answer).sum() / (ids.size(0) * rft.max_completion_length)

    with torch.no_grad():
        batch["old_per_token_logps"], _, _ = rft._get_per_token_logps_and_entropies(model, ids, attention, n)
        model.lm_head.weight.mul_(1.1)  # move away from pi_old so the value is not trivially 0
        old_logp = (batch["old_per_token_logps"] * batch["completion_mask"]).sum(-1)
        const = (batch["nft_weight"] * batch["nft_correct"] * old_logp).sum() / (ids.size(0) * rft.max_completion_length)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_rft, loss_nll = rft.compute_loss(model, batch), nll()
    assert loss_rft.item() == pytest.approx(loss_nll.item() + const.item(), rel=1e-5, abs=1e-6)
    g_rft = torch.cat([g.flatten() for g in torch.autograd.grad(loss_rft, params)])
    g_nll = torch.cat([g.flatten() for g in torch.autograd.grad(loss_nll, params)])
    assert _rel(g_rft, g_nll) < 1e-5


def test_dynamic_sampling_drops_degenerate_questions(model, tokenizer, data, tmp_path):
    def all_wrong_then_ordered(completions, **kwargs):  # question 0: every answer wrong
        return [0.0 if i < G else r for i, r in enumerate(ordered_reward(completions))]

    kept = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, reward=all_wrong_then_ordered,
                    max_refill_rounds=0)  # no refill: the degenerate question stays, at weight 0
    batch = _generate(kept, data)
    assert batch["nft_rq"][:G].eq(0).all() and batch["nft_weight"][:G].eq(0).all()
    assert batch["nft_weight"][G:].gt(0).all()
    assert kept._metrics["train"]["nft/frac_questions_mixed"][-1] == pytest.approx(5 / 6)
    assert _grad(kept, model, _rows(batch, slice(0, G))).abs().max() == 0
    # Without it, the all-wrong question trains with the clipped r_q = 0.02 (notes section 2.2, item 6).
    off = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, reward=all_wrong_then_ordered,
                   dynamic_sampling=False)
    batch = _generate(off, data)
    assert batch["nft_weight"][:G].eq(0.98).all()
    assert _grad(off, model, _rows(batch, slice(0, G))).abs().max() > 0


class _RoundReward:
    """Binary verifier by generation round: round 0 makes every group uniform (all wrong); later rounds make
    the groups listed in ``mixed`` mixed (``ordered_reward``'s pattern) and the others all correct."""

    def __init__(self, mixed=None):
        self.calls, self.mixed = 0, set(range(len(K)) if mixed is None else mixed)
        self.__name__ = "round_reward"

    def __call__(self, completions, **kwargs):
        self.calls += 1
        if self.calls == 1:
            return [0.0] * len(completions)
        ordered = ordered_reward(completions)
        return [ordered[i] if (i // G) in self.mixed else 1.0 for i in range(len(completions))]


@pytest.mark.parametrize("mixed_per_round, rounds", [(range(len(K)), 1), ((0, 2, 5), 2)])
def test_dynamic_sampling_refills_the_batch_with_mixed_questions(model, tokenizer, data, tmp_path, mixed_per_round,
                                                                 rounds):
    """Gap 2 (DAPO dynamic sampling): dropped questions are replaced by mixed ones from new generation rounds.

    Before the refill existed, this batch held 0 mixed questions (all weights 0, no gradient)."""
    reward = _RoundReward(mixed_per_round)
    trainer = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, reward=reward)
    batch = _generate(trainer, data)
    assert reward.calls == 1 + rounds
    assert trainer._metrics["train"]["nft/refill_rounds"][-1] == rounds
    assert trainer._metrics["train"]["nft/frac_questions_mixed"][-1] == 0.0  # as generated in round 0
    assert trainer._metrics["train"]["nft/frac_questions_mixed_after_refill"][-1] == 1.0
    n = G * len(K)
    assert batch["completion_ids"].size(0) == batch["prompt_ids"].size(0) == n
    group_rq = batch["nft_rq"].view(len(K), G)
    assert ((group_rq > 0) & (group_rq < 1)).all() and (group_rq == group_rq[:, :1]).all()
    assert batch["nft_weight"].gt(0).all()
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
    # Left-padded prompts and right-padded completions still line up after merging rounds of different lengths.
    assert (batch["prompt_mask"].flip(1).cumprod(1).sum(1) == batch["prompt_mask"].sum(1)).all()
    assert (batch["completion_mask"].cumprod(1).sum(1) == batch["completion_mask"].sum(1)).all()
    assert torch.isfinite(trainer.compute_loss(model, batch)) and _grad(trainer, model, batch).abs().max() > 0


def test_dynamic_sampling_refill_respects_the_cap(model, tokenizer, data, tmp_path):
    always_uniform = _RoundReward(mixed=())  # every later round: all correct
    trainer = _trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, reward=always_uniform,
                       max_refill_rounds=2)
    batch = _generate(trainer, data)
    assert always_uniform.calls == 3 and trainer._metrics["train"]["nft/refill_rounds"][-1] == 2
    assert batch["completion_ids"].size(0) == G * len(K) and batch["nft_weight"].eq(0).all()
    assert trainer._metrics["train"]["nft/frac_questions_mixed_after_refill"][-1] == 0.0
    # Off: one generation round, as before.
    off = _RoundReward()
    _generate(_trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, reward=off, max_refill_rounds=0), data)
    assert off.calls == 1
    assert NFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False).max_refill_rounds == 29  # official budget
    with pytest.raises(ValueError, match="max_refill_rounds"):
        _args(NFTConfig, tmp_path, max_refill_rounds=-1)


def test_plus_minus_one_verifier_scores_like_zero_one(model, tokenizer, data, tmp_path):
    """The official verifier returns +1 / -1; ``correct_threshold=0.5`` reads it like a {0, 1} verifier."""
    def signed_reward(completions, **kwargs):
        return [2 * r - 1 for r in ordered_reward(completions)]

    zero_one = _generate(_trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path), data)
    signed = _generate(_trainer(NFTTrainer, NFTConfig, model, tokenizer, data, tmp_path, reward=signed_reward), data)
    for key in ("nft_correct", "nft_rq", "nft_weight"):
        assert torch.equal(zero_one[key], signed[key]), key


def test_subclass_can_override_scoring_like_a_trl_hook(model, tokenizer, data, tmp_path):
    class StrictNFT(NFTTrainer):  # e.g. a stricter verifier: only the first answer of each group counts
        def _score_questions(self, rewards_per_func, num_generations):
            correct, r_q, omega = super()._score_questions(rewards_per_func, num_generations)
            first = (torch.arange(len(correct)) % num_generations == 0).float()
            correct = correct * first
            r_q = correct.view(-1, num_generations).mean(1).repeat_interleave(num_generations)
            return correct, r_q, torch.where((r_q > 0) & (r_q < 1), 1 - r_q, torch.zeros_like(r_q))

    trainer = _trainer(StrictNFT, NFTConfig, model, tokenizer, data, tmp_path)
    batch = _generate(trainer, data)
    assert batch["nft_correct"].tolist() == [float(i % G == 0) for i in range(G * len(K))]
    assert torch.allclose(batch["nft_rq"], torch.full((G * len(K),), 1 / G))
    assert torch.isfinite(trainer.compute_loss(model, batch))


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def warm_model(tokenizer, data):
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    return sft_warm_start(model, tokenizer, data["train"], steps=60, learning_rate=1e-2, batch_size=32, seed=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # NFT, token ratio, strict on-policy
        {"neg_weight": 0.0, "ratio_type": "sequence", "loss_type": "grpo"},  # RFT, per-answer ratio
        {"steps_per_generation": 2, "gradient_accumulation_steps": 1, "loss_type": "dapo"},  # off-policy reuse
        {"beta": 0.04, "loss_type": "bnpo"},  # with GRPO's KL to a reference model (loaded from the base's path)
    ],
    ids=["nft", "rft-sequence", "off-policy", "kl"],
)
def test_train_changes_parameters_with_finite_metrics(warm_model, tokenizer, data, tmp_path, kwargs):
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64)
    model.load_state_dict(warm_model.state_dict())
    if kwargs.get("beta"):  # TRL loads the reference model from the policy's path
        model.save_pretrained(tmp_path / "base")
        model = type(model).from_pretrained(tmp_path / "base")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = NFTTrainer(model=model, reward_funcs=arithmetic_reward, train_dataset=data["train"],
                         processing_class=tokenizer,
                         args=_args(NFTConfig, tmp_path, max_steps=4, num_generations=8,
                                    per_device_train_batch_size=32, learning_rate=0.05, **kwargs))
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert logs and all(math.isfinite(log["loss"]) for log in logs)
    for key in ["nft/correct_rate", "nft/frac_questions_mixed", "nft/positive_loss", "nft/negative_loss",
                "nft/negative_clamp_frac", "entropy", "reward", *(["kl"] if kwargs.get("beta") else [])]:
        # scoring metrics come with generation steps only
        values = [log[key] for log in logs if log.get(key) is not None]
        assert values and all(math.isfinite(v) for v in values), key
    assert any(log.get("nft/frac_questions_mixed", 0) > 0 for log in logs)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(changed) == len(before), set(before) - set(changed)


def test_saved_model_has_safetensors_card_and_reloads(warm_model, tokenizer, data, tmp_path, fake_hub):
    from huggingface_hub import hf_hub_download
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64)
    model.load_state_dict(warm_model.state_dict())
    args = _args(NFTConfig, tmp_path, max_steps=1, num_generations=8, per_device_train_batch_size=32,
                 hub_model_id="hfgen-ci/nft-tiny")
    trainer = NFTTrainer(model=model, reward_funcs=arithmetic_reward, args=args, train_dataset=data["train"],
                         processing_class=tokenizer)
    trainer.train()
    out = tmp_path / "out"
    trainer.save_model()
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    verify_safetensors(out / "model.safetensors")
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert card["library_name"] == "hfgen" and {"hfgen", "hfgen-nft", "nft"} <= set(card["tags"])
    assert card["arxiv"] == "2505.18116" and card["hfgen_method"] == "nft"
    assert "| neg_weight | 1.0 |" in (out / "README.md").read_text()

    reloaded = AutoModelForCausalLM.from_pretrained(out)
    loaded = hfgen.load(out)
    for name, p in model.state_dict().items():
        assert torch.equal(p, reloaded.state_dict()[name]) and torch.equal(p, loaded.state_dict()[name]), name
    assert AutoTokenizer.from_pretrained(out)("12+7=")["input_ids"] == tokenizer("12+7=")["input_ids"]

    trainer.push_to_hub()
    card = yaml.safe_load(open(hf_hub_download("hfgen-ci/nft-tiny", "README.md")).read().split("---")[1])
    assert card["library_name"] == "hfgen" and "hfgen-nft" in card["tags"]
    assert 'model_id = "hfgen-ci/nft-tiny"' in (out / "README.md").read_text()
    pulled = hfgen.load("hfgen-ci/nft-tiny")
    assert all(torch.equal(p, pulled.state_dict()[n]) for n, p in model.state_dict().items())
