"""GFT for autoregressive models, closed-form optima, and end-to-end training with save/load."""

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM

from hfgen.pipelines.gft import GFTCausalLM
from hfgen.trainers import GFTConfig, GFTTrainer
from hfgen.trainers.gft import gft_interpolate

VOCAB, NULL = 12, 11


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=16, tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def tiny_gft_lm(seed=0, perturb=True):
    model = GFTCausalLM.from_causal_lm(tiny_lm(seed), null_condition_token_id=NULL)
    if perturb:  # a partly trained β embedding, so that β matters
        torch.nn.init.normal_(model.beta_embedding.linear_2.weight, std=0.5)
    return model


def config(tmp_path, **kwargs):
    kwargs = {"cond_drop_prob": 0.0, "report_to": [], "use_cpu": True, "per_device_train_batch_size": 4, **kwargs}
    return GFTConfig(output_dir=str(tmp_path / "out"), **kwargs)


def sequences(n=6, length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 10, (n, length), generator=g)
    ids[:, 0] = torch.randint(0, 3, (n,), generator=g)  # condition tokens 0-2
    return ids


def grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_zero_initialised_beta_embedding_leaves_causal_lm_bit_unchanged(tmp_path):
    lm = tiny_lm().eval()
    ids = sequences()
    with torch.no_grad():
        reference = lm(ids).logits
        model = GFTCausalLM.from_causal_lm(lm, null_condition_token_id=NULL).eval()
        for beta in (0.1, 0.7, 1.0):
            assert torch.equal(model(ids, beta=beta).logits, reference)
    model.save_pretrained(tmp_path / "m")
    import hfgen

    loaded = hfgen.load(tmp_path / "m").eval()
    assert isinstance(loaded, GFTCausalLM)
    with torch.no_grad():
        assert torch.equal(loaded(ids, beta=0.3).logits, reference)


def test_gft_lm_loss_at_beta_one_is_cross_entropy(tmp_path):
    class BetaOne(GFTTrainer):
        def sample_beta(self, batch_size, device):
            return torch.ones_like(super().sample_beta(batch_size, device))

    model, ids = tiny_gft_lm(), sequences()
    trainer = BetaOne(model, config(tmp_path), train_dataset=Dataset.from_dict({"x": [0]}))
    loss = trainer.compute_loss(model.train(), {"input_ids": ids})
    loss.backward()
    ours = grads(model)
    model.zero_grad()
    reference = model(ids, beta=1.0, labels=ids).loss  # transformers' own shifted next-token cross-entropy
    reference.backward()
    torch.testing.assert_close(loss, reference)
    for a, b in zip(ours, grads(model)):
        torch.testing.assert_close(a, b)


