"""DDO (arXiv 2503.01103): identities of the objective, the exact AR ratio, the shared-noise diffusion ratio,
the closed-form optimum on a tabular model, the frozen reference, validation, saving and self-play."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hfgen.testing import tiny_models
from hfgen.trainers import DDOConfig, DDOTrainer
from hfgen.trainers.ddo import ddo_self_play, denoising_log_likelihood, generate_lm_samples, sequence_log_prob


def make_args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path), use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
                    per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3, logging_steps=1)
    return DDOConfig(**{**defaults, **kwargs})


def tiny_llama():
    return tiny_models.tiny_llama(pad_token_id=0)


def token_examples(n, seed, prompt_len=2, min_len=4, max_len=7, vocab_size=16):
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        ids = torch.randint(1, vocab_size, (length,), generator=g)
        labels = ids.clone()
        labels[:prompt_len] = -100
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def tiny_unet(seed=0, conditional=False):
    from diffusers import UNet2DConditionModel

    if not conditional:
        return tiny_models.tiny_unet2d(seed, in_channels=1)
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def image_examples(n, seed, conditional=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 8, 8), generator=g) * 2 - 1
    if conditional:
        h = torch.randn((n, 3, 8), generator=g)
        return [{"pixel_values": xi, "encoder_hidden_states": hi} for xi, hi in zip(x, h)]
    return [{"pixel_values": xi} for xi in x]


def scheduler(kind):
    from diffusers import DDPMScheduler, EDMEulerScheduler

    return EDMEulerScheduler(sigma_data=0.5) if kind == "edm" else DDPMScheduler(num_train_timesteps=100,
                                                                                   prediction_type=kind)


def first_batch(trainer, n=4):
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(n)]))


def lm_trainer(tmp_path, **kwargs):
    return DDOTrainer(tiny_llama(), args=make_args(tmp_path, **kwargs), train_dataset=token_examples(8, 1),
                      fake_dataset=token_examples(8, 2))


def unet_trainer(tmp_path, kind="edm", conditional=False, **kwargs):
    return DDOTrainer(tiny_unet(conditional=conditional), args=make_args(tmp_path, **kwargs),
                      train_dataset=image_examples(8, 1, conditional), fake_dataset=image_examples(8, 2, conditional),
                      noise_scheduler=scheduler(kind))


# ------------------------------------------------------------------------------ θ = θ_ref identities


@pytest.mark.parametrize("alpha", [0.0, 1.0, 3.5])
def test_ddo_loss_at_reference_is_one_plus_alpha_log2_causal_lm(tmp_path, alpha):
    trainer = lm_trainer(tmp_path, alpha=alpha)
    r_real, r_fake = trainer.compute_log_ratio(trainer.model, first_batch(trainer))
    assert torch.equal(r_real, torch.zeros(4)) and torch.equal(r_fake, torch.zeros(4))
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    assert loss.item() == pytest.approx((1 + alpha) * math.log(2), rel=1e-6)


@pytest.mark.parametrize("kind,conditional", [("edm", False), ("epsilon", False), ("v_prediction", False),
                                              ("edm", True)])
def test_ddo_loss_at_reference_is_one_plus_alpha_log2_diffusion(tmp_path, kind, conditional):
    trainer = unet_trainer(tmp_path, kind, conditional, alpha=2.0)
    r_real, r_fake = trainer.compute_log_ratio(trainer.model, first_batch(trainer))
    assert torch.equal(r_real, torch.zeros(4)) and torch.equal(r_fake, torch.zeros(4))
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    assert loss.item() == pytest.approx(3 * math.log(2), rel=1e-6)


def test_ddo_var_normalisation_divides_by_max_alpha(tmp_path):
    trainer = lm_trainer(tmp_path, alpha=4.0, normalize_by_max_alpha=True)
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    assert loss.item() == pytest.approx(5 * math.log(2) / 4, rel=1e-6)


def closed_form_gradient_check(trainer, log_likelihood):
    """At θ = θ_ref: ∇L = −(β/2) [E_data ∇log p_θ − α E_ref ∇log p_θ] (σ(0) = 1/2 in Eq. 13's gradient)."""
    model, batch, args = trainer.model, first_batch(trainer), trainer.args
    trainer.compute_loss(model, batch).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    closed = -(args.beta / 2) * (log_likelihood(batch["real"]).mean() - args.alpha * log_likelihood(batch["fake"]).mean())
    closed.backward()
    assert any(g.abs().sum() > 0 for g in grads.values())
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-7, msg=name)
    assert all(p.grad is None for p in trainer.ref_model.parameters())


