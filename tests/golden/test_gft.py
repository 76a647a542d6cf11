"""Golden tests: GFTTrainer's training loss and β embeddings against the official GFT code (thu-ml/GFT).

Recorded official outputs (``tests/golden/data/gft/``, written by ``scripts/golden/record_gft.py`` from a checkout):

- DiT loss: the official ``GaussianDiffusion.training_losses`` (``DiT/diffusion/gaussian_diffusion.py``, the
  ``args.rm_guidance`` branch, built by ``create_diffusion`` as ``DiT/train.py`` does; ``train.py`` takes
  ``loss_dict["loss"].mean()``), run on a DiT-interface adapter (:class:`DiTInterface`, written here) around a tiny
  Diffusers UNet whose β projection is *not* zero. The adapter does what DiT's ``forward`` does (``LabelEmbedder``
  drop → null label and β = 1 for dropped rows, ``TimestepEmbedder`` with ``cond_proj`` of the official
  ``timestep_embedding(β·1000)``); Diffusers' ``TimestepEmbedding`` adds ``cond_proj(condition)`` to the timestep
  frequencies before its MLP, as DiT's does. The recording holds the UNet's weights, the official loss and its
  gradient with respect to every parameter; hfgen's loss replays the same random draws (noise, timesteps, β's
  uniform, dropped rows).
- β embeddings: the official ``TimestepEmbedder.timestep_embedding`` (``DiT/models.py``) of β·1000 and
  ``guidance_scale_embedding`` (``stable-diffusion-v1-5/train.py``) of 1/β − 1.

The SD1.5 training step is written inline in ``stable-diffusion-v1-5/train.py``'s ``main()`` (data set, VAE, text
encoder, accelerate loop): it cannot be run as a function, so the SD loss test is an **independent derivation**
from the paper's GFT objective (arXiv 2501.15420, Eq. 7 with ε-prediction: ``‖ε − [β ε_θ(x_t|c, β) + (1 − β)
sg ε_θ(x_t|∅)]‖²``, mean over elements), written here with the official code's conventions read from it as facts
(β = u^ρ; dropped rows take the empty caption and β_in = 1; the unconditional branch gets no ``timestep_cond``; the
null pass runs in eval mode under ``no_grad``), and with hfgen's β embedding, which the embedding test pins to the
recorded official one. See docs/results/fidelity.md, "GFT".

Measured: DiT loss max relative difference 2e-9, gradient (max-abs normalised) 4.8e-8; SD (derivation, without /
with dropped rows) 0 / 5.8e-11 loss, 0 / 1.6e-8 gradient. Tolerance 1e-6 for both. β embeddings: both forms bit-identical to the official ones for
float32 β (the SD form is computed as the official ``guidance_scale_embedding``: w = 1/β − 1 in float32, the
sinusoid in float32 whatever the model's dtype, then cast).
Broken on purpose once (then restored):
- the SD-form embedding computed in the model's dtype (float64 here) with w = 1/β − 1 rounded once from float64:
  the float64 check of the embedding test fails (entries off by up to ~1e-3);
- the DiT-form embedding's [cos, sin] order swapped to [sin, cos]: both DiT loss cases and the DiT embedding
  check fail (loss rel. diff 4.8e-3, gradient 0.18);
- dropped rows fed their sampled β instead of β = 1 (``diffusion_loss``): the two cases with dropped rows fail
  (DiT loss 2.4e-3 / gradient 0.08; SD 9e-5 / 0.10); the cases without dropped rows still pass, as they should.
(Removing ``.detach()`` in ``gft_interpolate`` is invisible: the null branch already runs under ``no_grad``.)
"""

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from hfgen.pipelines.gft import beta_embedding
from hfgen.trainers import GFTConfig, GFTTrainer

from .recorded import load_recording

B, NUM_CLASSES, PROJ = 6, 4, 16
DIT_P_DROP = (0.0, 0.5)


def _args(tmp_path, **kwargs):
    return GFTConfig(output_dir=str(tmp_path), use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
                     per_device_train_batch_size=B, max_steps=1, report_to="none", **kwargs)


def _randomise_beta_projection(unet, seed=3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = unet.time_embedding.cond_proj.weight
        w.copy_(0.5 * torch.randn(w.shape, generator=generator))


def _grad(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.flatten() if g is not None else torch.zeros(p.numel()) for g, p in
                      zip(torch.autograd.grad(loss, params, allow_unused=True), params)])


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def replay(seed, x0, p_drop, num_timesteps=1000):
    """The draws of ``GFTTrainer.diffusion_loss`` in its order: noise, timesteps, β's uniform, drop uniform."""
    torch.manual_seed(seed)
    noise = torch.randn_like(x0)
    t = torch.randint(0, num_timesteps, (x0.shape[0],))
    u = torch.rand(x0.shape[0])
    drop = torch.rand(x0.shape[0]) < p_drop
    return noise, t, u, drop


