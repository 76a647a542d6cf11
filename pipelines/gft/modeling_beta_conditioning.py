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

import math

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


BETA_EMBEDDING_TYPES = ("guidance_scale", "timestep")


def dit_timestep_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """DiT's ``TimestepEmbedder.timestep_embedding`` of ``x`` (shape ``(B,)``, computed in float32):
    ``[cos(x w), sin(x w)]`` with ``w_i = max_period^(-i / half)``, zero-padded to ``dim`` features when it is odd."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = x.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


def beta_embedding(beta: torch.Tensor, embedding_dim: int, dtype: torch.dtype = torch.float32,
                   embedding_type: str = "guidance_scale") -> torch.Tensor:
    """The ``timestep_cond`` for temperature ``beta`` (shape ``(B,)``).

    Args:
        embedding_type: ``"guidance_scale"`` (the official SD1.5 form, the default): the sinusoidal guidance-scale
            embedding of w = 1/β − 1, identical to ``StableDiffusionPipeline.get_guidance_scale_embedding``
            (``[sin, cos]`` of ``1000 w``). It varies fast in β near 0. As in the official code, it is computed
            in float32 and then cast to ``dtype``, and w in ``beta``'s precision: a float32 ``beta`` gives the
            official training code's embedding bit for bit, a float64 one that of ``guidance_scale − 1`` in
            Python floats (the stock pipeline the official sampling uses; [`GuidanceFreePipeline`] passes float64).
            ``"timestep"`` (the official DiT form, ``beta_in="linear"``): DiT's timestep embedding of β·1000
            (``[cos, sin]``, frequencies ``exp(−ln(10⁴)·i/half)``), smooth in β.
    """
    if beta.ndim != 1:
        raise ValueError(f"`beta` must be a 1-D tensor, got shape {tuple(beta.shape)}.")
    if embedding_type not in BETA_EMBEDDING_TYPES:
        raise ValueError(f"`embedding_type` must be one of {BETA_EMBEDDING_TYPES}, got {embedding_type!r}.")
    if embedding_type == "timestep":
        return dit_timestep_embedding(beta.float() * 1000.0, embedding_dim).to(dtype)
    # w = 1/β − 1 in β's precision (at least float32), the embedding in float32 whatever `dtype`, then cast:
    # float32 β is the official train.py (`torch.reciprocal(beta) - 1`), float64 β the official sampling
    # (stock StableDiffusionPipeline: `guidance_scale - 1` in Python floats, rounded to float32 once)
    half_dim = embedding_dim // 2
    w = torch.reciprocal(beta if beta.dtype == torch.float64 else beta.float()) - 1.0
    w = w.float() * 1000.0
    freqs = torch.exp(torch.arange(half_dim, dtype=torch.float32, device=beta.device)
                      * -(torch.log(torch.tensor(10000.0, device=beta.device)) / (half_dim - 1)))
    angles = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(dtype)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def beta_embedding_type(unet) -> str:
    """The β embedding a β-conditioned UNet was built with (``config.gft_beta_embedding``; default the SD form)."""
    return unet.config.get("gft_beta_embedding", "guidance_scale")


def unet_timestep_cond(unet, beta: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """``timestep_cond`` of ``unet`` for temperatures ``beta`` (None when the UNet has no β input or β is None)."""
    if beta is None or getattr(unet.config, "time_cond_proj_dim", None) is None:
        return None
    return beta_embedding(beta, unet.config.time_cond_proj_dim, dtype, beta_embedding_type(unet))


def has_beta_input(model) -> bool:
    """Whether ``model`` takes a β input: a UNet's ``timestep_cond`` through ``time_cond_proj_dim``, or a
    [`~hfgen.pipelines.gft.GFTDiTTransformer2DModel`]'s ``beta`` through ``beta_cond_proj_dim``."""
    config = model.config
    return any(getattr(config, key, None) is not None for key in ("time_cond_proj_dim", "beta_cond_proj_dim"))


def add_beta_conditioning(unet, time_cond_proj_dim: int = 256, beta_embedding_type: str = "guidance_scale"):
    """Return a copy of a (CFG-trained) ``UNet2DConditionModel`` with a β input whose projection is
    zero-initialised, so that the new model's output equals the original's for every β (GFT
    fine-tuning starts from the pretrained model; official code: ``cond_proj.weight`` zeroed).

    ``beta_embedding_type`` (see [`beta_embedding`]) is stored in the UNet's config as ``gft_beta_embedding``
    (Diffusers warns that it does not know the key when loading, and keeps it): ``"guidance_scale"`` (the SD1.5
    form; stock ``StableDiffusionPipeline(guidance_scale=1/β)`` can sample it) or ``"timestep"`` (the DiT form,
    smooth in β; sample it with [`GuidanceFreePipeline`])."""
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
    if beta_embedding_type not in BETA_EMBEDDING_TYPES:
        raise ValueError(f"`beta_embedding_type` must be one of {BETA_EMBEDDING_TYPES}, got {beta_embedding_type!r}.")
    new = UNet2DConditionModel.from_config({**unet.config, "time_cond_proj_dim": time_cond_proj_dim})
    missing, unexpected = new.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or missing != ["time_embedding.cond_proj.weight"]:
        raise RuntimeError(f"unexpected state-dict mismatch: missing={missing}, unexpected={unexpected}")
    torch.nn.init.zeros_(new.time_embedding.cond_proj.weight)
    new.register_to_config(gft_beta_embedding=beta_embedding_type)
    first = next(unet.parameters())
    return new.to(device=first.device, dtype=first.dtype).train(unet.training)