def test_gft_lm_loss_is_the_official_logit_interpolation(tmp_path):
    """LlamaGen GFT_c2i.py: logits = β·ℓ(c, β) + (1 − β)·sg[ℓ(∅, 1)], dropped rows see (∅, β = 1)."""
    model, ids = tiny_gft_lm(), sequences()
    trainer = GFTTrainer(model, config(tmp_path, cond_drop_prob=0.5), train_dataset=Dataset.from_dict({"x": [0]}))
    torch.manual_seed(5)
    loss = trainer.compute_loss(model.train(), {"input_ids": ids})
    loss.backward()
    ours = grads(model)
    model.zero_grad()
    torch.manual_seed(5)
    beta = torch.rand(len(ids))
    drop = torch.rand(len(ids)) < 0.5
    cond = ids.clone()
    cond[drop, 0] = NULL
    null = ids.clone()
    null[:, 0] = NULL
    logits = model(cond, beta=torch.where(drop, 1.0, beta)).logits
    with torch.no_grad():
        uncond = model.eval()(null, beta=torch.ones(len(ids))).logits
    model.train()
    mixed = beta[:, None, None] * logits + (1 - beta[:, None, None]) * uncond
    reference = F.cross_entropy(mixed[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    reference.backward()
    torch.testing.assert_close(loss, reference)
    for a, b in zip(ours, grads(model)):
        torch.testing.assert_close(a, b)


def test_generate_adds_beta_to_the_condition_token_only_once():
    model, ids = tiny_gft_lm().eval(), sequences(n=3, length=1)
    beta = torch.tensor([0.3, 0.6, 1.0])
    out = model.generate(ids, beta=beta, do_sample=False, max_new_tokens=4, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        full = model(out.sequences, beta=beta).logits  # the whole sequence in one uncached forward
    for step, logits in enumerate(out.logits):
        torch.testing.assert_close(logits, full[:, step], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(model(out.sequences, beta=1.0).logits[:2], full[:2])


def test_lm_trainer_requires_a_beta_input_and_a_null_token(tmp_path):
    with pytest.raises(ValueError, match="no β input"):
        GFTTrainer(tiny_lm(), config(tmp_path), train_dataset=Dataset.from_dict({"x": [0]}))
    model = GFTCausalLM.from_causal_lm(tiny_lm())
    with pytest.raises(ValueError, match="null_condition_token_id"):
        GFTTrainer(model, config(tmp_path), train_dataset=Dataset.from_dict({"x": [0]}))


# ------------------------------------------------------------------------------ closed-form optima


def fit(params, loss_fn, steps=1500, lr=0.05):
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()


def test_tabular_gft_optimum_is_the_cfg_distribution():
    """Free logits ℓ(c, β) per condition and β, the null branch ℓ(∅, 1) trained on dropped rows, exact expected
    cross-entropy: the GFT optimum satisfies softmax ℓ(c, β) ∝ p(x)^{1 − 1/β} p(x|c)^{1/β} (CFG at scale 1/β)."""
    torch.manual_seed(0)
    p_x_given_c = torch.softmax(2 * torch.randn(3, 6), -1)  # 3 classes, 6 outcomes
    p_c = torch.tensor([0.5, 0.3, 0.2])
    p_x = p_c @ p_x_given_c
    betas = torch.tensor([0.3, 0.6, 1.0])
    logits = torch.zeros(3, len(betas), 6, requires_grad=True)  # ℓ(c, β)
    null_logits = torch.zeros(6, requires_grad=True)  # ℓ(∅, β = 1)
    drop = 0.2

    b = betas.repeat(3)  # rows (c, β) flattened
    target = p_x_given_c.repeat_interleave(len(betas), 0)
    weight = p_c.repeat_interleave(len(betas))

    def expected_loss():  # Σ_c p(c) Σ_β [(1 − drop)·CE(β ℓ(c, β) + (1 − β) sg ℓ(∅, 1)) + drop·CE(input (∅, 1))]
        null = null_logits.expand(len(b), 6)
        mixed = gft_interpolate(logits.reshape(-1, 6), null, b)
        dropped = gft_interpolate(null, null, b)
        cross_entropy = lambda z: -(target * z.log_softmax(-1)).sum(-1)  # noqa: E731
        return (weight * ((1 - drop) * cross_entropy(mixed) + drop * cross_entropy(dropped))).sum()

    fit([logits, null_logits], expected_loss, steps=2000)
    torch.testing.assert_close(null_logits.softmax(-1), p_x, atol=2e-3, rtol=0)
    for j, beta in enumerate(betas):
        cfg = p_x ** (1 - 1 / beta) * p_x_given_c ** (1 / beta)
        torch.testing.assert_close(logits[:, j].softmax(-1), cfg / cfg.sum(-1, keepdim=True), atol=5e-3, rtol=0)


def test_gaussian_gft_optimum_is_the_cfg_noise_prediction():
    """2-D Gaussian classes x|c ~ N(μ_c, s²I), x_t = a·x + σ·ε at one noise level: E[ε | x_t, c] and E[ε | x_t] are
    analytic. Fitting the GFT objective (free outputs per x_t grid point, class and β; null branch on dropped rows)
    gives ε(x_t | c, β) = ε_u + (ε_c − ε_u)/β, the CFG prediction at scale 1/β."""
    torch.manual_seed(0)
    mu = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]])
    p_c, s, a, sigma = torch.tensor([0.4, 0.35, 0.25]), 0.5, 0.8, 0.6
    grid = torch.stack(torch.meshgrid(torch.linspace(-2, 2, 5), torch.linspace(-2, 2, 5), indexing="ij"), -1).reshape(-1, 2)
    var = a**2 * s**2 + sigma**2  # x_t | c ~ N(a μ_c, var I); E[ε | x_t, c] = σ (x_t − a μ_c) / var
    eps_c = sigma * (grid[:, None] - a * mu[None]) / var  # (G, C, 2)
    log_lik = -((grid[:, None] - a * mu[None]) ** 2).sum(-1) / (2 * var) + p_c.log()
    eps_u = (log_lik.softmax(-1)[..., None] * eps_c).sum(1)  # E[ε | x_t] = Σ_c p(c | x_t) E[ε | x_t, c]
    p_xt = log_lik.logsumexp(-1).softmax(0)  # weights of the grid points (the squared loss decouples per point)
    betas = torch.tensor([0.25, 0.5, 1.0])
    out = torch.zeros(len(grid), 3, len(betas), 2, requires_grad=True)  # ε_θ(x_t | c, β)
    null_out = torch.zeros(len(grid), 2, requires_grad=True)  # ε_θ(x_t | ∅, 1)
    drop = 0.2
    post_c = log_lik.softmax(-1)  # p(c | x_t)

    b = betas.repeat(len(grid) * 3)  # rows (x_t, c, β) flattened
    target = eps_c.repeat_interleave(len(betas), 1).reshape(-1, 2)
    weight = (p_xt[:, None] * post_c).repeat_interleave(len(betas), 1).reshape(-1)

    def expected_loss():  # E‖β f + (1 − β) sg[f_u] − ε‖² up to constants: ε replaced by its posterior mean
        null = null_out.repeat_interleave(3 * len(betas), 0)
        mixed = gft_interpolate(out.reshape(-1, 2), null, b)
        dropped = gft_interpolate(null, null, b)  # dropped rows: the network sees (∅, 1)
        cond, uncond = ((mixed - target) ** 2).sum(-1), ((dropped - target) ** 2).sum(-1)
        return (weight * ((1 - drop) * cond + drop * uncond)).sum()

    fit([out, null_out], expected_loss, steps=2000)
    torch.testing.assert_close(null_out, eps_u, atol=2e-3, rtol=0)
    for j, beta in enumerate(betas):
        cfg = eps_u[:, None] + (eps_c - eps_u[:, None]) / beta
        torch.testing.assert_close(out[:, :, j], cfg, atol=1e-2, rtol=0)


# ---------------------------------------------------------------------------------- end to end


def test_gft_trains_a_digits_unet_saves_safetensors_and_a_card(tmp_path):
    from diffusers import DDIMScheduler, UNet2DConditionModel

    import hfgen
    from hfgen.data.digits import digits_dataset
    from hfgen.pipelines import GuidanceFreePipeline

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                                mid_block_type=None, norm_num_groups=4, num_class_embeds=11, time_cond_proj_dim=16)
    args = config(tmp_path, cond_drop_prob=0.1, max_steps=3, per_device_train_batch_size=16, learning_rate=1e-3,
                  save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer = GFTTrainer(unet, args, train_dataset=digits_dataset(size=8, split="train").select(range(64)),
                         eval_dataset=digits_dataset(size=8, split="test").select(range(16)))
    trainer.train()
    assert any("loss_uncond" in h for h in trainer.state.log_history)
    assert trainer.evaluate()["eval_loss"] > 0
    trainer.save_model()
    out = tmp_path / "out"
    assert (out / "diffusion_pytorch_model.safetensors").is_file() and not list(out.glob("*.bin"))
    card = (out / "README.md").read_text()
    assert "library_name: hfgen" in card and "2501.15420" in card and "GuidanceFreePipeline" in card
    loaded = hfgen.load(out)
    assert isinstance(loaded, UNet2DConditionModel) and loaded.config.time_cond_proj_dim == 16
    pipe = GuidanceFreePipeline(unet=loaded, scheduler=DDIMScheduler.from_pretrained(out))
    pipe.set_progress_bar_config(disable=True)
    assert pipe(class_labels=[3], beta=0.5, num_inference_steps=2, output_type="pt").images.shape == (1, 1, 8, 8)


def test_gft_trains_a_causal_lm_and_reloads_it(tmp_path):
    import hfgen

    model = GFTCausalLM.from_causal_lm(tiny_lm(), null_condition_token_id=NULL)
    ids = sequences(n=16)
    args = config(tmp_path, cond_drop_prob=0.1, max_steps=2, learning_rate=1e-3, save_strategy="no", disable_tqdm=True)
    trainer = GFTTrainer(model, args, train_dataset=Dataset.from_dict({"input_ids": ids.tolist()}))
    trainer.train()
    assert model.beta_embedding.linear_2.weight.abs().sum() > 0  # the zero-initialised layer learns
    trainer.save_model()
    loaded = hfgen.load(tmp_path / "out")
    assert isinstance(loaded, GFTCausalLM)
    assert "GFTCausalLM" in (tmp_path / "out" / "README.md").read_text()
