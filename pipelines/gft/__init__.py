from .modeling_beta_conditioning import (
    add_beta_conditioning,
    beta_embedding,
    beta_to_guidance_scale,
    guidance_scale_to_beta,
    has_beta_input,
)
from .modeling_gft import BetaEmbedding, GFTCausalLM, GFTCausalLMConfig
from .pipeline_guidance_free import GuidanceFreePipeline

__all__ = [
    "BetaEmbedding",
    "GFTCausalLM",
    "GFTCausalLMConfig",
    "GuidanceFreePipeline",
    "add_beta_conditioning",
    "beta_embedding",
    "beta_to_guidance_scale",
    "guidance_scale_to_beta",
    "has_beta_input",
]
