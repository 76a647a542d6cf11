"""The baselines of the IISAN papers, in the same code path as the side adapters.

Each item embedding reads only the last layer of each encoder, as the official baselines do
(``com_dense([GELU(fc_img(CLS_last)); GELU(fc_text(CLS_last))])``), and the backbones are

- ``tuning="frozen"``: frozen (no gradient, states cacheable: "frozen features");
- ``tuning="full"``: fully fine-tuned (FFT);
- ``tuning="lora"``: frozen with LoRA on the attention query and value projections (peft);
- ``tuning="adapter"``: frozen with Houlsby et al.'s (2019) bottleneck adapters after the attention output and the
  feed-forward output projections of every layer (``y + W_up GELU(W_down y)``, ``W_up`` zero-initialised so training
  starts at the frozen model; the layer norms stay frozen).

Same item table, cache, recommender, loss and evaluation as [`~hfgen.adapters.IISANModel`],
so the comparison is honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hfgen.adapters.side_adapter import SideAdapterConfig, SideAdapterModel, SideAdapterOutput

TUNINGS = ("frozen", "full", "lora", "adapter")


@dataclass
class BackboneItemEncoderConfig(SideAdapterConfig):
    """Configuration of [`BackboneItemEncoder`]."""

    layers: object = field(default="last", metadata={"help": "Kept layers; the baselines read the last layer only."})
    tuning: str = field(default="frozen",
                        metadata={"help": "'frozen', 'full' (fine-tune the backbones), 'lora' or 'adapter'."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (tuning='lora')."})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA alpha (tuning='lora')."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value", "q_proj", "v_proj"],
                                           metadata={"help": "Attention query/value projections LoRA adapts (BERT and ViT names)."})
    adapter_size: int = field(default=64, metadata={"help": "Bottleneck width of the adapters (tuning='adapter')."})
    adapter_target_modules: list[str] = field(
        default_factory=lambda: ["output.dense", "o_proj", "out_proj", "fc2"],
        metadata={"help": "Name suffixes of the projections an adapter follows: the attention and FFN outputs (BERT "
                          "'output.dense'; ViT/CLIP 'o_proj'/'out_proj' and 'fc2')."})

    hfgen_adapter_type = "BackboneItemEncoder"
    peft_type = "BACKBONE_BASELINE"

    def __post_init__(self):
        super().__post_init__()
        if self.tuning not in TUNINGS:
            raise ValueError(f"`tuning` must be one of {TUNINGS}, got {self.tuning!r}.")
        if self.lora_r < 1:
            raise ValueError(f"`lora_r` must be >= 1, got {self.lora_r}.")
        if self.adapter_size < 1:
            raise ValueError(f"`adapter_size` must be >= 1, got {self.adapter_size}.")


class BottleneckAdapter(nn.Module):
    """``y + W_up GELU(W_down y)`` (Houlsby et al., 2019): near-identity initialisation (``W_down ~ N(0, 0.01^2)``,
    ``W_up = 0``, zero biases), so training starts at the frozen model."""

    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.down, self.up = nn.Linear(dim, bottleneck), nn.Linear(bottleneck, dim)
        nn.init.normal_(self.down.weight, std=0.01)
        for tensor in (self.down.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(tensor)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.up(nn.functional.gelu(self.down(y)))


def _through_adapter(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return module.adapter(output)


def add_bottleneck_adapters(backbone: nn.Module, size: int, target_suffixes) -> int:
    """Freeze ``backbone`` and put a trainable [`BottleneckAdapter`] after every ``nn.Linear`` whose name ends with
    one of ``target_suffixes`` (a submodule ``adapter`` of it, applied by a forward hook); returns how many."""
    backbone.requires_grad_(False)
    targets = [m for name, m in backbone.named_modules()
               if isinstance(m, nn.Linear) and any(name.endswith(suffix) for suffix in target_suffixes)]
    if not targets:
        raise ValueError(f"No nn.Linear in the backbone ends with one of `adapter_target_modules` {list(target_suffixes)}.")
    for linear in targets:
        linear.add_module("adapter", BottleneckAdapter(linear.out_features, size))
        linear.register_forward_hook(_through_adapter)
    return len(targets)


class BackboneItemEncoder(SideAdapterModel):
    """Item encoder of the baselines: last-layer features of frozen, fully fine-tuned, LoRA- or adapter-tuned
    backbones."""

    config_class = BackboneItemEncoderConfig
    method_name = "iisan"

    def __init__(self, config: BackboneItemEncoderConfig, backbones: dict[str, nn.Module] | None = None):
        self.frozen_backbones = config.tuning == "frozen"
        super().__init__(config, backbones)
        if config.tuning == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                              target_modules=list(config.lora_target_modules))
            for bb in self.backbones.values():
                bb.requires_grad_(False)
                inject_adapter_in_model(lora, bb)  # adds trainable lora_A / lora_B next to the frozen weights
        if config.tuning == "adapter":
            for bb in self.backbones.values():
                add_bottleneck_adapters(bb, config.adapter_size, config.adapter_target_modules)
        e = config.embedding_dim
        self.proj = nn.ModuleDict({m: nn.Linear(config.hidden_sizes[m], e) for m in config.modalities})
        self.fuse = nn.Linear(len(config.modalities) * e, e)
        for lin in [*self.proj.values(), self.fuse]:
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)

    def embed(self, states: dict[str, torch.Tensor], available: torch.Tensor | None = None) -> SideAdapterOutput:
        parts = [nn.functional.gelu(self.proj[m](states[m][:, -1])) for m in self.config.modalities]
        return SideAdapterOutput(item_embeddings=self.fuse(torch.cat(parts, -1)))
