import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config


class ToyFlowModel(ModelMixin, ConfigMixin):
    """The velocity field ``v(x_t, t)`` of 2-D points: an MLP on the point and the time ``t`` in [0, 1]."""

    @register_to_config
    def __init__(self, dim: int = 2, hidden_size: int = 64, num_layers: int = 3):
        super().__init__()
        layers, width = [], dim + 1
        for _ in range(num_layers):
            layers += [torch.nn.Linear(width, hidden_size), torch.nn.SiLU()]
            width = hidden_size
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, dim))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        timestep = timestep.to(sample.dtype).reshape(-1, 1).expand(sample.shape[0], 1)
        return self.net(torch.cat([sample, timestep], dim=-1))
