"""The old home of GFT's DiT, kept so that its import path (and folders saved naming it) still work; the model lives
in [`hfgen.pipelines.gft.modeling_gft_dit`], with the rest of GFT."""

# Diffusers loads a component through `ModelMixin` looked up in the module that model_index.json names
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401

from hfgen.pipelines.gft.modeling_gft_dit import GFTDiTTransformer2DModel

__all__ = ["GFTDiTTransformer2DModel"]
