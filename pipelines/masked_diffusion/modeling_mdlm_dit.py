"""The diffusion transformer (DiT) of MDLM and SEDD-absorb as a transformers masked LM (``model_type="hfgen_mdlm_dit"``).

The backbone of the masked diffusion LMs released with MDLM (Sahoo et al. 2024, kuleshov-group/mdlm)
and used by the first-hitting-sampler paper (arXiv 2409.02908, App. H.2): a bidirectional
transformer with rotary position embeddings whose blocks are modulated by the noise level
``sigma`` through adaptive LayerNorm (DiT's adaLN with gates), LayerNorms without bias, a
``sigma`` embedding (sinusoidal features, MLP, SiLU) and a modulated output layer.

- ``time_conditioning=False`` (MDLM's OWT checkpoints): the network is called with ``sigma = 0``
  whatever the time, as MDLM's ``_process_sigma`` does: a time-agnostic denoiser.
- ``time_conditioning=True`` (SEDD-absorb): ``sigma`` is passed, or computed from ``timesteps``
  with MDLM's log-linear schedule ``sigma(t) = -log(1 - (1 - eps) t)``.

``logits`` are the backbone's outputs. With the mask class left out (the SUBS parameterisation,
Eq. 4 of arXiv 2409.02908) their softmax is the denoiser ``mu_theta``, for MDLM (which normalises
them) and for SEDD-absorb (whose log score differs from them by a per-position constant and the
mask entry, App. D.3, Eq. 56). ``MaskedDiffusionPipeline`` removes the mask class itself.

Registered with ``AutoConfig`` / ``AutoModelForMaskedLM`` when this module is imported (``import
hfgen`` arranges that for the moment transformers' auto classes are imported).
Checkpoints are converted with ``hfgen convert mdlm`` / ``hfgen convert sedd-absorb``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from hfgen.hub import SafeSaveMixin

PARAMETERIZATIONS = ("subs", "sedd")


class MDLMDiTConfig(PretrainedConfig):
    r"""Configuration of [`MDLMDiTForMaskedLM`]; the defaults are MDLM's ``small`` model on OpenWebText.

    Args:
        vocab_size (`int`, defaults to 50258): tokens including the mask (GPT-2's 50257 plus one).
        hidden_size (`int`, defaults to 768): model width.
        num_hidden_layers (`int`, defaults to 12): DiT blocks (``n_blocks``).
        num_attention_heads (`int`, defaults to 12): attention heads (``n_heads``).
        cond_dim (`int`, defaults to 128): width of the ``sigma`` embedding.
        mlp_ratio (`int`, defaults to 4): feed-forward width over ``hidden_size``.
        frequency_embedding_size (`int`, defaults to 256): sinusoidal features of ``sigma``.
        rope_theta (`float`, defaults to 10000.0): rotary embedding base.
        dropout (`float`, defaults to 0.1): residual dropout.
        max_position_embeddings (`int`, defaults to 1024): training length (informative; RoPE has no table).
        time_conditioning (`bool`, defaults to `False`): use ``sigma``; else the network sees ``sigma = 0``.
        parameterization (`str`, defaults to `"subs"`): ``"subs"`` (MDLM) or ``"sedd"`` (SEDD-absorb).
        noise_eps (`float`, defaults to 1e-3): ``eps`` of the log-linear schedule mapping ``timesteps`` to ``sigma``.
        mask_token_id (`int`, *optional*): the mask token; defaults to the last id, ``vocab_size - 1``.
    """

    model_type = "hfgen_mdlm_dit"

    def __init__(self, vocab_size: int = 50258, hidden_size: int = 768, num_hidden_layers: int = 12,
                 num_attention_heads: int = 12, cond_dim: int = 128, mlp_ratio: int = 4,
                 frequency_embedding_size: int = 256, rope_theta: float = 10000.0, dropout: float = 0.1,
                 max_position_embeddings: int = 1024, time_conditioning: bool = False, parameterization: str = "subs",
                 noise_eps: float = 1e-3, mask_token_id: int | None = None, **kwargs):
        for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size), ("num_hidden_layers", num_hidden_layers),
                            ("num_attention_heads", num_attention_heads), ("cond_dim", cond_dim), ("mlp_ratio", mlp_ratio)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if hidden_size % num_attention_heads or (hidden_size // num_attention_heads) % 2:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_attention_heads` "
                             f"({num_attention_heads}) into an even head dimension (rotary embeddings).")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"`parameterization` must be one of {PARAMETERIZATIONS}, got {parameterization!r}.")
        if not 0 < noise_eps < 1:
            raise ValueError(f"`noise_eps` must be in (0, 1), got {noise_eps!r}.")
        mask_token_id = vocab_size - 1 if mask_token_id is None else mask_token_id
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"`mask_token_id` {mask_token_id} is outside the vocabulary of {vocab_size}.")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.cond_dim = cond_dim
        self.mlp_ratio = mlp_ratio
        self.frequency_embedding_size = frequency_embedding_size
        self.rope_theta = rope_theta
        self.dropout = dropout
        self.max_position_embeddings = max_position_embeddings
        self.time_conditioning = time_conditioning
        self.parameterization = parameterization
        self.noise_eps = noise_eps
        self.mask_token_id = mask_token_id
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class MDLMLayerNorm(nn.Module):
    """LayerNorm without bias, computed in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), x.shape[-1:]) * self.weight