def test_ddo_gradient_at_reference_matches_closed_form_causal_lm(tmp_path):
    trainer = lm_trainer(tmp_path, alpha=1.7, beta=0.3)
    closed_form_gradient_check(trainer, lambda half: sequence_log_prob(trainer.model, **half))


@pytest.mark.parametrize("kind", ["edm", "epsilon"])
def test_ddo_gradient_at_reference_matches_closed_form_diffusion(tmp_path, kind):
    trainer = unet_trainer(tmp_path, kind, alpha=0.5, beta=0.05)
    g = torch.Generator().manual_seed(3)
    level = torch.rand(4, generator=g) * 2 + 0.1 if kind == "edm" else torch.randint(0, 100, (4,), generator=g)
    noise = torch.randn((4, 1, 8, 8), generator=g)
    trainer.sample_noise = lambda x0: (level, noise)
    closed_form_gradient_check(trainer, lambda half: denoising_log_likelihood(
        trainer.model, trainer.noise_scheduler, half["pixel_values"], noise, level))


# ------------------------------------------------------------------------------ the log-ratio estimators


def test_ddo_causal_lm_log_ratio_is_exact_sum_of_completion_token_log_prob_differences(tmp_path):
    trainer = lm_trainer(tmp_path)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = first_batch(trainer)
    assert (batch["real"]["attention_mask"] == 0).any()  # padding is exercised
    r_real, r_fake = trainer.compute_log_ratio(trainer.model, batch)
    for side, r in (("real", r_real), ("fake", r_fake)):
        for i in range(4):
            example = trainer.train_dataset[i][side]
            ids, labels = example["input_ids"], example["labels"]
            expected = 0.0
            for model, sign in ((trainer.model, 1), (trainer.ref_model, -1)):
                logp = model(input_ids=ids[None]).logits[0].double().log_softmax(-1)  # unpadded, one sequence
                expected += sign * sum(logp[t - 1, ids[t]].item() for t in range(len(ids)) if labels[t] != -100)
            assert r[i].item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("kind", ["edm", "epsilon"])
def test_ddo_diffusion_ratio_shares_noise_level_and_noise_across_models(tmp_path, kind):
    """After training moved θ and the RNG, setting the reference to θ gives r = 0 exactly: both models see the same
    (σ, n) on both halves of the batch; with a different reference r ≠ 0."""
    trainer = unet_trainer(tmp_path, kind, max_steps=2, learning_rate=1e-2)
    trainer.train()
    batch = first_batch(trainer)
    r_real, _ = trainer.compute_log_ratio(trainer.model, batch)
    assert r_real.abs().max() > 0
    trainer.ref_model.load_state_dict(trainer.model.state_dict())
    r_real, r_fake = trainer.compute_log_ratio(trainer.model, batch)
    assert torch.equal(r_real, torch.zeros(4)) and torch.equal(r_fake, torch.zeros(4))


# ------------------------------------------------------------------------------ closed-form optimum


class TabularLM(nn.Module):
    """A categorical "causal LM": the next-token distribution is softmax(logits), whatever the context."""

    def __init__(self, num_categories):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_categories))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def exact_samples(probabilities, total):
    """``total`` one-token sequences (after a prompt token) whose empirical distribution is exactly ``probabilities``."""
    counts = [round(float(p) * total) for p in probabilities]
    assert sum(counts) == total
    return [{"input_ids": torch.tensor([0, x]), "labels": torch.tensor([-100, x])}
            for x, c in enumerate(counts) for _ in range(c)]