def dit_unet():
    """The tiny class-conditional UNet with a β input in the DiT form (its weights are in the recording)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"), mid_block_type=None,
                                num_class_embeds=NUM_CLASSES + 1, time_cond_proj_dim=PROJ).double()
    unet.register_to_config(gft_beta_embedding="timestep")  # the DiT form
    _randomise_beta_projection(unet)
    return unet


def dit_data():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn((B, 4, 8, 8), generator=g, dtype=torch.float64)
    return x0, torch.randint(0, NUM_CLASSES, (B,), generator=g)


class DiTInterface(torch.nn.Module):
    """DiT's forward signature over a Diffusers UNet (the official code calls ``model(x, t, y, beta=...)``);
    ``timestep_embedding`` is the official ``TimestepEmbedder.timestep_embedding`` when recording."""

    def __init__(self, unet, force_drop_ids, timestep_embedding):
        super().__init__()
        self.model, self.force_drop_ids, self.timestep_embedding = unet, force_drop_ids, timestep_embedding

    def forward(self, x, t, y, beta=None, return_drop_ids=False):
        y = torch.where(y == 1000, NUM_CLASSES, y)  # DiT's null label 1000 is this UNet's label NUM_CLASSES
        drop_ids = self.force_drop_ids if self.model.training else torch.zeros_like(self.force_drop_ids)
        y = torch.where(drop_ids, NUM_CLASSES, y)
        beta = torch.where(drop_ids, 1.0, beta)
        condition = self.timestep_embedding(beta * 1000, self.model.config.time_cond_proj_dim).to(x.dtype)
        out = self.model(x, t, encoder_hidden_states=None, class_labels=y, timestep_cond=condition).sample
        return (out, drop_ids) if return_drop_ids else out


@pytest.mark.parametrize("p_drop", DIT_P_DROP)
def test_dit_gft_loss_matches_official(tmp_path, p_drop):
    recorded, _ = load_recording("gft", "dit_loss")
    unet = dit_unet()
    unet.load_state_dict({k[len("unet."):]: v for k, v in recorded.items() if k.startswith("unet.")})
    x0, labels = dit_data()
    assert torch.equal(x0, recorded["x0"]) and torch.equal(labels, recorded["labels"])
    data = [{"pixel_values": x, "labels": y} for x, y in zip(x0, labels)]
    trainer = GFTTrainer(unet, args=_args(tmp_path, cond_drop_prob=p_drop), train_dataset=data)
    unet.train()
    torch.manual_seed(7)
    loss = trainer.compute_loss(unet, {"pixel_values": x0, "labels": labels})
    grad = _grad(loss, unet)

    noise, t, u, drop = replay(7, x0, p_drop)
    assert drop.any() == (p_drop > 0)
    assert torch.equal(drop, recorded[f"p{p_drop}.drop"]) and torch.equal(u, recorded[f"p{p_drop}.u"])
    official = recorded[f"p{p_drop}.loss"]
    ref_grad = torch.cat([recorded[f"p{p_drop}.grad.{name}"].flatten() for name, p in unet.named_parameters()
                          if p.requires_grad])
    print(f"GOLDEN gft dit p_drop={p_drop}: loss {abs(loss.item() - official.item()) / official.item():.2e} "
          f"grad {_rel(grad, ref_grad):.2e}")
    assert loss.item() == pytest.approx(official.item(), rel=1e-6)
    assert _rel(grad, ref_grad) < 1e-6


def derived_sd_gft_loss(unet, scheduler, x0, noise, t, states, null_states, drop, u, pho):
    """The GFT objective for an ε-prediction UNet (paper Eq. 7), written here; see the module docstring."""
    beta = u.to(x0.dtype) ** pho
    beta_in = torch.where(drop, 1.0, beta)
    x_t = scheduler.add_noise(x0, noise, t)
    cond = torch.where(drop[:, None, None], null_states, states)
    embedding = beta_embedding(beta_in.float(), unet.config.time_cond_proj_dim, x0.dtype,
                               embedding_type="guidance_scale")
    sampling = unet(x_t, t, encoder_hidden_states=cond, timestep_cond=embedding).sample
    unet.eval()
    with torch.no_grad():
        unconditional = unet(x_t, t, encoder_hidden_states=null_states.expand_as(states)).sample
    unet.train()
    implicit = beta[:, None, None, None] * sampling + (1 - beta[:, None, None, None]) * unconditional
    return ((noise - implicit) ** 2).mean()


@pytest.mark.parametrize("p_drop, pho", [(0.0, 1.0), (0.5, 2.0)])
def test_sd_gft_loss_matches_the_derivation(tmp_path, p_drop, pho):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), time_cond_proj_dim=PROJ).double()
    _randomise_beta_projection(unet)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn((B, 4, 8, 8), generator=g, dtype=torch.float64)
    states = torch.randn((B, 3, 8), generator=g, dtype=torch.float64)
    null_states = torch.randn((3, 8), generator=g, dtype=torch.float64)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012)
    data = [{"pixel_values": x, "encoder_hidden_states": h} for x, h in zip(x0, states)]
    # null_branch_beta="none": the official SD1.5 code calls the unconditional branch without timestep_cond
    trainer = GFTTrainer(unet, args=_args(tmp_path, cond_drop_prob=p_drop, beta_power=pho, null_branch_beta="none"),
                         train_dataset=data, noise_scheduler=scheduler, null_encoder_hidden_states=null_states)
    unet.train()
    torch.manual_seed(7)
    loss = trainer.compute_loss(unet, {"pixel_values": x0, "encoder_hidden_states": states})
    grad = _grad(loss, unet)

    noise, t, u, drop = replay(7, x0, p_drop)
    assert drop.any() == (p_drop > 0)
    reference = derived_sd_gft_loss(unet, scheduler, x0, noise, t, states, null_states, drop, u, pho)
    ref_grad = _grad(reference, unet)
    print(f"GOLDEN gft sd p_drop={p_drop} pho={pho}: loss {abs(loss.item() - reference.item()) / reference.item():.2e} "
          f"grad {_rel(grad, ref_grad):.2e}")
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert _rel(grad, ref_grad) < 1e-6
    # The default null branch (β = 1 through the β projection) differs once that projection is not zero.
    trainer.args.null_branch_beta = "one"
    torch.manual_seed(7)
    assert abs(trainer.compute_loss(unet, {"pixel_values": x0, "encoder_hidden_states": states}).item()
               - reference.item()) > 1e-6 * reference.item()


BETAS = torch.tensor([1.0, 0.9, 0.66, 0.5, 0.25, 0.1, 0.02])
EMBEDDING_DIMS = (512, 16, 7)


@pytest.mark.parametrize("dim", EMBEDDING_DIMS)
def test_beta_embeddings_match_official(dim):
    """DiT form: bit-identical to the recorded official ``timestep_embedding``. SD form, float32 β (the trainer's):
    bit-identical to the recorded official ``guidance_scale_embedding(torch.reciprocal(beta) - 1)`` (float32), also
    when the model is float64 or float16 (computed in float32, then cast). Float64 β (what
    [`GuidanceFreePipeline`] passes): w = 1/β − 1 rounded once from float64, bit-identical to Diffusers'
    ``get_guidance_scale_embedding`` of ``guidance_scale − 1`` in Python floats (the stock
    ``StableDiffusionPipeline`` the official SD1.5 ``test.py`` samples with); it differs from the float32-β form by
    one float32 ulp of w where 1/β − 1 is inexact (6e-5 here, β = 0.9, 0.66, 0.1, 0.02).
    Broken on purpose: the sinusoid computed in ``dtype`` again: the ``dtype=float64`` check fails (entries off by
    up to ~1e-3, e.g. −0.3607 vs −0.3615)."""
    from diffusers import StableDiffusionPipeline

    dit_recorded, _ = load_recording("gft", "dit_timestep_embedding")
    sd_recorded, _ = load_recording("gft", "sd15_guidance_scale_embedding")
    assert torch.equal(dit_recorded["betas"], BETAS) and torch.equal(sd_recorded["betas"], BETAS)
    dit = beta_embedding(BETAS, dim, embedding_type="timestep")
    if dim % 2 == 0:  # DiT's odd-width padding is the same zero column
        assert torch.equal(dit, dit_recorded[f"dim{dim}"])
    official = sd_recorded[f"dim{dim}"]
    for dtype in (torch.float32, torch.float64, torch.float16):
        sd = beta_embedding(BETAS, dim, dtype, embedding_type="guidance_scale")
        assert torch.equal(sd, official.to(dtype)), dtype
    w = torch.tensor([1.0 / b - 1.0 for b in BETAS.double().tolist()])  # Python floats, rounded once to float32
    stock = StableDiffusionPipeline.get_guidance_scale_embedding(None, w, dim)
    sd64 = beta_embedding(BETAS.double(), dim, embedding_type="guidance_scale")
    print(f"GOLDEN gft embedding dim={dim}: float64-β form vs official float32-β form "
          f"{(sd64 - official).abs().max().item():.2e}")
    assert torch.equal(sd64, stock)
