"""The old home of MDLM's DiT, kept so that its import path (and folders saved naming it) still work; the model lives
in [`hfgen.pipelines.masked_diffusion.modeling_mdlm_dit`], with the rest of the masked diffusion method."""

# Diffusers loads a component through `PreTrainedModel` looked up in the module that model_index.json names
from transformers import PreTrainedModel  # noqa: F401

from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM

__all__ = ["MDLMDiTConfig", "MDLMDiTForMaskedLM"]
