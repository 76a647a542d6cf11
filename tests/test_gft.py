"""GFT (arXiv 2501.15420): exact identities of the parameterisation, the trainer and the pipeline."""

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from diffusers import DDIMScheduler, UNet2DConditionModel, UNet2DModel

from hfgen.pipelines import GuidanceFreePipeline
from hfgen.pipelines.gft import (
    add_beta_conditioning,
    beta_embedding,
    beta_to_guidance_scale,
    guidance_scale_to_beta,
)
from hfgen.trainers import GFTConfig, GFTTrainer
from hfgen.trainers.gft import gft_interpolate

NUM_CLASSES = 4


def tiny_unet(beta_dim=16, cross_attention_dim=None, seed=0):
    torch.manual_seed(seed)
    blocks = dict(down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                  mid_block_type=None, num_class_embeds=NUM_CLASSES + 1)
    if cross_attention_dim is not None:
        blocks = dict(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                      cross_attention_dim=cross_attention_dim, attention_head_dim=4)
    return UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                                norm_num_groups=4, time_cond_proj_dim=beta_dim, **blocks)


def config(tmp_path, **kwargs):
    kwargs = {"cond_drop_prob": 0.3, "report_to": [], "use_cpu": True, "per_device_train_batch_size": 8, **kwargs}
    return GFTConfig(output_dir=str(tmp_path / "out"), **kwargs)


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(n, 1, 8, 8, generator=g), "labels": torch.randint(0, NUM_CLASSES, (n,), generator=g)}


# ---------------------------------------------------------------------------- parameterisation


def test_beta_is_the_inverse_guidance_scale_and_validated():
    assert beta_to_guidance_scale(0.25) == 4.0 and guidance_scale_to_beta(4.0) == 0.25
    assert beta_to_guidance_scale(1.0) == 1.0
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="`beta`"):
            beta_to_guidance_scale(bad)
    with pytest.raises(ValueError, match="`guidance_scale`"):
        guidance_scale_to_beta(0.9)


def test_beta_embedding_is_stable_diffusions_guidance_scale_embedding():
    from diffusers import StableDiffusionPipeline

    scales = torch.tensor([1.0, 1.6, 2.0, 4.0, 8.0])  # 1/scale exact in float32, so w = 1/β − 1 is too
    ours = beta_embedding(1.0 / scales, 32)
    theirs = StableDiffusionPipeline.get_guidance_scale_embedding(None, scales - 1.0, 32)
    assert torch.equal(ours, theirs)
    assert torch.equal(beta_embedding(torch.ones(1), 32)[0, 16:], torch.ones(16))  # β = 1 is w = 0: sin 0, cos 0


@pytest.mark.parametrize("text", [False, True])
def test_zero_initialised_beta_input_leaves_pretrained_unet_bit_unchanged(text):
    cfg_unet = tiny_unet(beta_dim=None, cross_attention_dim=12 if text else None).eval()
    with torch.no_grad():  # a "pretrained" model: perturb every weight away from its init
        for p in cfg_unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gft_unet = add_beta_conditioning(cfg_unet, time_cond_proj_dim=16).eval()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 500, 990])
    cond = {"encoder_hidden_states": torch.randn(3, 5, 12)} if text else {"class_labels": torch.tensor([0, 2, NUM_CLASSES]),
                                                                         "encoder_hidden_states": None}
    with torch.no_grad():
        reference = cfg_unet(x, t, **cond).sample
        for beta in (0.05, 0.5, 1.0):
            out = gft_unet(x, t, timestep_cond=beta_embedding(torch.full((3,), beta), 16), **cond).sample
            assert torch.equal(out, reference)


def test_add_beta_conditioning_rejects_models_it_cannot_convert():
    with pytest.raises(ValueError, match="UNet2DModel"):
        add_beta_conditioning(UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                          norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                                          up_block_types=("UpBlock2D", "UpBlock2D")))
    with pytest.raises(ValueError, match="already has a β input"):
        add_beta_conditioning(tiny_unet())