class SigmaEmbedding(nn.Module):
    """``SiLU(MLP([cos(sigma w), sin(sigma w)]))`` with ``w_i = 10000^(-i / half)``."""

    def __init__(self, config: MDLMDiTConfig):
        super().__init__()
        self.frequency_embedding_size = config.frequency_embedding_size
        self.linear_1 = nn.Linear(config.frequency_embedding_size, config.cond_dim)
        self.linear_2 = nn.Linear(config.cond_dim, config.cond_dim)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
        args = sigma[:, None].float() * freqs
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.frequency_embedding_size % 2:
            emb = F.pad(emb, (0, 1))
        emb = emb.to(self.linear_1.weight.dtype)
        return F.silu(self.linear_2(F.silu(self.linear_1(emb))))


class MDLMDiTBlock(nn.Module):
    """``x += gate_msa * Attn(modulate(LN(x)))``, ``x += gate_mlp * MLP(modulate(LN(x)))``, ``modulate = x (1 + scale) + shift``."""

    def __init__(self, config: MDLMDiTConfig):
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.norm1 = MDLMLayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.norm2 = MDLMLayerNorm(d)
        self.fc1 = nn.Linear(d, config.mlp_ratio * d)
        self.fc2 = nn.Linear(config.mlp_ratio * d, d)
        self.ada_ln = nn.Linear(config.cond_dim, 6 * d)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, c):
        B, L, d = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.ada_ln(c)[:, None].chunk(6, dim=-1)
        h = (self.norm1(x) * (1 + scale_msa) + shift_msa).to(self.qkv.weight.dtype)
        q, k, v = self.qkv(h).view(B, L, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x [B, heads, L, hd]
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, d)
        x = x + gate_msa * self.drop(self.o_proj(h))
        h = (self.norm2(x) * (1 + scale_mlp) + shift_mlp).to(self.fc1.weight.dtype)
        return x + gate_mlp * self.drop(self.fc2(F.gelu(self.fc1(h), approximate="tanh")))