P_DATA = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=torch.float64)
P_REF = torch.full((4,), 0.25, dtype=torch.float64)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_ddo_tabular_optimum_is_theorem_3_3(tmp_path, beta):
    """Full-batch DDO on a categorical model converges to p* ∝ p_ref^(1−1/β) p_data^(1/β) (Theorem 3.3) for the α
    at which the pointwise optimum r* = (1/β) log(p_data / (α p_ref)) is normalised; β = α = 1 gives p_data
    (Theorem 3.1)."""
    tilted = P_REF ** (1 - 1 / beta) * P_DATA ** (1 / beta)
    alpha = float(tilted.sum() ** beta)
    expected = tilted / tilted.sum()
    if beta == 1.0:
        assert alpha == pytest.approx(1.0) and torch.allclose(expected, P_DATA)
    model = TabularLM(4)  # θ = θ_ref: uniform
    args = make_args(tmp_path, alpha=alpha, beta=beta, per_device_train_batch_size=16, max_steps=300,
                     learning_rate=0.05, lr_scheduler_type="constant", logging_steps=1000, optim="adamw_torch",
                     weight_decay=0.0)
    trainer = DDOTrainer(model, args=args, train_dataset=exact_samples(P_DATA, 16),
                         fake_dataset=exact_samples(P_REF, 16))
    trainer.train()
    p_theta = model.logits.detach().double().softmax(-1)
    torch.testing.assert_close(p_theta, expected, atol=3e-3, rtol=0)
    torch.testing.assert_close(trainer.ref_model.logits.detach(), torch.zeros(4))


# ------------------------------------------------------------------------------ the frozen reference


@pytest.mark.parametrize("family", ["causal_lm", "diffusion"])
def test_ddo_reference_is_bitwise_unchanged_by_training(tmp_path, family):
    trainer = lm_trainer(tmp_path, learning_rate=1e-2) if family == "causal_lm" else unet_trainer(tmp_path,
                                                                                                 learning_rate=1e-2)
    before = {k: v.clone() for k, v in trainer.ref_model.state_dict().items()}
    theta_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.ref_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for p in trainer.ref_model.parameters())
    assert any(not torch.equal(theta_before[k], v) for k, v in trainer.model.state_dict().items())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in trainer.ref_model.parameters()}
    logged = trainer.state.log_history[0]
    assert {"ddo/log_ratio_real", "ddo/log_ratio_fake", "ddo/margin", "ddo/accuracy"} <= set(logged)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("field,value", [("alpha", -0.1), ("beta", 0.0), ("beta", -1.0), ("p_std", 0.0),
                                         ("snr_gamma", 0.0), ("num_rounds", 0), ("num_reference_samples", 0),
                                         ("self_play_eval_steps", 0), ("remove_unused_columns", True)])
def test_ddo_config_rejects_bad_values_naming_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        DDOConfig(output_dir=str(tmp_path), **{field: value})


