from .modeling_beta_conditioning import (
    BETA_EMBEDDING_TYPES,
    add_beta_conditioning,
    beta_embedding,
    beta_embedding_type,
    beta_to_guidance_scale,
    guidance_scale_to_beta,
    has_beta_input,
    unet_timestep_cond,
)
from .modeling_gft import BetaEmbedding, GFTCausalLM, GFTCausalLMConfig
from .modeling_gft_dit import GFTDiTTransformer2DModel
from .pipeline_guidance_free import GuidanceFreePipeline

__all__ = [
    "BETA_EMBEDDING_TYPES",
    "BetaEmbedding",
    "GFTCausalLM",
    "GFTCausalLMConfig",
    "GFTDiTTransformer2DModel",
    "GuidanceFreePipeline",
    "add_beta_conditioning",
    "beta_embedding",
    "beta_embedding_type",
    "beta_to_guidance_scale",
    "guidance_scale_to_beta",
    "has_beta_input",
    "unet_timestep_cond",
]
