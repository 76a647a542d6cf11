"""How the GFT temperature β enters a Diffusers UNet.

GFT (Chen et al., 2025, arXiv 2501.15420) trains one network ε_θ(x_t | c, β) whose output at
β = 1/s *is* the classifier-free-guided prediction at scale s. β enters exactly as in the official
Stable Diffusion 1.5 code (thu-ml/GFT ``stable-diffusion-v1-5/train.py``) and in Diffusers' own
guidance-distilled models: a ``UNet2DConditionModel`` with ``time_cond_proj_dim`` receives

    timestep_cond = guidance_scale_embedding(w = 1/β − 1)

which ``TimestepEmbedding`` projects with ``cond_proj`` (a bias-free linear map) and adds to the
timestep embedding before its MLP: the "linear" β injection of the official DiT code. Because the
embedding is the one [`StableDiffusionPipeline.get_guidance_scale_embedding`] computes from
``guidance_scale − 1``, a text-to-image GFT UNet also samples guidance-free in the stock
``StableDiffusionPipeline(guidance_scale=1/β)`` (which skips CFG when ``time_cond_proj_dim`` is set).

``UNet2DModel`` has no ``time_cond_proj_dim``; build the class-conditional model as a
``UNet2DConditionModel`` without cross-attention blocks (``mid_block_type=None`` or
``"UNetMidBlock2D"``, ``DownBlock2D``/``UpBlock2D``, ``num_class_embeds = num_classes + 1``), which
takes ``encoder_hidden_states=None``.
"""

from __future__ import annotations

import torch


def guidance_scale_to_beta(guidance_scale: float) -> float:
    """β = 1/s, where s is the Diffusers/DiT guidance scale in ε_u + s(ε_c − ε_u) (s ≥ 1)."""
    if not guidance_scale >= 1.0:
        raise ValueError(f"`guidance_scale` must be >= 1 (β = 1/guidance_scale lies in (0, 1]), got {guidance_scale!r}.")
    return 1.0 / float(guidance_scale)


def beta_to_guidance_scale(beta: float) -> float:
    """s = 1/β; β = 1 is plain conditional sampling, smaller β is stronger guidance (lower temperature)."""
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"`beta` must lie in (0, 1], got {beta!r}.")
    return 1.0 / float(beta)


def beta_embedding(beta: torch.Tensor, embedding_dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``timestep_cond`` for temperature ``beta`` (shape ``(B,)``): the sinusoidal guidance-scale
    embedding of w = 1/β − 1, identical to ``StableDiffusionPipeline.get_guidance_scale_embedding``."""
    if beta.ndim != 1:
        raise ValueError(f"`beta` must be a 1-D tensor, got shape {tuple(beta.shape)}.")
    w = (1.0 / beta.double() - 1.0).to(dtype) * 1000.0  # rounded as Diffusers rounds guidance_scale − 1
    half_dim = embedding_dim // 2
    freqs = torch.exp(torch.arange(half_dim, dtype=dtype, device=beta.device) * -(torch.log(torch.tensor(10000.0)) / (half_dim - 1)))
    angles = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def has_beta_input(unet) -> bool:
    """Whether ``unet`` takes a β input (a ``timestep_cond`` through ``time_cond_proj_dim``)."""
    return getattr(unet.config, "time_cond_proj_dim", None) is not None


def add_beta_conditioning(unet, time_cond_proj_dim: int = 256):
    """Return a copy of a (CFG-trained) ``UNet2DConditionModel`` with a β input whose projection is
    zero-initialised, so that the new model's output equals the original's for every β (GFT
    fine-tuning starts from the pretrained model; official code: ``cond_proj.weight`` zeroed)."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    if isinstance(unet, UNet2DModel):
        raise ValueError(
            "`unet` is a UNet2DModel, which has no `time_cond_proj_dim` input for β. Build the same network as a "
            "UNet2DConditionModel without cross-attention blocks (see hfgen.pipelines.gft docs)."
        )
    if not isinstance(unet, UNet2DConditionModel):
        raise ValueError(f"`unet` must be a UNet2DConditionModel, got {type(unet).__name__}.")
    if has_beta_input(unet):
        raise ValueError(f"`unet` already has a β input (time_cond_proj_dim={unet.config.time_cond_proj_dim}).")
    if time_cond_proj_dim < 2:
        raise ValueError(f"`time_cond_proj_dim` must be >= 2, got {time_cond_proj_dim!r}.")
    new = UNet2DConditionModel.from_config({**unet.config, "time_cond_proj_dim": time_cond_proj_dim})
    missing, unexpected = new.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or missing != ["time_embedding.cond_proj.weight"]:
        raise RuntimeError(f"unexpected state-dict mismatch: missing={missing}, unexpected={unexpected}")
    torch.nn.init.zeros_(new.time_embedding.cond_proj.weight)
    first = next(unet.parameters())
    return new.to(device=first.device, dtype=first.dtype).train(unet.training)