def test_ddo_trainer_rejects_reference_of_another_architecture(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    wider = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    with pytest.raises(ValueError, match="`ref_model` must have the architecture"):
        DDOTrainer(tiny_llama(), ref_model=wider, args=make_args(tmp_path), train_dataset=token_examples(4, 1),
                   fake_dataset=token_examples(4, 2))
    with pytest.raises(ValueError, match="`ref_model` must have the architecture"):
        DDOTrainer(tiny_llama(), ref_model=tiny_unet(), args=make_args(tmp_path), train_dataset=token_examples(4, 1),
                   fake_dataset=token_examples(4, 2))


def test_ddo_trainer_rejects_mismatched_sample_shapes_and_missing_keys(tmp_path):
    fakes = [{"pixel_values": torch.zeros(1, 16, 16)}] * 4
    with pytest.raises(ValueError, match="`fake_dataset` samples must have the shape"):
        DDOTrainer(tiny_unet(), args=make_args(tmp_path), train_dataset=image_examples(4, 1), fake_dataset=fakes,
                   noise_scheduler=scheduler("edm"))
    with pytest.raises(ValueError, match="`fake_dataset` examples must hold 'input_ids'"):
        DDOTrainer(tiny_llama(), args=make_args(tmp_path), train_dataset=token_examples(4, 1),
                   fake_dataset=image_examples(4, 2))


# ------------------------------------------------------------------------------ saving, self-play


def test_ddo_diffusion_save_is_diffusers_safetensors_with_hfgen_card(tmp_path):
    import hfgen

    trainer = unet_trainer(tmp_path, max_steps=1)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    files = {p.name for p in (tmp_path / "final").iterdir()}
    assert "diffusion_pytorch_model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    card = (tmp_path / "final" / "README.md").read_text()
    assert "hfgen-ddo" in card and "2503.01103" in card and "zheng2025ddo" in card
    reloaded = hfgen.load(str(tmp_path / "final"))
    for (k, v), w in zip(trainer.model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(v, w), k


def test_ddo_self_play_logs_each_round_and_never_returns_worse_than_its_reference(tmp_path):
    import json

    real = token_examples(16, 1, prompt_len=1)
    prompt = torch.tensor([3])
    held_out = token_examples(16, 5, prompt_len=1)

    def metric(m):  # deterministic: mean negative log-likelihood of held-out real data (lower is better)
        return -sum(sequence_log_prob(m, ex["input_ids"][None], torch.ones(1, len(ex["input_ids"])),
                                      ex["labels"][None]).item() for ex in held_out) / len(held_out)

    args = make_args(tmp_path, num_rounds=2, num_reference_samples=16, self_play_eval_steps=2, max_steps=4,
                     learning_rate=1e-2, beta=0.5)
    out = ddo_self_play(tiny_llama(), args, real, lambda ref, n, r: generate_lm_samples(ref, prompt, n, 4, seed=r),
                        metric)
    assert [r.round for r in out.rounds] == [1, 2]
    for r in out.rounds:
        assert r.best_metric <= r.reference_metric and [s for s, _ in r.history] == [0, 2, 4]
    assert out.rounds[1].reference_metric == pytest.approx(out.rounds[0].best_metric, rel=1e-5)
    saved = json.loads((tmp_path / "self_play.json").read_text())
    assert [r["best_metric"] for r in saved] == [r.best_metric for r in out.rounds]
    assert (tmp_path / "round_2" / "best" / "model.safetensors").is_file()
    assert metric(out.model) == pytest.approx(out.rounds[1].best_metric, rel=1e-5)


# ------------------------------------------------------------------------------ CFG-compatible condition dropout


def class_conditional_trainer(tmp_path, **kwargs):
    """Class-conditional UNet2DModel: classes 0-2 and the null label 3 (the last class embedding)."""
    unet = tiny_models.tiny_unet2d(0, in_channels=1, num_class_embeds=4)
    real = [{**ex, "class_labels": torch.tensor(i % 3)} for i, ex in enumerate(image_examples(8, 1))]
    fake = [{**ex, "class_labels": torch.tensor((i + 1) % 3)} for i, ex in enumerate(image_examples(8, 2))]
    args = make_args(tmp_path, **{"alpha": 2.0, "beta": 0.05, "cond_drop_prob": 0.5, **kwargs})
    trainer = DDOTrainer(unet, args=args, train_dataset=real, fake_dataset=fake, noise_scheduler=scheduler("edm"))
    g = torch.Generator().manual_seed(3)
    level, noise = torch.rand(4, generator=g) * 2 + 0.1, torch.randn((4, 1, 8, 8), generator=g)
    trainer.sample_noise = lambda x0: (level, noise)
    return trainer, level, noise


def perturb(model, scale=0.05, seed=7):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def loss_and_grads(trainer, drop):
    trainer.sample_condition_dropout = lambda batch_size, device: drop
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()}


def test_ddo_condition_dropout_weights_alpha_per_row(tmp_path):
    """α only on conditional reference samples (NVlabs/DDO issue #3); dropped rows use the null label in both the θ
    and the reference pass: −mean_i log σ(β r_real,i) − mean_i α (1 − m_i) log σ(−β r_fake,i)."""
    trainer, level, noise = class_conditional_trainer(tmp_path)
    perturb(trainer.model)  # θ ≠ θ_ref, so r ≠ 0 and every term has a gradient
    drop = torch.tensor([True, False, False, True, False, True, True, False])  # real rows, then fake rows
    loss, _ = loss_and_grads(trainer, drop)
    batch, args, null = first_batch(trainer), trainer.args, 3

    def log_ratio(half, mask):
        labels = torch.where(mask, torch.full_like(half["class_labels"], null), half["class_labels"])
        ll = [denoising_log_likelihood(m, trainer.noise_scheduler, half["pixel_values"], noise, level,
                                       class_labels=labels) for m in (trainer.model, trainer.ref_model)]
        return ll[0] - ll[1]

    r_real, r_fake = log_ratio(batch["real"], drop[:4]), log_ratio(batch["fake"], drop[4:])
    fake_weight = args.alpha * (~drop[4:]).float()
    expected = (-torch.nn.functional.logsigmoid(args.beta * r_real).mean()
                - (fake_weight * torch.nn.functional.logsigmoid(-args.beta * r_fake)).mean())
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-6, atol=0)
    # the null label matters: the dropped real rows' ratio differs from the one with their own labels
    assert not torch.allclose(r_real[drop[:4]], log_ratio(batch["real"], torch.zeros(4, dtype=torch.bool))[drop[:4]])