def test_interpolation_stops_gradient_into_the_unconditional_branch():
    f_s = torch.randn(4, 3, requires_grad=True)
    f_u = torch.randn(4, 3, requires_grad=True)
    beta = torch.tensor([0.1, 0.4, 0.7, 1.0])
    target = torch.randn(4, 3)
    interp = gft_interpolate(f_s, f_u, beta)
    torch.testing.assert_close(interp, beta[:, None] * f_s + (1 - beta[:, None]) * f_u)
    ((interp - target) ** 2).sum().backward()
    assert f_u.grad is None
    torch.testing.assert_close(f_s.grad, 2 * beta[:, None] * (interp - target).detach())  # ∂L/∂f_s = 2β(interp − ε)


# ---------------------------------------------------------------------------------- the loss


def reference_gft_loss(unet, inputs, seed, drop_prob, null_label=NUM_CLASSES, detach_uncond=True):
    """The official training step (thu-ml/GFT DiT ``training_losses``), written out independently; the draws are
    made in the trainer's documented order: noise, timesteps, β, dropout."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler()
    torch.manual_seed(seed)
    x0, labels = inputs["pixel_values"], inputs["labels"]
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (len(x0),))
    beta = torch.rand(len(x0))
    drop = torch.rand(len(x0)) < drop_prob
    x_t = scheduler.add_noise(x0, noise, t)
    emb = lambda b: beta_embedding(b, unet.config.time_cond_proj_dim)  # noqa: E731
    out = unet(x_t, t, class_labels=torch.where(drop, null_label, labels), encoder_hidden_states=None,
               timestep_cond=emb(torch.where(drop, 1.0, beta))).sample
    unet.eval()
    with torch.set_grad_enabled(not detach_uncond):
        uncond = unet(x_t, t, class_labels=torch.full_like(labels, null_label), encoder_hidden_states=None,
                      timestep_cond=emb(torch.ones(len(x0)))).sample
    unet.train()
    b = beta[:, None, None, None]
    return F.mse_loss(b * out + (1 - b) * uncond, noise)


def grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_gft_loss_is_the_official_interpolated_loss_with_stop_gradient(tmp_path):
    unet = tiny_unet()
    trainer = GFTTrainer(unet, config(tmp_path, cond_drop_prob=0.5), train_dataset=Dataset.from_dict({"x": [0]}))
    inputs = batch()
    torch.manual_seed(7)
    loss = trainer.compute_loss(unet.train(), inputs)
    loss.backward()
    ours = grads(unet)
    unet.zero_grad()
    reference = reference_gft_loss(unet, inputs, seed=7, drop_prob=0.5)
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=0, atol=0)
    for a, b in zip(ours, grads(unet)):
        torch.testing.assert_close(a, b)
    unet.zero_grad()  # without the stop-gradient the gradient differs: the test above can fail
    reference_gft_loss(unet, inputs, seed=7, drop_prob=0.5, detach_uncond=False).backward()
    assert any(not torch.allclose(a, b) for a, b in zip(ours, grads(unet)))


def test_gft_loss_at_beta_one_is_the_conditional_loss(tmp_path):
    """β ≡ 1: the null branch has weight 0, so loss and gradient are those of conditional (CFG) training."""

    class BetaOne(GFTTrainer):
        def sample_beta(self, batch_size, device):
            return torch.ones_like(super().sample_beta(batch_size, device))  # same random draws

    unet, inputs = tiny_unet(), batch()
    gft = BetaOne(unet, config(tmp_path), train_dataset=Dataset.from_dict({"x": [0]}))
    cfg = GFTTrainer(unet, config(tmp_path, beta_min=1.0, beta_max=1.0), train_dataset=Dataset.from_dict({"x": [0]}))
    assert gft.args.guidance_free and not cfg.args.guidance_free
    results = []
    for trainer in (gft, cfg):
        unet.zero_grad()
        torch.manual_seed(3)
        loss = trainer.compute_loss(unet.train(), inputs)
        loss.backward()
        results.append((loss.detach(), grads(unet)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_config_and_trainer_reject_bad_arguments(tmp_path):
    for kwargs, name in [({"beta_min": -0.1}, "beta_min"), ({"beta_max": 1.5}, "beta_max"), ({"beta_min": 0.8, "beta_max": 0.5}, "beta_min"),
                         ({"beta_min": 0.0, "beta_max": 0.0}, "beta_max"), ({"cond_drop_prob": 1.0}, "cond_drop_prob"),
                         ({"prediction_type": "score"}, "prediction_type"), ({"noise_schedule": "cosine"}, "noise_schedule")]:
        with pytest.raises(ValueError, match=name):
            config(tmp_path, **kwargs)
    with pytest.raises(ValueError, match="no β input"):
        GFTTrainer(tiny_unet(beta_dim=None), config(tmp_path), train_dataset=Dataset.from_dict({"x": [0]}))
    with pytest.raises(ValueError, match="null_class_label"):
        GFTTrainer(tiny_unet(), config(tmp_path, null_class_label=NUM_CLASSES + 1), train_dataset=Dataset.from_dict({"x": [0]}))


# ------------------------------------------------------------------------------ the pipeline


class CountingUNet(torch.nn.Module):
    """Wraps a unet and records the batch size of every call."""

    def __init__(self, unet):
        super().__init__()
        self.unet, self.calls = unet, []

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.unet, name)

    def forward(self, sample, *args, **kwargs):
        self.calls.append(sample.shape[0])
        return self.unet(sample, *args, **kwargs)


@pytest.mark.parametrize("guidance,calls_per_step", [("free", 1), ("cfg", 2)])
def test_pipeline_evaluates_the_network_once_per_step_and_cfg_twice(guidance, calls_per_step):
    counting = CountingUNet(tiny_unet().eval())
    pipe = GuidanceFreePipeline(unet=counting, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    pipe(class_labels=[0, 1, 2], beta=0.5, guidance=guidance, num_inference_steps=4, output_type="pt",
         generator=torch.Generator().manual_seed(0))
    assert counting.calls == [3 * calls_per_step] * 4  # network evaluations (rows) per step


def test_gft_sample_at_beta_equals_cfg_sample_at_one_over_beta_with_the_optimal_network():
    """At the GFT optimum ε_s(c, β) = ε_u + (ε_c − ε_u)/β; a network built to be exactly that optimum from a
    conditional network must give, step for step, the CFG sample at guidance scale 1/β."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

    base = tiny_unet().eval()

    class OptimalGFT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.base = base
            self.config, self.dtype, self.device = base.config, base.dtype, base.device

        def forward(self, x, t, timestep_cond=None, class_labels=None, encoder_hidden_states=None):
            one = beta_embedding(torch.ones(len(x)), self.config.time_cond_proj_dim)
            beta = torch.where(torch.isclose(timestep_cond, one).all(-1), 1.0, 0.4)[:, None, None, None]
            e_c = base(x, t, None, class_labels=class_labels, timestep_cond=one).sample
            e_u = base(x, t, None, class_labels=torch.full_like(class_labels, NUM_CLASSES), timestep_cond=one).sample
            return UNet2DConditionOutput(sample=e_u + (e_c - e_u) / beta)

    kwargs = dict(class_labels=[0, 3], num_inference_steps=5, output_type="pt")
    gft = GuidanceFreePipeline(unet=OptimalGFT(), scheduler=DDIMScheduler())
    cfg = GuidanceFreePipeline(unet=base, scheduler=DDIMScheduler())
    a = gft(beta=0.4, generator=torch.Generator().manual_seed(1), **kwargs).images
    b = cfg(guidance_scale=2.5, guidance="cfg", generator=torch.Generator().manual_seed(1), **kwargs).images
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)  # float rounding of batched calls and 1/β


