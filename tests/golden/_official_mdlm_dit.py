"""Test fixture: the DiT backbone of MDLM / SEDD-absorb, transcribed from the official code.

Source: kuleshov-group/mdlm @ c112c526d193436838c98d81455ee51f90309470, ``models/dit.py`` (classes
``Rotary``, ``LayerNorm``, ``TimestepEmbedder``, ``DDiTBlock``, ``EmbeddingLayer``,
``DDitFinalLayer``, ``DIT``), and ``diffusion.py`` (``_process_sigma``, ``_sedd_parameterization``).
Module and parameter names are the official ones, so ``state_dict()`` has the official keys.

Only what runs without a GPU was changed, each change the identity it relies on:

- ``flash_attn.layers.rotary.apply_rotary_emb_qkv_`` (non-interleaved, cos/sin of half the head
  dimension, applied to q and k only) is written out as ``x * cos + rotate_half(x) * sin`` with the
  official cos/sin cache (whose v slot is the identity, cos = 1, sin = 0);
- ``flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, seq_len, 0., causal=False)`` with equal-length
  rows is full bidirectional softmax attention with scale ``1/sqrt(head_dim)``, written out;
- the jit-scripted ``bias_dropout_add_scale`` / ``modulate_fused`` are called as plain functions and
  the CUDA ``autocast`` contexts (no-ops on CPU, bf16 on GPU) are dropped: parity is in float32;
- ``omegaconf`` and ``huggingface_hub.PyTorchModelHubMixin`` are dropped (the config is keywords).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def bias_dropout_add_scale(x, bias, scale, residual, prob, training):
    if bias is not None:
        out = scale * F.dropout(x + bias, p=prob, training=training)
    else:
        out = scale * F.dropout(x, p=prob, training=training)
    if residual is not None:
        out = residual + out
    return out


def modulate_fused(x, shift, scale):
    return x * (1 + scale) + shift


class Rotary(torch.nn.Module):
    def __init__(self, dim, base=10_000):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)
        self.seq_len_cached = None
        self.cos_cached = None
        self.sin_cached = None

    def forward(self, x, seq_dim=1):
        seq_len = x.shape[seq_dim]
        if seq_len != self.seq_len_cached:
            self.seq_len_cached = seq_len
            t = torch.arange(x.shape[seq_dim], device=x.device).type_as(self.inv_freq)
            freqs = torch.einsum("i,j->ij", t, self.inv_freq.clone())
            emb = torch.cat((freqs, freqs), dim=-1).to(x.device)
            self.cos_cached = emb.cos()[None, :, None, None, :].repeat(1, 1, 3, 1, 1)
            self.sin_cached = emb.sin()[None, :, None, None, :].repeat(1, 1, 3, 1, 1)
            self.cos_cached[:, :, 2, :, :].fill_(1.0)
            self.sin_cached[:, :, 2, :, :].fill_(0.0)
        return self.cos_cached, self.sin_cached


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(qkv, cos, sin):
    # flash_attn's apply_rotary_emb_qkv_ written out (see the module docstring)
    return qkv * cos + rotate_half(qkv) * sin


class LayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones([dim]))
        self.dim = dim

    def forward(self, x):
        x = F.layer_norm(x.float(), [self.dim])
        return x * self.weight[None, None, :]


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True))
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half).to(device=t.device)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class DDiTBlock(nn.Module):
    def __init__(self, dim, n_heads, cond_dim, mlp_ratio=4, dropout=0.1):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.dropout1 = nn.Dropout(dropout)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * dim, dim, bias=True))
        self.dropout2 = nn.Dropout(dropout)
        self.dropout = dropout
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim, bias=True)
        self.adaLN_modulation.weight.data.zero_()
        self.adaLN_modulation.bias.data.zero_()

    def forward(self, x, rotary_cos_sin, c, seqlens=None):
        batch_size, seq_len = x.shape[0], x.shape[1]
        (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        x_skip = x
        x = modulate_fused(self.norm1(x), shift_msa, scale_msa)
        qkv = self.attn_qkv(x)
        qkv = qkv.reshape(batch_size, seq_len, 3, self.n_heads, -1)  # 'b s (three h d) -> b s three h d'
        cos, sin = rotary_cos_sin
        qkv = apply_rotary_pos_emb(qkv, cos.to(qkv.dtype), sin.to(qkv.dtype))
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # b h s d
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        x = (att.softmax(-1) @ v).transpose(1, 2).reshape(batch_size, seq_len, -1)  # '(b s) h d -> b s (h d)'
        x = bias_dropout_add_scale(self.attn_out(x), None, gate_msa, x_skip, self.dropout, self.training)
        x = bias_dropout_add_scale(self.mlp(modulate_fused(self.norm2(x), shift_mlp, scale_mlp)), None, gate_mlp, x,
                                   self.dropout, self.training)
        return x


class EmbeddingLayer(nn.Module):
    def __init__(self, dim, vocab_dim):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty((vocab_dim, dim)))
        torch.nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, x):
        return self.embedding[x]


class DDitFinalLayer(nn.Module):
    def __init__(self, hidden_size, out_channels, cond_dim):
        super().__init__()
        self.norm_final = LayerNorm(hidden_size)
        self.linear = nn.Linear(hidden_size, out_channels)
        self.linear.weight.data.zero_()
        self.linear.bias.data.zero_()
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * hidden_size, bias=True)
        self.adaLN_modulation.weight.data.zero_()
        self.adaLN_modulation.bias.data.zero_()

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        x = modulate_fused(self.norm_final(x), shift, scale)
        return self.linear(x)


class DIT(nn.Module):
    """``config.model`` fields as keywords: hidden_size, cond_dim, n_blocks, n_heads, dropout, scale_by_sigma."""

    def __init__(self, vocab_size, hidden_size, cond_dim, n_blocks, n_heads, dropout=0.1, scale_by_sigma=True):
        super().__init__()
        self.vocab_size = vocab_size
        self.vocab_embed = EmbeddingLayer(hidden_size, vocab_size)
        self.sigma_map = TimestepEmbedder(cond_dim)
        self.rotary_emb = Rotary(hidden_size // n_heads)
        self.blocks = nn.ModuleList([DDiTBlock(hidden_size, n_heads, cond_dim, dropout=dropout) for _ in range(n_blocks)])
        self.output_layer = DDitFinalLayer(hidden_size, vocab_size, cond_dim)
        self.scale_by_sigma = scale_by_sigma

    def forward(self, indices, sigma):
        x = self.vocab_embed(indices)
        c = F.silu(self.sigma_map(sigma))
        rotary_cos_sin = self.rotary_emb(x)
        for i in range(len(self.blocks)):
            x = self.blocks[i](x, rotary_cos_sin, c, seqlens=None)
        return self.output_layer(x, c)


def process_sigma(sigma, time_conditioning):
    """``Diffusion._process_sigma``: a time-agnostic MDLM is called with sigma = 0."""
    if sigma.ndim > 1:
        sigma = sigma.squeeze(-1)
    return sigma if time_conditioning else torch.zeros_like(sigma)


def sedd_parameterization(logits, xt, sigma):
    """``Diffusion._sedd_parameterization``: SEDD-absorb's log score."""
    esigm1_log = torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1).log().to(logits.dtype)
    logits = logits - esigm1_log[:, None, None] - math.log(logits.shape[-1] - 1)
    return torch.scatter(logits, -1, xt[..., None], torch.zeros_like(logits[..., :1]))