def test_ddo_condition_dropout_none_dropped_is_plain_ddo_all_dropped_has_no_fake_gradient(tmp_path):
    trainer, _, _ = class_conditional_trainer(tmp_path)
    perturb(trainer.model)
    none, every = torch.zeros(8, dtype=torch.bool), torch.ones(8, dtype=torch.bool)
    loss_none, grads_none = loss_and_grads(trainer, none)
    trainer.args.cond_drop_prob = 0.0  # the unconditional-alpha loss of the same model, batch and noise
    loss_plain, grads_plain = loss_and_grads(trainer, none)
    torch.testing.assert_close(loss_none, loss_plain, rtol=1e-6, atol=0)
    for name in grads_plain:
        torch.testing.assert_close(grads_none[name], grads_plain[name], rtol=1e-5, atol=1e-8, msg=name)

    # All rows dropped: the gradient is bitwise the α = 0 one (the fake term contributes exactly zero) ...
    trainer.args.cond_drop_prob = 0.5
    _, grads_all = loss_and_grads(trainer, every)
    trainer.args.alpha = 0.0
    _, grads_all_alpha0 = loss_and_grads(trainer, every)
    assert all(torch.equal(grads_all[n], grads_all_alpha0[n]) for n in grads_all)
    # ... while with α > 0 and no row dropped the fake term does move the gradient.
    assert any(not torch.equal(grads_none[n], loss_and_grads(trainer, none)[1][n]) for n in grads_none)


def test_ddo_condition_dropout_at_reference_causal_lm_keeps_r_zero(tmp_path):
    """At θ = θ_ref the null token reaches θ and the reference alike (r ≡ 0), so the loss is
    (1 + α · fraction of conditional reference samples) · log 2."""
    trainer = lm_trainer(tmp_path, alpha=3.0, cond_drop_prob=0.5, null_condition_token_id=0)
    drop = torch.tensor([True, False, True, True, False, True, True, True])
    trainer.sample_condition_dropout = lambda batch_size, device: drop
    seen = []
    forward = trainer.model.forward
    trainer.model.forward = lambda input_ids=None, **kw: seen.append(input_ids[:, 0].clone()) or forward(
        input_ids=input_ids, **kw)
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    assert loss.item() == pytest.approx((1 + 3.0 * 1 / 4) * math.log(2), rel=1e-6)
    assert (seen[0][drop] == 0).all() and (seen[0][~drop] != 0).all()  # data tokens are 1..15; 0 is the null


def test_ddo_condition_dropout_rejects_missing_null_condition(tmp_path):
    with pytest.raises(ValueError, match="`null_condition_token_id`"):
        lm_trainer(tmp_path, cond_drop_prob=0.1)
    with pytest.raises(ValueError, match="`cond_drop_prob` > 0 needs a conditional model"):
        unet_trainer(tmp_path, cond_drop_prob=0.1)
    with pytest.raises(ValueError, match="`null_encoder_hidden_states`"):
        unet_trainer(tmp_path, conditional=True, cond_drop_prob=0.1)
    with pytest.raises(ValueError, match="`null_class_label`"):
        class_conditional_trainer(tmp_path, null_class_label=4)
    for field, value in (("cond_drop_prob", 1.0), ("cond_drop_prob", -0.1), ("ema_decay", 1.5), ("ema_decay", -0.1)):
        with pytest.raises(ValueError, match=f"`{field}`"):
            DDOConfig(output_dir=str(tmp_path), **{field: value})


def test_ddo_condition_dropout_trains_text_conditional_unet_with_null_states(tmp_path):
    null = torch.zeros(3, 8)
    trainer = DDOTrainer(tiny_unet(conditional=True), args=make_args(tmp_path, cond_drop_prob=0.5, max_steps=2),
                         train_dataset=image_examples(8, 1, True), fake_dataset=image_examples(8, 2, True),
                         noise_scheduler=scheduler("edm"), null_encoder_hidden_states=null)
    drop = torch.tensor([True, False, False, True, True, False, False, False])
    dropped = trainer.drop_conditions(first_batch(trainer), drop)
    assert torch.equal(dropped["real"]["encoder_hidden_states"][0], null)
    assert torch.equal(dropped["real"]["encoder_hidden_states"][1], first_batch(trainer)["real"]["encoder_hidden_states"][1])
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