def test_pipeline_rejects_bad_inputs():
    pipe = GuidanceFreePipeline(unet=tiny_unet(), scheduler=DDIMScheduler())
    cases = [({"class_labels": [NUM_CLASSES]}, "class_labels"), ({"class_labels": [-1]}, "class_labels"),
             ({"class_labels": [0], "beta": 0.0}, "beta"), ({"class_labels": [0], "beta": 1.2}, "beta"),
             ({"class_labels": [0], "guidance_scale": 0.5}, "guidance_scale"),
             ({"class_labels": [0], "beta": 0.5, "guidance_scale": 2.0}, "either"),
             ({"class_labels": [0], "guidance": "auto"}, "guidance"), ({"class_labels": [0], "output_type": "jpg"}, "output_type"),
             ({"class_labels": [0, 1], "generator": [torch.Generator()]}, "generator"), ({}, "class_labels")]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            pipe(**kwargs)
    no_beta = GuidanceFreePipeline(unet=tiny_unet(beta_dim=None), scheduler=DDIMScheduler())
    with pytest.raises(ValueError, match="β input"):
        no_beta(class_labels=[0], beta=0.5)


def test_pipeline_output_types_generators_and_save_load_round_trip(tmp_path):
    import hfgen

    pipe = GuidanceFreePipeline(unet=tiny_unet().eval(), scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(class_labels=[1, 2], beta=0.5, num_inference_steps=3)
    pt = pipe(output_type="pt", generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    np_images = pipe(output_type="np", generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    pil = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert pt.shape == (2, 1, 8, 8) and np_images.shape == (2, 8, 8, 1) and len(pil) == 2
    torch.testing.assert_close(torch.from_numpy(np_images).permute(0, 3, 1, 2), pt)
    (tuple_images,) = pipe(output_type="pt", return_dict=False, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs)
    assert torch.equal(tuple_images, pt)
    pipe.save_pretrained(tmp_path / "pipe")
    assert not list((tmp_path / "pipe").rglob("*.bin"))
    loaded = hfgen.load(tmp_path / "pipe")
    assert isinstance(loaded, GuidanceFreePipeline)
    loaded.set_progress_bar_config(disable=True)
    again = loaded(output_type="pt", generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    assert torch.equal(again, pt)


def test_text_conditional_gft_uses_the_null_prompt_for_dropped_rows_and_the_null_branch(tmp_path):
    unet = tiny_unet(cross_attention_dim=12)
    null = torch.randn(5, 12)
    inputs = {"pixel_values": torch.randn(6, 1, 8, 8), "encoder_hidden_states": torch.randn(6, 5, 12)}
    seen = []
    unet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["encoder_hidden_states"].clone()), with_kwargs=True)
    trainer = GFTTrainer(unet, config(tmp_path, cond_drop_prob=0.5), train_dataset=Dataset.from_dict({"x": [0]}),
                         null_encoder_hidden_states=null)
    torch.manual_seed(0)
    trainer.compute_loss(unet.train(), inputs).backward()
    conditioned, unconditional = seen
    dropped = (conditioned == null).flatten(1).all(-1)
    assert dropped.any() and not dropped.all()
    assert torch.equal(conditioned[~dropped], inputs["encoder_hidden_states"][~dropped])
    assert (unconditional == null).all()
    with pytest.raises(ValueError, match="null_encoder_hidden_states"):
        GFTTrainer(unet, config(tmp_path), train_dataset=Dataset.from_dict({"x": [0]}))


def test_pipeline_samples_text_conditional_unets_from_prompt_embeddings():
    counting = CountingUNet(tiny_unet(cross_attention_dim=12).eval())
    pipe = GuidanceFreePipeline(unet=counting, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    prompt, negative = torch.randn(2, 5, 12), torch.randn(1, 5, 12)
    free = pipe(prompt_embeds=prompt, beta=0.5, num_inference_steps=2, output_type="pt").images
    cfg = pipe(prompt_embeds=prompt, negative_prompt_embeds=negative, guidance_scale=2.0, guidance="cfg",
               num_inference_steps=2, output_type="pt").images
    assert free.shape == cfg.shape == (2, 1, 8, 8) and counting.calls == [2, 2, 4, 4]
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        pipe(prompt_embeds=prompt, guidance="cfg", guidance_scale=2.0)
    with pytest.raises(ValueError, match="class_labels"):
        pipe(class_labels=[0], num_inference_steps=2)


# ------------------------------------------------------- issue 19, gap 4: DiT β form, β distribution, EMA


def test_dit_beta_form_is_smooth_in_beta_where_the_sd_form_is_not():
    """The SD form embeds w = 1/β − 1 (×1000): near β = 0.1 it turns over many periods; the DiT form (β·1000) does
    as much. Cosine similarity of the two embeddings of β = 0.10 and β = 0.11 (width 256): SD form 0.15, DiT form
    0.68 (its highest frequency still turns 10 rad between them; the learned projection sees the rest)."""
    b = torch.tensor([0.10, 0.11])
    sd = beta_embedding(b, 256)
    dit = beta_embedding(b, 256, embedding_type="timestep")
    cos_sd = F.cosine_similarity(sd[:1], sd[1:]).item()
    cos_dit = F.cosine_similarity(dit[:1], dit[1:]).item()
    assert cos_dit > 0.6 > 0.3 > cos_sd, (cos_dit, cos_sd)
    with pytest.raises(ValueError, match="embedding_type"):
        beta_embedding(b, 16, embedding_type="dit")


@pytest.mark.parametrize("form", ["guidance_scale", "timestep"])
def test_dit_beta_form_is_stored_zero_initialised_and_used_by_trainer_and_pipeline(tmp_path, form):
    from hfgen.pipelines.gft import beta_embedding_type, unet_timestep_cond

    cfg_unet = tiny_unet(beta_dim=None).eval()
    gft_unet = add_beta_conditioning(cfg_unet, time_cond_proj_dim=16, beta_embedding_type=form)
    assert beta_embedding_type(gft_unet) == form
    x, t, labels = torch.randn(2, 1, 8, 8), torch.tensor([10, 900]), torch.tensor([1, NUM_CLASSES])
    with torch.no_grad():  # zero-initialised: the pretrained model's output for every β
        reference = cfg_unet(x, t, encoder_hidden_states=None, class_labels=labels).sample
        for beta in (0.1, 1.0):
            cond = unet_timestep_cond(gft_unet.eval(), torch.full((2,), beta))
            assert torch.equal(gft_unet(x, t, encoder_hidden_states=None, class_labels=labels, timestep_cond=cond).sample,
                               reference)
    assert torch.equal(unet_timestep_cond(gft_unet, torch.tensor([0.3])),
                       beta_embedding(torch.tensor([0.3]), 16, embedding_type=form))
    gft_unet.save_pretrained(tmp_path / "unet")
    assert beta_embedding_type(UNet2DConditionModel.from_pretrained(tmp_path / "unet")) == form
    with pytest.raises(ValueError, match="beta_embedding_type"):
        add_beta_conditioning(cfg_unet, beta_embedding_type="dit")


def test_beta_power_shapes_the_beta_distribution(tmp_path):
    unet = tiny_unet()
    trainer = GFTTrainer(unet, config(tmp_path, beta_power=3.0, beta_min=0.2, beta_max=0.8),
                         train_dataset=Dataset.from_dict({"x": [0]}))
    torch.manual_seed(0)
    beta = trainer.sample_beta(20000, "cpu")
    torch.manual_seed(0)
    u = torch.rand(20000)
    torch.testing.assert_close(beta, 0.2 + 0.6 * u**3)  # official SD1.5: U^pho (max − min) + min
    assert beta.mean().item() == pytest.approx(0.2 + 0.6 / 4, abs=0.01)  # E[u^3] = 1/4
    with pytest.raises(ValueError, match="beta_power"):
        config(tmp_path, beta_power=0.0)


def test_ema_of_the_weights_is_updated_checkpointed_and_validated(tmp_path):
    unet = tiny_unet()
    data = Dataset.from_dict({"pixel_values": [torch.randn(1, 8, 8).tolist() for _ in range(8)],
                              "labels": [i % NUM_CLASSES for i in range(8)]}).with_format("torch")
    trainer = GFTTrainer(unet, config(tmp_path, ema_decay=0.5, max_steps=2, learning_rate=1e-2, save_strategy="steps",
                                      save_steps=2, logging_steps=1), train_dataset=data)
    before = [p.detach().clone() for p in trainer.ema_model.parameters()]
    online = []
    trainer.add_callback(type("Track", (__import__("transformers").TrainerCallback,), {
        "on_step_end": lambda self, args, state, control, **kw: online.append(
            [p.detach().clone() for p in trainer.model.parameters()])})())
    trainer.train()
    expected = before
    for step in online:  # θ_ema ← 0.5 θ_ema + 0.5 θ after each optimizer step
        expected = [0.5 * e + 0.5 * p for e, p in zip(expected, step)]
    for e, p in zip(expected, trainer.ema_model.parameters()):
        torch.testing.assert_close(p, e)
    assert not any(p.requires_grad for p in trainer.ema_model.parameters())
    assert (tmp_path / "out" / "checkpoint-2" / "gft_ema.safetensors").is_file()  # restored on resume (checkpointing)
    with pytest.raises(ValueError, match="ema_decay"):
        config(tmp_path, ema_decay=1.5)
