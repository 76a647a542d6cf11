"""The baselines of the IISAN papers, in the same code path as the side adapters.

Each item embedding reads only the last layer of each encoder, as the official baselines do
(``com_dense([GELU(fc_img(CLS_last)); GELU(fc_text(CLS_last))])``), and the backbones are

- ``tuning="frozen"``: frozen (no gradient, states cacheable: "frozen features");
- ``tuning="full"``: fully fine-tuned (FFT);
- ``tuning="lora"``: frozen with LoRA on the attention query and value projections (peft).

Same item table, cache, recommender, loss and evaluation as [`~hfgen.adapters.IISANModel`],
so the comparison is honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hfgen.adapters.side_adapter import SideAdapterConfig, SideAdapterModel, SideAdapterOutput

TUNINGS = ("frozen", "full", "lora")


@dataclass
class BackboneItemEncoderConfig(SideAdapterConfig):
    """Configuration of [`BackboneItemEncoder`]."""

    layers: object = field(default="last", metadata={"help": "Kept layers; the baselines read the last layer only."})
    tuning: str = field(default="frozen", metadata={"help": "'frozen', 'full' (fine-tune the backbones) or 'lora'."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (tuning='lora')."})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA alpha (tuning='lora')."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value", "q_proj", "v_proj"],
                                           metadata={"help": "Attention query/value projections LoRA adapts (BERT and ViT names)."})

    hfgen_adapter_type = "BackboneItemEncoder"
    peft_type = "BACKBONE_BASELINE"

    def __post_init__(self):
        super().__post_init__()
        if self.tuning not in TUNINGS:
            raise ValueError(f"`tuning` must be one of {TUNINGS}, got {self.tuning!r}.")
        if self.lora_r < 1:
            raise ValueError(f"`lora_r` must be >= 1, got {self.lora_r}.")


class BackboneItemEncoder(SideAdapterModel):
    """Item encoder of the baselines: last-layer features of frozen, fully fine-tuned or LoRA-tuned backbones."""

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
        e = config.embedding_dim
        self.proj = nn.ModuleDict({m: nn.Linear(config.hidden_sizes[m], e) for m in config.modalities})
        self.fuse = nn.Linear(len(config.modalities) * e, e)
        for lin in [*self.proj.values(), self.fuse]:
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)

    def embed(self, states: dict[str, torch.Tensor], available: torch.Tensor | None = None) -> SideAdapterOutput:
        parts = [nn.functional.gelu(self.proj[m](states[m][:, -1])) for m in self.config.modalities]
        return SideAdapterOutput(item_embeddings=self.fuse(torch.cat(parts, -1)))