# ------------------------------------------------------------------------------ EMA of θ


def ema_run(tmp_path, decay, steps=4, peft_config=None, **kwargs):
    from transformers import TrainerCallback

    trajectory = []

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            trajectory.append({n: p.detach().double().clone() for n, p in model.named_parameters()})

        def on_step_end(self, args, state, control, model=None, **kw):
            trajectory.append({n: p.detach().double().clone() for n, p in model.named_parameters()})

    trainer = DDOTrainer(tiny_llama(), args=make_args(tmp_path, ema_decay=decay, max_steps=steps, learning_rate=1e-2,
                                                      **kwargs),
                         train_dataset=token_examples(16, 1), fake_dataset=token_examples(16, 2), callbacks=[Record()],
                         peft_config=peft_config)
    trainer.train()
    return trainer, trajectory


def test_ddo_ema_decay_0_is_theta_and_decay_1_stays_the_reference(tmp_path):
    trainer, _ = ema_run(tmp_path / "d0", 0.0)
    assert all(torch.equal(e, p) for e, p in zip(trainer.ema_model.parameters(), trainer.model.parameters()))
    trainer, trajectory = ema_run(tmp_path / "d1", 1.0)
    ref = dict(trainer.ref_model.named_parameters())
    assert all(torch.equal(e, ref[n]) for n, e in trainer.ema_model.named_parameters())
    assert any(not torch.equal(p, ref[n]) for n, p in trainer.model.named_parameters())  # θ did move
    assert not any(p.requires_grad for p in trainer.ema_model.parameters())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in trainer.ema_model.parameters()}


def test_ddo_ema_equals_closed_form_of_the_parameter_trajectory(tmp_path):
    """θ_ema,k = d^k θ_0 + (1 − d) Σ_{i=1..k} d^(k−i) θ_i over the recorded θ_0..θ_k (one update per optimizer step,
    also under gradient accumulation)."""
    decay = 0.7
    trainer, trajectory = ema_run(tmp_path, decay, steps=4, gradient_accumulation_steps=2)
    k = len(trajectory) - 1
    assert k == 4
    for name, ema in trainer.ema_model.named_parameters():
        expected = decay**k * trajectory[0][name] + sum((1 - decay) * decay ** (k - i) * trajectory[i][name]
                                                        for i in range(1, k + 1))
        torch.testing.assert_close(ema.double(), expected, rtol=1e-5, atol=1e-7, msg=name)
    theta = dict(trainer.model.named_parameters())
    assert any(not torch.allclose(ema, theta[n]) for n, ema in trainer.ema_model.named_parameters())


def test_ddo_ema_is_checkpointed_and_resume_is_exact(tmp_path):
    unbroken, _ = ema_run(tmp_path / "a", 0.5, steps=4, save_strategy="steps", save_steps=2)
    resumed = DDOTrainer(tiny_llama(), args=make_args(tmp_path / "b", ema_decay=0.5, max_steps=4, learning_rate=1e-2),
                         train_dataset=token_examples(16, 1), fake_dataset=token_examples(16, 2))
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    for (n, a), b in zip(unbroken.ema_model.state_dict().items(), resumed.ema_model.state_dict().values()):
        assert torch.equal(a, b), n
    for (n, a), b in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), n
    (tmp_path / "a" / "checkpoint-2" / "ddo_ema.safetensors").unlink()
    again = DDOTrainer(tiny_llama(), args=make_args(tmp_path / "c", ema_decay=0.5, max_steps=4),
                       train_dataset=token_examples(16, 1), fake_dataset=token_examples(16, 2))
    with pytest.raises(ValueError, match="ddo_ema.safetensors"):
        again.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))


