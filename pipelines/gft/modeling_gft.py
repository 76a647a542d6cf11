"""A transformers causal LM with GFT's β input (autoregressive GFT, as in the official LlamaGen code).

The sequence starts with a condition token (a class id, or the null condition). β enters as in
thu-ml/GFT ``LlamaGen/autoregressive/models/gpt.py``: ``t_embedder(β·1000)`` (a sinusoidal embedding
and a two-layer MLP whose last layer is zero-initialised) is added to the condition token's embedding.
With the zero-initialised layer the wrapped LM computes exactly what it computed before, for every β.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec

from hfgen.hub import SafeSaveMixin

from .modeling_beta_conditioning import dit_timestep_embedding


class GFTCausalLMConfig(PreTrainedConfig):
    r"""Configuration of [`GFTCausalLM`].

    Args:
        text_config (`dict` or `PreTrainedConfig`): the wrapped causal LM's configuration (any ``AutoModelForCausalLM``).
        beta_frequency_dim (`int`, defaults to 256): width of the sinusoidal embedding of β·1000.
        null_condition_token_id (`int`, *optional*): the null condition token (the dropped / unconditional class).
    """

    model_type = "hfgen_gft_causal_lm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    beta_frequency_dim: int = 256
    null_condition_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.beta_frequency_dim < 2 or self.beta_frequency_dim % 2:
            raise ValueError(f"`beta_frequency_dim` must be an even int >= 2, got {self.beta_frequency_dim!r}.")


class BetaEmbedding(nn.Module):
    """β ↦ MLP(sinusoid(β·1000)), with the last layer zero-initialised (official ``t_embedder``)."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.linear_1 = nn.Linear(frequency_dim, hidden_size)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.linear_1.weight, std=0.02)
        nn.init.zeros_(self.linear_1.bias)
        nn.init.zeros_(self.linear_2.weight)
        nn.init.zeros_(self.linear_2.bias)

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        freq = dit_timestep_embedding(beta * 1000.0, self.frequency_dim).to(self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(freq)))


class GFTCausalLM(SafeSaveMixin, PreTrainedModel, GenerationMixin):
    r"""A causal LM ``lm`` whose first token (the condition) also receives the β embedding.

    ``forward(input_ids, beta=...)`` returns the wrapped LM's output; ``beta`` is a float or a ``(B,)`` tensor
    in (0, 1] (default 1). Sampling at β = 1/s draws from softmax(ℓ_u + s(ℓ_c − ℓ_u)) at the GFT optimum,
    with one forward per token: ``model.generate(class_tokens, beta=0.5, do_sample=True)``.
    """

    config_class = GFTCausalLMConfig
    base_model_prefix = "gft"
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = []

    def __init__(self, config: GFTCausalLMConfig, lm: PreTrainedModel | None = None):
        super().__init__(config)
        self.lm = lm if lm is not None else AutoModelForCausalLM.from_config(config.text_config)
        self.config.text_config = self.lm.config  # one config object (keeps the LM's attention implementation)
        self.beta_embedding = BetaEmbedding(self.lm.config.get_text_config().hidden_size, config.beta_frequency_dim)
        self.post_init()

    @classmethod
    def from_causal_lm(cls, lm: PreTrainedModel, null_condition_token_id: int | None = None, beta_frequency_dim: int = 256):
        """Wrap a (CFG-trained) causal LM for GFT fine-tuning; its outputs are unchanged at every β."""
        config = GFTCausalLMConfig(text_config=lm.config.to_dict(), beta_frequency_dim=beta_frequency_dim,
                                   null_condition_token_id=null_condition_token_id)
        model = cls(config, lm=lm)
        first = next(lm.parameters())
        return model.to(device=first.device, dtype=first.dtype)

    def _init_weights(self, module):
        if isinstance(module, BetaEmbedding):
            module.reset_parameters()

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.lm.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def forward(self, input_ids=None, beta=None, attention_mask=None, past_key_values=None, inputs_embeds=None,
                labels=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.lm.get_input_embeddings()(input_ids)
        cache = kwargs.get("cache", past_key_values)
        is_prefill = cache is None or cache.get_seq_length() == 0
        if is_prefill:  # the condition token (position 0) is in this chunk: add the β embedding to it
            batch_size = inputs_embeds.shape[0]
            beta = torch.as_tensor(1.0 if beta is None else beta, device=inputs_embeds.device, dtype=torch.float32)
            beta = beta.expand(batch_size) if beta.ndim == 0 else beta
            first = inputs_embeds[:, :1] + self.beta_embedding(beta)[:, None].to(inputs_embeds.dtype)
            inputs_embeds = torch.cat([first, inputs_embeds[:, 1:]], dim=1)
        if past_key_values is not None:
            kwargs["past_key_values"] = past_key_values
        return self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)


AutoConfig.register(GFTCausalLMConfig.model_type, GFTCausalLMConfig, exist_ok=True)
AutoModelForCausalLM.register(GFTCausalLMConfig, GFTCausalLM, exist_ok=True)
