"""A small time-conditioned MLP ``F(x, c_noise(t), c_noise(s))`` for trajectory students on vector data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.hub import SafeSaveMixin


@dataclass
class TrajectoryMLPOutput(BaseOutput):
    """
    Args:
        sample (`torch.Tensor`): the raw network output ``F``, shape ``(B, dim)``.
    """

    sample: torch.Tensor


def _fourier(c: torch.Tensor, width: int) -> torch.Tensor:
    freqs = torch.exp(torch.arange(width // 2, device=c.device) * (-math.log(1000.0) / (width // 2)))
    angles = c.float()[:, None] * freqs[None] * 1000.0
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TrajectoryMLP(SafeSaveMixin, ModelMixin, ConfigMixin):
    r"""Residual SiLU MLP for ``dim``-dimensional data, conditioned on the noise levels of ``t`` and ``s``.

    Both conditions are embedded with sinusoidal features and added to every hidden layer (the two-time
    conditioning of CTM's ``NN(c_in x, c_noise(t), c_noise(s))``).

    Args:
        dim (`int`): data dimension.
        hidden_dim (`int`): width.
        num_layers (`int`): residual blocks.
        time_embed_dim (`int`): sinusoidal features per time.
    """

    @register_to_config
    def __init__(self, dim: int = 2, hidden_dim: int = 128, num_layers: int = 3, time_embed_dim: int = 32):
        super().__init__()
        self.input = nn.Linear(dim, hidden_dim)
        self.time = nn.Sequential(
            nn.Linear(2 * time_embed_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)) for _ in range(num_layers)
        )
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, dim))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, target_timestep: torch.Tensor, return_dict: bool = True
    ) -> TrajectoryMLPOutput | tuple:
        """``sample`` ``(B, dim)``; ``timestep`` / ``target_timestep`` are ``c_noise(t)`` / ``c_noise(s)``, scalars or ``(B,)``."""
        batch = sample.shape[0]
        c_t = torch.as_tensor(timestep, device=sample.device).float().expand(batch)
        c_s = torch.as_tensor(target_timestep, device=sample.device).float().expand(batch)
        width = self.config.time_embed_dim
        # the features are computed in float32, then cast to the sample's dtype (bf16/fp16 pipelines; not the
        # weights', which layerwise casting stores in float8)
        emb = self.time(torch.cat([_fourier(c_t, width), _fourier(c_s, width)], dim=-1).to(sample.dtype))
        h = self.input(sample)
        for block in self.blocks:
            h = h + block(h + emb)
        out = self.output(h)
        return TrajectoryMLPOutput(sample=out) if return_dict else (out,)
