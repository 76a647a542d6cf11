"""DDO: Direct Discriminative Optimization (arXiv 2503.01103) for diffusion models and causal LMs."""

from .ddo_config import DDOConfig
from .ddo_trainer import (
    DDODataCollator,
    DDOTrainer,
    RealFakePairs,
    ddo_loss,
    denoising_log_likelihood,
    sequence_log_prob,
)
from .self_play import (
    SelfPlayOutput,
    SelfPlayRound,
    ddo_self_play,
    generate_diffusion_samples,
    generate_lm_samples,
)

__all__ = [
    "DDOConfig",
    "DDODataCollator",
    "DDOTrainer",
    "RealFakePairs",
    "SelfPlayOutput",
    "SelfPlayRound",
    "ddo_loss",
    "ddo_self_play",
    "denoising_log_likelihood",
    "generate_diffusion_samples",
    "generate_lm_samples",
    "sequence_log_prob",
]
