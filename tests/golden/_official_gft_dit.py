"""Test fixture: GFT's class-conditional DiT with its beta input, transcribed from the official code.

Source: thu-ml/GFT @ 9bf5ee45f454eea76bb2ce321ad36c79eef261ad, ``DiT/models.py`` (``TimestepEmbedder`` with
``cond_proj_dim``, ``LabelEmbedder``, ``DiTBlock``, ``FinalLayer``, ``DiT`` with ``use_beta_embed=True,
beta_in="linear"`` (the released DiT-B/2 and DiT-XL/2: ``DiT/train.sh`` passes ``--beta_in=linear``), and
``get_2d_sincos_pos_embed``). Names are the official ones, so ``state_dict()`` has the official keys.
timm's ``PatchEmbed`` (a strided conv), ``Attention`` (fused qkv, ``(B, N, 3, heads, hd)``, scale ``hd^-0.5``) and
``Mlp`` (fc1, tanh-GELU, fc2) are written out with timm's parameter names; label dropout is off (eval).

Sampling (same commit): ``DiT.forward_with_cfg`` (``DiT/models.py``; GFT's copy guides all 4 latent channels) and
``diffusers_sample`` of ``DiT/dpm_sample.py``, the sampler of the paper's evaluation (``DiT/eval.sh``:
``--dpm-solver``, 50 steps; ``sample_ddp.py`` passes ``model.forward`` with ``beta = 1/cfg_scale`` for a GFT model,
``model.forward_with_cfg`` with the null label 1000 for CFG).
"""

import math

import numpy as np
import torch
import torch.nn as nn


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256, cond_proj_dim=None):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size, bias=True), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size, bias=True))
        self.frequency_embedding_size = frequency_embedding_size
        if cond_proj_dim is not None:
            self.cond_proj_dim = cond_proj_dim
            self.cond_proj = nn.Linear(cond_proj_dim, frequency_embedding_size, bias=False)
        else:
            self.cond_proj = None

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half).to(device=t.device)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t, condition=None):
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)
        if condition is not None:
            condition = self.timestep_embedding(condition, self.cond_proj_dim)
            condition = self.cond_proj(condition)
            t_freq = t_freq + condition
        return self.mlp(t_freq)


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)
        self.num_classes = num_classes

    def forward(self, labels):
        return self.embedding_table(labels), torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)


class PatchEmbed(nn.Module):  # timm.models.vision_transformer.PatchEmbed(input_size, patch_size, in_chans, hidden, bias=True)
    def __init__(self, img_size, patch_size, in_chans, embed_dim, bias=True):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):  # timm Attention(dim, num_heads, qkv_bias=True)
    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):  # timm Mlp(in_features, hidden_features, act_layer=GELU(tanh))
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    beta = np.arange(embed_dim // 2, dtype=np.float64)
    beta /= embed_dim / 2.0
    beta = 1.0 / 10000 ** beta
    out = np.einsum("m,d->md", pos.reshape(-1), beta)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


class DiT(nn.Module):
    """``DiT(..., use_beta_embed=True, beta_in="linear")``; ``forward(x, t, y, beta)``."""

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size, cond_proj_dim=512)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        pos_embed = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], int(num_patches ** 0.5))
        self.pos_embed.data.copy_(torch.from_numpy(pos_embed).float().unsqueeze(0))

    def unpatchify(self, x):
        c = self.out_channels
        p = self.x_embedder.patch_size[0]
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(shape=(x.shape[0], h, w, p, p, c))
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(shape=(x.shape[0], c, h * p, h * p))

    def forward(self, x, t, y, beta=None):
        x = self.x_embedder(x) + self.pos_embed
        y, drop_ids = self.y_embedder(y)
        if beta is not None:  # beta_in == "linear"
            beta = torch.where(drop_ids, 1.0, beta)
            t = self.t_embedder(t, condition=beta * 1000)
        else:
            t = self.t_embedder(t)
        c = t + y
        for block in self.blocks:
            x = block(x, c)
        x = self.final_layer(x, c)
        return self.unpatchify(x)

    def forward_with_cfg(self, x, t, y, cfg_scale, beta=None):
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        model_out = self.forward(combined, t, y, beta=beta)
        eps, rest = model_out[:, :4], model_out[:, 4:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=1)


def diffusers_sample(nnet, sample_steps, z_init, device, model_kwargs, order=2, timestep_shift=1):
    """``dpm_sample.diffusers_sample``; the official code feeds the network ``t + 1`` (``timestep_shift=1``), where
    Diffusers' DiTPipeline (and GuidanceFreePipeline) feed ``t``: a test passes ``timestep_shift=0`` to compare.
    (``einops.repeat(t + 1, ' -> B', B=...)`` is written as ``expand``.)"""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(
        solver_order=order)
    scheduler.set_timesteps(sample_steps, device=device)
    timesteps = scheduler.timesteps

    latents = z_init
    for i, t in enumerate(timesteps):  # noqa: B007 (official)
        latents = scheduler.scale_model_input(latents, t)
        t_input = (t + timestep_shift).expand(latents.size(0))
        noise_pred = nnet(latents, t_input, **model_kwargs)[:, :4]
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
    return latents
