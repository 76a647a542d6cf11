"""GFT's class-conditional DiT as a Diffusers [`~diffusers.DiTTransformer2DModel`] with a β input.

GFT (arXiv 2501.15420) fine-tunes DiT so that one network call at temperature β is the CFG prediction at
scale 1/β. The released DiT-B/2 and DiT-XL/2 (thu-ml/GFT, ``DiT/train.sh``: ``--beta_in=linear``) take β as
the official ``TimestepEmbedder(cond_proj_dim=512)`` does: the sinusoidal features of ``1000 β`` (512 of
them) go through a bias-free linear map and are added to the timestep's 256 sinusoidal features before the
timestep MLP. That is Diffusers' ``TimestepEmbedding(cond_proj_dim=...)``, so this model is a
``DiTTransformer2DModel`` whose per-block ``CombinedTimestepLabelEmbeddings`` gain that ``cond_proj`` and
whose ``forward`` takes ``beta``.

Two details make it the official DiT exactly (Diffusers' ``DiTTransformer2DModel`` differs from it
slightly): the timestep features use the official frequencies ``10000^(-i/half)`` (Diffusers' DiT uses
``downscale_freq_shift=1``, i.e. ``/(half - 1)``), and the feed-forward LayerNorm has the official
``eps=1e-6`` (``norm_eps``).
"""

from __future__ import annotations

import torch
from diffusers import DiTTransformer2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import CombinedTimestepLabelEmbeddings, TimestepEmbedding, Timesteps

# Diffusers' pipeline loader finds a component's loading method by looking `ModelMixin` up in the module that
# model_index.json names (here): GuidanceFreePipeline.from_pretrained of a folder with this model needs it.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401

from .modeling_beta_conditioning import dit_timestep_embedding


class BetaTimestepLabelEmbeddings(CombinedTimestepLabelEmbeddings):
    """Timestep + class embedding with GFT's linear β injection (``beta_condition``, set by the model's forward)."""

    def __init__(self, num_classes: int, embedding_dim: int, class_dropout_prob: float = 0.1,
                 beta_cond_proj_dim: int | None = 512):
        super().__init__(num_classes, embedding_dim, class_dropout_prob)
        self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(in_channels=256, time_embed_dim=embedding_dim,
                                                   cond_proj_dim=beta_cond_proj_dim)
        self.beta_condition: torch.Tensor | None = None

    def forward(self, timestep, class_labels, hidden_dtype=None):
        features = self.time_proj(timestep).to(dtype=hidden_dtype)
        condition = None if self.beta_condition is None else self.beta_condition.to(features.dtype)
        return self.timestep_embedder(features, condition=condition) + self.class_embedder(class_labels)


class GFTDiTTransformer2DModel(DiTTransformer2DModel):
    r"""A DiT (``DiTTransformer2DModel``) with GFT's β input; ``forward(..., beta=...)``.

    Args:
        beta_cond_proj_dim (`int`, defaults to 512): sinusoidal features of ``1000 β`` fed to each block's
            timestep embedding through a bias-free linear map (the official ``cond_proj_dim``).
        Other arguments: those of [`~diffusers.DiTTransformer2DModel`] (``norm_eps`` defaults to the official 1e-6).
    """

    @register_to_config
    def __init__(self, num_attention_heads: int = 16, attention_head_dim: int = 72, in_channels: int = 4,
                 out_channels: int | None = None, num_layers: int = 28, dropout: float = 0.0, norm_num_groups: int = 32,
                 attention_bias: bool = True, sample_size: int = 32, patch_size: int = 2,
                 activation_fn: str = "gelu-approximate", num_embeds_ada_norm: int | None = 1000,
                 upcast_attention: bool = False, norm_type: str = "ada_norm_zero", norm_elementwise_affine: bool = False,
                 norm_eps: float = 1e-6, beta_cond_proj_dim: int | None = 512):
        super().__init__(num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
                         in_channels=in_channels, out_channels=out_channels, num_layers=num_layers, dropout=dropout,
                         norm_num_groups=norm_num_groups, attention_bias=attention_bias, sample_size=sample_size,
                         patch_size=patch_size, activation_fn=activation_fn, num_embeds_ada_norm=num_embeds_ada_norm,
                         upcast_attention=upcast_attention, norm_type=norm_type,
                         norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps)
        if beta_cond_proj_dim is not None and beta_cond_proj_dim < 2:
            raise ValueError(f"`beta_cond_proj_dim` must be >= 2 or None, got {beta_cond_proj_dim!r}.")
        for block in self.transformer_blocks:
            block.norm1.emb = BetaTimestepLabelEmbeddings(num_embeds_ada_norm, self.inner_dim, 0.1, beta_cond_proj_dim)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor | None = None,
                class_labels: torch.LongTensor | None = None, beta: torch.Tensor | float | None = None,
                cross_attention_kwargs=None, return_dict: bool = True):
        r"""``DiTTransformer2DModel.forward`` plus ``beta`` (`float` or `(batch,)` tensor in (0, 1]): the GFT
        temperature; ``None`` is the official call without β (the pretrained, CFG-era network)."""
        condition = None
        if beta is not None:
            if self.config.beta_cond_proj_dim is None:
                raise ValueError("This model has no β input (`beta_cond_proj_dim=None`); call it without `beta`.")
            beta = torch.as_tensor(beta, device=hidden_states.device, dtype=torch.float32).reshape(-1)
            if beta.numel() not in (1, hidden_states.shape[0]):
                raise ValueError(f"`beta` must hold one value or one per sample ({hidden_states.shape[0]}), got {beta.numel()}.")
            condition = dit_timestep_embedding(beta.expand(hidden_states.shape[0]) * 1000, self.config.beta_cond_proj_dim)
        embeddings = [block.norm1.emb for block in self.transformer_blocks]
        for emb in embeddings:
            emb.beta_condition = condition
        try:
            return super().forward(hidden_states, timestep=timestep, class_labels=class_labels,
                                   cross_attention_kwargs=cross_attention_kwargs, return_dict=return_dict)
        finally:
            for emb in embeddings:
                emb.beta_condition = None