class MDLMDiTPreTrainedModel(SafeSaveMixin, PreTrainedModel):
    config_class = MDLMDiTConfig
    base_model_prefix = "dit"
    main_input_name = "input_ids"
    _no_split_modules = ["MDLMDiTBlock"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        # the official initialisation: default Linear init, zero adaLN and output layers (DiT's adaLN-Zero)
        if isinstance(module, nn.Linear):
            if getattr(module, "_zero_init", False):
                module.weight.zero_()
                module.bias.zero_()
            else:
                module.reset_parameters()
        elif isinstance(module, nn.Embedding):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        elif isinstance(module, MDLMLayerNorm):
            module.weight.fill_(1.0)


class MDLMDiTForMaskedLM(MDLMDiTPreTrainedModel):
    r"""MDLM / SEDD-absorb DiT: ``input_ids`` (and the noise level) to per-token logits over the vocabulary.

    Args:
        config ([`MDLMDiTConfig`]): the architecture.
    """

    def __init__(self, config: MDLMDiTConfig):
        super().__init__(config)
        d = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.sigma_embedding = SigmaEmbedding(config)
        self.layers = nn.ModuleList(MDLMDiTBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = MDLMLayerNorm(d)
        self.final_ada_ln = nn.Linear(config.cond_dim, 2 * d)
        self.lm_head = nn.Linear(d, config.vocab_size)
        for module in [self.final_ada_ln, self.lm_head, *(layer.ada_ln for layer in self.layers)]:
            module._zero_init = True
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def sigma_from_timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        """MDLM's log-linear schedule: ``sigma(t) = -log(1 - (1 - eps) t)``, so that ``alpha_t = exp(-sigma(t))``."""
        return -torch.log1p(-(1 - self.config.noise_eps) * timesteps.float())

    def forward(self, input_ids: torch.LongTensor, timesteps: torch.Tensor | None = None, sigma: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                return_dict: bool | None = None, **kwargs) -> MaskedLMOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): tokens, the mask token where masked.
            timesteps (`torch.Tensor` of shape `(batch,)` or a scalar, *optional*): diffusion time in ``[0, 1]``;
                mapped to ``sigma`` by the log-linear schedule. Ignored unless ``config.time_conditioning``.
            sigma (`torch.Tensor` of shape `(batch,)` or a scalar, *optional*): the noise level itself (MDLM's
                ``sigma``), instead of ``timesteps``. Ignored unless ``config.time_conditioning``.
            attention_mask (`torch.Tensor`, *optional*): must be all ones if given: the DiT attends everywhere.
            labels (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*): targets for a cross-entropy
                over the non-mask classes (``-100`` is ignored).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if input_ids.ndim != 2:
            raise ValueError(f"`input_ids` must have shape (batch, seq_len), got {tuple(input_ids.shape)}.")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError("MDLMDiTForMaskedLM attends to every position (as trained); `attention_mask` must be all ones.")
        if timesteps is not None and sigma is not None:
            raise ValueError("Pass at most one of `timesteps` and `sigma`.")
        B, L = input_ids.shape
        device = input_ids.device
        if not self.config.time_conditioning:
            sigma = torch.zeros(B, device=device)  # MDLM's `_process_sigma` for a time-agnostic model
        elif sigma is None:
            if timesteps is None:
                raise ValueError("This model is time-conditioned (`config.time_conditioning=True`): pass `timesteps` or `sigma`.")
            sigma = self.sigma_from_timesteps(torch.as_tensor(timesteps, device=device))
        sigma = torch.as_tensor(sigma, device=device).float().reshape(-1)
        if sigma.numel() not in (1, B):
            raise ValueError(f"`timesteps` / `sigma` must hold one value or one per row ({B}), got {sigma.numel()}.")
        sigma = sigma.expand(B)

        x = self.embed_tokens(input_ids)
        c = self.sigma_embedding(sigma)
        # rotary tables, computed here rather than kept as a buffer (a non-persistent buffer is not restored by
        # transformers' meta-device loading)
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        inv_freq = 1.0 / (self.config.rope_theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(L, device=device, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, c)
        shift, scale = self.final_ada_ln(c)[:, None].chunk(2, dim=-1)
        logits = self.lm_head((self.norm(x) * (1 + scale) + shift).to(self.lm_head.weight.dtype))

        loss = None
        if labels is not None:
            masked = logits.float().clone()
            masked[..., self.config.mask_token_id] = -torch.inf
            loss = F.cross_entropy(masked.view(-1, masked.shape[-1]), labels.view(-1), ignore_index=-100)
        if not return_dict:
            return (loss, logits) if loss is not None else (logits,)
        return MaskedLMOutput(loss=loss, logits=logits)


AutoConfig.register(MDLMDiTConfig.model_type, MDLMDiTConfig, exist_ok=True)
AutoModelForMaskedLM.register(MDLMDiTConfig, MDLMDiTForMaskedLM, exist_ok=True)
