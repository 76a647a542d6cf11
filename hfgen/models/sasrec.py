"""A SASRec-style sequential recommender as a transformers model (``model_type="hfgen_sasrec"``).

It is the "User_Encoder" of the IISAN papers (after SASRec, Kang & McAuley 2018): the embeddings of a
user's last items plus learned position embeddings, LayerNorm and dropout, then post-LN transformer
blocks with causal self-attention (no bias in Q/K/V/O, additive -1e9 causal and padding masks) and a
ReLU feed-forward of width ``4d``. The hidden state at position ``t`` is the user vector that
predicts the item at ``t + 1``; its score for an item is the dot product with the item's embedding.

Item embeddings come from outside (``inputs_embeds``: a side adapter's output); with
``num_items > 0`` the model also owns an ID embedding table (``input_ids``), the classic SASRec.
Registered with ``AutoConfig`` / ``AutoModel`` when ``hfgen.models`` is imported.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from hfgen.hub import SafeSaveMixin
from hfgen.validation import check_arguments


class SASRecConfig(PretrainedConfig):
    """Configuration of [`SASRecModel`] (official IISAN defaults: d=64, 2 blocks, 2 heads, 10 items).

    Args:
        hidden_size: item-embedding and model width ``d``.
        num_hidden_layers: transformer blocks.
        num_attention_heads: attention heads.
        intermediate_size: feed-forward width (``4d`` by default).
        max_seq_len: the longest history the model reads (position embeddings).
        hidden_dropout_prob / attention_probs_dropout_prob: dropout rates.
        layer_norm_eps: LayerNorm epsilon.
        num_items: size of an own item-ID embedding table (0: item embeddings are given by the caller).
    """

    model_type = "hfgen_sasrec"

    def __init__(self, hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 2,
                 intermediate_size: int | None = None, max_seq_len: int = 10, hidden_dropout_prob: float = 0.1,
                 attention_probs_dropout_prob: float = 0.1, layer_norm_eps: float = 1e-6, num_items: int = 0,
                 **kwargs):
        check_arguments(SASRecConfig.__init__, locals())  # types and finiteness, generated from the signature
        if hidden_size < 1 or num_hidden_layers < 1 or max_seq_len < 1:
            raise ValueError("`hidden_size`, `num_hidden_layers` and `max_seq_len` must be >= 1, got "
                             f"{hidden_size}, {num_hidden_layers}, {max_seq_len}.")
        if hidden_size % num_attention_heads:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_attention_heads` "
                             f"({num_attention_heads}).")
        if num_items < 0:
            raise ValueError(f"`num_items` must be >= 0, got {num_items}.")
        if layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` must be > 0, got {layer_norm_eps}.")
        for name, rate in (("hidden_dropout_prob", hidden_dropout_prob), ("attention_probs_dropout_prob",
                                                                          attention_probs_dropout_prob)):
            if not 0 <= rate < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {rate}.")
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.max_seq_len = max_seq_len
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.num_items = num_items
        super().__init__(**kwargs)


class SASRecBlock(nn.Module):
    """Post-LN block: ``x = LN(x + Drop(MHA(x))); x = LN(x + Drop(FFN(x)))``."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        d, self.heads = config.hidden_size, config.num_attention_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.ffn = nn.Sequential(nn.Linear(d, config.intermediate_size), nn.ReLU(), nn.Linear(config.intermediate_size, d))
        self.ln_attn = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ln_ffn = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout_prob)
        self.attn_drop = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x [B, L, d], mask [B, 1, L, L] additive
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads) + mask
        y = (self.attn_drop(att.softmax(-1)) @ v).transpose(1, 2).reshape(B, L, d)
        x = self.ln_attn(x + self.drop(self.out(y)))
        return self.ln_ffn(x + self.drop(self.ffn(x)))


class SASRecPreTrainedModel(SafeSaveMixin, PreTrainedModel):
    config_class = SASRecConfig
    base_model_prefix = "sasrec"
    main_input_name = "inputs_embeds"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):  # xavier normal, zero bias (the official init)
            nn.init.xavier_normal_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class SASRecModel(SASRecPreTrainedModel):
    """SASRec user encoder: ``[B, L, d]`` item embeddings (left-padded) -> ``[B, L, d]`` user vectors."""

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.item_embeddings = nn.Embedding(config.num_items, d, padding_idx=0) if config.num_items else None
        self.position_embeddings = nn.Embedding(config.max_seq_len, d)
        self.ln = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_hidden_layers))
        self.post_init()

    def embed_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The model's own ID embeddings (``num_items > 0`` only)."""
        if self.item_embeddings is None:
            raise ValueError("This SASRecModel has no item table (`num_items=0`); pass `inputs_embeds`.")
        return self.item_embeddings(item_ids)

    def forward(self, inputs_embeds: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                input_ids: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> BaseModelOutput | tuple:
        """
        Args:
            inputs_embeds: ``[B, L, d]`` item embeddings of the history, left-padded, ``L <= max_seq_len``.
            attention_mask: ``[B, L]``, 1 for real items and 0 for padding.
            input_ids: ``[B, L]`` item ids (instead of ``inputs_embeds``; needs ``num_items > 0``; 0 = padding).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (inputs_embeds is None) == (input_ids is None):
            raise ValueError("Pass exactly one of `inputs_embeds` and `input_ids`.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_items(input_ids)
            attention_mask = (input_ids != 0).long() if attention_mask is None else attention_mask
        B, L, _ = inputs_embeds.shape
        if L > self.config.max_seq_len:
            raise ValueError(f"The history has {L} items, more than `max_seq_len`={self.config.max_seq_len}.")
        if attention_mask is None:
            attention_mask = torch.ones(B, L, dtype=torch.long, device=inputs_embeds.device)
        pos = self.position_embeddings(torch.arange(L, device=inputs_embeds.device))
        x = self.drop(self.ln(inputs_embeds + pos))
        causal = torch.tril(torch.ones(L, L, dtype=torch.bool, device=x.device))
        allowed = causal[None] & attention_mask.bool()[:, None, :]
        mask = torch.zeros(B, 1, L, L, dtype=x.dtype, device=x.device).masked_fill(~allowed[:, None], -1e9)
        hidden = [x]
        for block in self.blocks:
            x = block(x, mask)
            hidden.append(x)
        if not return_dict:
            return (x, tuple(hidden)) if output_hidden_states else (x,)
        return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)


AutoConfig.register(SASRecConfig.model_type, SASRecConfig, exist_ok=True)
AutoModel.register(SASRecConfig, SASRecModel, exist_ok=True)
