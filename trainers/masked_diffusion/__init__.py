"""Masked-diffusion training of masked language models (arXiv 2409.02908)."""

from .masked_diffusion_config import MaskedDiffusionConfig
from .masked_diffusion_trainer import MaskedDiffusionTrainer

__all__ = ["MaskedDiffusionConfig", "MaskedDiffusionTrainer"]
