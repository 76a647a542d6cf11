"""Masked diffusion models: the first-hitting sampler, the ancestral sampler and the pipeline (arXiv 2409.02908)."""

from .modeling_mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM
from .pipeline_masked_diffusion import MaskedDiffusionPipeline, MaskedDiffusionPipelineOutput
from .scheduling_ancestral_masked import AncestralMaskedScheduler
from .scheduling_first_hitting import FirstHittingScheduler

__all__ = ["AncestralMaskedScheduler", "FirstHittingScheduler", "MDLMDiTConfig", "MDLMDiTForMaskedLM",
           "MaskedDiffusionPipeline", "MaskedDiffusionPipelineOutput"]
