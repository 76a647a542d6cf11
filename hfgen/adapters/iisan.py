"""IISAN and IISAN-Versa: intra- and inter-modal side adapted networks (arXiv 2404.02059, 2411.02992).

For an item with text and image, the frozen encoders give kept-layer states ``h_text [K_t, d_t]``
and ``h_img [K_i, d_i]`` (one pooled vector per kept layer). Three side networks read them:

    s_text = intra-SAN_text(h_text)          s_k = SANB_k(g_k h_k + (1 - g_k) s_{k-1})      (Eq. 2-3)
    s_img  = intra-SAN_img(h_img)
    u      = inter-SAN(h_text, h_img)        u_k = SANB_k(u_{k-1} + a_k h_img + (1 - a_k) h_text)  (Eq. 4)
    e_item = W_fuse [head_text(s_text); head_img(s_img); head_mm(u)]                            (Eq. 5)

IISAN-Versa (asymmetric encoders, e.g. a wide text encoder with a narrow ViT of another depth):
layers are chosen per encoder by group layer-dropping (``layers="group:G"``), the inter-modal path
maps the wider encoder's states to the narrower width with one ``Linear`` per block (the DTL), and
stacks of different lengths are top-aligned (the deeper encoder's extra lower blocks are intra-only).
With a single modality (e.g. titles only) the model is the intra-modal SAN and its head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hfgen.adapters.side_adapter.config import SideAdapterConfig
from hfgen.adapters.side_adapter.layer import GatedSideNetwork, MixtureSideNetwork, iisan_head
from hfgen.adapters.side_adapter.model import SideAdapterModel, SideAdapterOutput


@dataclass
class IISANConfig(SideAdapterConfig):
    """Configuration of [`IISANModel`] (official defaults: 7 blocks of SANB(d, 64), tau = 0.1, e = 64)."""

    fusion: str = field(default="gate", metadata={"help": "How a SAN block mixes layer state and previous block: "
                                                          "'gate' (learnable sigmoid gates) or 'add'."})
    head: str = field(default="iisan", metadata={"help": "Intra-modal head: 'iisan' Linear(d,d)->Linear(d,e) or "
                                                         "'versa' Linear(d,e)->Linear(e,e) (for very wide encoders)."})
    inter_modal: bool = field(default=True, metadata={"help": "Use the inter-modal SAN (needs two modalities)."})

    hfgen_adapter_type = "IISANModel"
    peft_type = "IISAN"

    def __post_init__(self):
        super().__post_init__()
        if len(self.modalities) > 2:
            raise ValueError(f"IISAN adapts one or two encoders, `modalities` has {len(self.modalities)}; "
                             "use CROSSANConfig for more.")
        if self.fusion not in ("gate", "add"):
            raise ValueError(f"`fusion` must be 'gate' or 'add', got {self.fusion!r}.")
        if self.head not in ("iisan", "versa"):
            raise ValueError(f"`head` must be 'iisan' or 'versa', got {self.head!r}.")


class IISANModel(SideAdapterModel):
    """IISAN / IISAN-Versa side adapter over frozen encoders; outputs item embeddings.

    Args:
        config: an [`IISANConfig`].
        backbones: ``{"text": BertModel, "image": ViTModel}`` (any transformers encoders returning
            ``hidden_states``); may be omitted when the model only reads cached states.

    Example::

        adapter = IISANModel(IISANConfig(modalities=["text", "image"]), {"text": bert, "image": vit})
        adapter.set_item_inputs({"text": {"input_ids": ids, "attention_mask": mask}, "image": {"pixel_values": px}})
        adapter.cache_hidden_states()            # optional: the backbones never run again
        emb = adapter(item_ids=torch.tensor([3, 7])).item_embeddings   # [2, 64]
    """

    config_class = IISANConfig
    method_name = "iisan"

    def __init__(self, config: IISANConfig, backbones: dict[str, nn.Module] | None = None):
        super().__init__(config, backbones)
        c, dims = config, {m: config.hidden_sizes[m] for m in config.modalities}
        self.intra = nn.ModuleDict({
            m: GatedSideNetwork(dims[m], c.bottleneck_size, len(self.layer_indices[m]), c.gate_temperature,
                                c.activation, c.fusion) for m in c.modalities})
        self.heads = nn.ModuleDict({m: iisan_head(dims[m], c.embedding_dim, c.head) for m in c.modalities})
        branches = len(c.modalities)
        self.inter = None
        if c.inter_modal and len(c.modalities) == 2:
            width = min(dims.values())  # IISAN-Versa: the inter path runs at the narrower width
            depth = min(len(self.layer_indices[m]) for m in c.modalities)  # top-aligned stacks
            self.inter = MixtureSideNetwork(dims, width, c.bottleneck_size, depth, c.gate_temperature,
                                            c.activation, reference_modality=True)
            self.inter_head = iisan_head(width, c.embedding_dim, "iisan")
            branches += 1
        self.fuse = nn.Linear(branches * c.embedding_dim, c.embedding_dim)  # com_dense
        nn.init.xavier_normal_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def embed(self, states: dict[str, torch.Tensor], available: torch.Tensor | None = None) -> SideAdapterOutput:
        parts = [self.heads[m](self.intra[m](states[m])) for m in self.config.modalities]
        if self.inter is not None:
            parts.append(self.inter_head(self.inter(states)))
        return SideAdapterOutput(item_embeddings=self.fuse(torch.cat(parts, -1)))
