from hfgen.pipelines.gft.modeling_gft import BetaEmbedding, GFTCausalLM, GFTCausalLMConfig

from .gft_config import GFTConfig
from .gft_trainer import GFTTrainer, gft_interpolate

__all__ = ["BetaEmbedding", "GFTCausalLM", "GFTCausalLMConfig", "GFTConfig", "GFTTrainer", "gft_interpolate"]