def test_ddo_ema_with_peft_config_averages_the_adapter_and_checkpoints_it_alone(tmp_path):
    """With ``peft_config`` + ``ema_decay`` the EMA is a copy of the adapted (PEFT) model: its parameters match the
    trained model's 1:1 by name, each LoRA parameter is the closed-form EMA of its own trajectory, the frozen base
    is bitwise the model's, a checkpoint's ``ddo_ema.safetensors`` holds the adapter's EMA only, and resume is exact.

    Checked on purpose: with the EMA copied before the adapter is added (the old order), training stops at the
    first EMA update with ``RuntimeError: The size of tensor a (16) must match the size of tensor b (4)`` (the
    EMA's base parameters were zipped against the LoRA ones)."""
    from peft import LoraConfig, PeftModel
    from safetensors import safe_open

    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, init_lora_weights=False)
    decay = 0.7
    trainer, trajectory = ema_run(tmp_path / "a", decay, steps=4, peft_config=lora, save_strategy="steps",
                                  save_steps=2)
    assert isinstance(trainer.model, PeftModel) and isinstance(trainer.ema_model, PeftModel)
    online, ema = dict(trainer.model.named_parameters()), dict(trainer.ema_model.named_parameters())
    assert list(online) == list(ema)
    trained = [n for n, p in online.items() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained) and trainer._ema_names == trained
    k = len(trajectory) - 1
    for name in trained:
        expected = decay**k * trajectory[0][name] + sum((1 - decay) * decay ** (k - i) * trajectory[i][name]
                                                        for i in range(1, k + 1))
        torch.testing.assert_close(ema[name].double(), expected, rtol=1e-5, atol=1e-7, msg=name)
    assert any(not torch.allclose(ema[n], online[n]) for n in trained)  # the EMA lags θ
    assert all(torch.equal(ema[n], p) for n, p in online.items() if not p.requires_grad)  # the frozen base
    with safe_open(str(tmp_path / "a" / "checkpoint-2" / "ddo_ema.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(n.replace(".", "/") for n in trained)
    resumed = DDOTrainer(tiny_llama(), args=make_args(tmp_path / "b", ema_decay=decay, max_steps=4, learning_rate=1e-2),
                         train_dataset=token_examples(16, 1), fake_dataset=token_examples(16, 2), peft_config=lora)
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    for (n, a), b in zip(trainer.ema_model.state_dict().items(), resumed.ema_model.state_dict().values()):
        assert torch.equal(a, b), n


def test_ddo_self_play_refuses_peft_config_before_any_work(tmp_path):
    """Before the guard, a run drew samples and trained a round, then loading its best (adapted) weights into the
    plain policy failed with ``RuntimeError: Error(s) in loading state_dict for LlamaForCausalLM``. Checked on
    purpose: without the guard this test fails (``generate_fn`` is called: ``AssertionError: no sample may be drawn``)."""
    from peft import LoraConfig

    def generate(ref, n, r):
        raise AssertionError("no sample may be drawn")

    args = make_args(tmp_path, num_rounds=1, num_reference_samples=8, max_steps=2)
    with pytest.raises(ValueError, match="`peft_config` is not supported by `ddo_self_play`"):
        ddo_self_play(tiny_llama(), args, token_examples(8, 1), generate, lambda m: 0.0,
                      peft_config=LoraConfig(r=4, target_modules=["q_proj"]))


def test_ddo_self_play_evaluates_and_keeps_the_ema(tmp_path):
    """With ema_decay = 1 the EMA never leaves the reference: every evaluation sees the reference, so the round keeps
    step 0 and the next reference is bitwise the pretrained model, although θ itself was trained."""
    model = tiny_llama()
    evaluated = []

    def metric(m):
        evaluated.append(m)
        return sum(p.double().sum().item() for p in m.parameters())

    args = make_args(tmp_path, num_rounds=1, num_reference_samples=8, self_play_eval_steps=1, max_steps=2,
                     learning_rate=1e-2, ema_decay=1.0)
    out = ddo_self_play(model, args, token_examples(8, 1, prompt_len=1),
                        lambda ref, n, r: generate_lm_samples(ref, torch.tensor([3]), n, 3, seed=r), metric)
    (round_1,) = out.rounds
    assert [s for s, _ in round_1.history] == [0, 1, 2] and len({v for _, v in round_1.history}) == 1
    assert round_1.best_step == 0
    assert all(torch.equal(a, b) for a, b in zip(out.model.state_dict().values(), model.state_dict().values()))
    assert all(m is evaluated[0] for m in evaluated)  # always the trainer's EMA module, never θ
