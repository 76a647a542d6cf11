"""CROSSAN: side adapters for any number of modality encoders, with Mixture of Modality Expert Fusion.

CROSSAN (arXiv 2504.10307) adapts more than two frozen foundation models (text, image, video, audio)
with fully decoupled side adapters and fuses them with MoMEF. No official code exists; this is a
**reconstruction** on IISAN's building blocks (arXiv 2404.02059), labelled as such:

    s_m   = intra-SAN_m(h_m)                                   one decoupled side adapter per modality
    u     = cross-SAN(h_1..h_M)   u_k = SANB_k(u_{k-1} + sum_m a_m^k DTL_m^k(h_m[k]))   a^k = softmax_m(w^k / tau)
    z_j   = expert_j(s_j)  for j = 1..M,   z_x = expert_x(u)                       modality experts + a cross expert
    r     = softmax_j(router_j(z_j))  over the experts the item has              MoMEF router, inspectable per item
    e_item = sum_j r_j z_j

The cross-modal SAN generalises IISAN's inter-modal SAN to M modalities with one network (IISAN's
two-modality sigmoid gate is its M = 2 case), so the side network grows linearly in M instead of
with the M(M-1)/2 pairs of IISAN-style pairwise adaptation. Every modality owns its parameters
(intra SAN, expert, router, its gate logits and DTLs in the cross SAN): adding a modality adds
exactly those. An item that lacks a modality still gets an embedding: the cross SAN's gates and the
router renormalise over the modalities it has.

Baselines in the same class: ``cross_modal="pairwise"`` (one IISAN inter-modal SAN per pair) with
``fusion="concat"`` (IISAN's ``com_dense``) is IISAN-style pairwise adaptation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import nn

from hfgen.adapters.side_adapter.config import SideAdapterConfig
from hfgen.adapters.side_adapter.layer import GatedSideNetwork, MixtureSideNetwork, iisan_head
from hfgen.adapters.side_adapter.model import SideAdapterModel, SideAdapterOutput


@dataclass
class CROSSANConfig(SideAdapterConfig):
    """Configuration of [`CROSSANModel`]."""

    modalities: list[str] = field(default_factory=lambda: ["text", "image", "audio", "video"],
                                  metadata={"help": "Names of the modality encoders (any number >= 1)."})
    layers: object = field(default="group:3", metadata={"help": "Kept layers per encoder; 'group:G' gives every "
                                                                "encoder G + 1 side blocks whatever its depth."})
    cross_modal: str = field(default="shared", metadata={"help": "'shared' (one cross-modal SAN over all modalities, "
                                                                 "CROSSAN), 'pairwise' (one per pair, IISAN-style) "
                                                                 "or 'none'."})
    cross_dim: int | None = field(default=None, metadata={"help": "Width of the cross-modal SAN (default: the "
                                                                  "narrowest encoder)."})
    fusion: str = field(default="momef", metadata={"help": "'momef' (mixture of modality experts) or 'concat' "
                                                           "(IISAN's concatenation and linear layer)."})

    hfgen_adapter_type = "CROSSANModel"
    peft_type = "CROSSAN"

    def __post_init__(self):
        super().__post_init__()
        if self.cross_modal not in ("shared", "pairwise", "none"):
            raise ValueError(f"`cross_modal` must be 'shared', 'pairwise' or 'none', got {self.cross_modal!r}.")
        if self.fusion not in ("momef", "concat"):
            raise ValueError(f"`fusion` must be 'momef' or 'concat', got {self.fusion!r}.")
        if self.cross_dim is not None and self.cross_dim < 1:
            raise ValueError(f"`cross_dim` must be a positive integer or None, got {self.cross_dim!r}.")


class CROSSANModel(SideAdapterModel):
    """CROSSAN side adapter over N frozen modality encoders, with MoMEF fusion (reconstruction).

    Args:
        config: a [`CROSSANConfig`].
        backbones: ``{"text": BertModel, "image": ViTModel, "audio": ASTModel, "video": VideoMAEModel, ...}``.

    ``forward(...)`` returns [`SideAdapterOutput`] with ``router_weights`` ``[N, E]`` over the experts
    ``expert_names`` (the modalities, then ``"cross"``).
    """

    config_class = CROSSANConfig
    method_name = "crossan"
    supports_missing_modalities = True

    def __init__(self, config: CROSSANConfig, backbones: dict[str, nn.Module] | None = None):
        super().__init__(config, backbones)
        c, e = config, config.embedding_dim
        dims = {m: c.hidden_sizes[m] for m in c.modalities}
        depth = {m: len(self.layer_indices[m]) for m in c.modalities}
        self.intra = nn.ModuleDict({m: GatedSideNetwork(dims[m], c.bottleneck_size, depth[m], c.gate_temperature,
                                                        c.activation) for m in c.modalities})
        self.experts = nn.ModuleDict({m: iisan_head(dims[m], e, "versa") for m in c.modalities})
        self.cross = nn.ModuleDict()
        if len(c.modalities) > 1 and c.cross_modal == "shared":
            width = c.cross_dim or min(dims.values())
            self.cross["cross"] = MixtureSideNetwork(dims, width, c.bottleneck_size, min(depth.values()),
                                                     c.gate_temperature, c.activation)
            self.experts["cross"] = iisan_head(width, e, "iisan")
        elif len(c.modalities) > 1 and c.cross_modal == "pairwise":
            for a, b in combinations(c.modalities, 2):
                name = f"{a}+{b}"
                width = min(dims[a], dims[b])
                self.cross[name] = MixtureSideNetwork({a: dims[a], b: dims[b]}, width, c.bottleneck_size,
                                                      min(depth[a], depth[b]), c.gate_temperature, c.activation,
                                                      reference_modality=True)
                self.experts[name] = iisan_head(width, e, "iisan")
        self.expert_names = list(self.experts)
        if c.fusion == "momef":
            self.router = nn.ModuleDict({j: nn.Linear(e, 1) for j in self.expert_names})
        else:
            self.fuse = nn.Linear(len(self.expert_names) * e, e)

    def embed(self, states: dict[str, torch.Tensor], available: torch.Tensor | None = None) -> SideAdapterOutput:
        modalities = self.config.modalities
        n = next(iter(states.values())).shape[0]
        if available is None:
            available = torch.ones(n, len(modalities), dtype=torch.bool, device=self.device)
        full = {m: states[m] if m in states else
                torch.zeros(n, len(self.layer_indices[m]), self.config.hidden_sizes[m], device=self.device)
                for m in modalities}
        has = {m: available[:, i] for i, m in enumerate(modalities)}
        z, mask = {}, {}
        for m in modalities:
            z[m], mask[m] = self.experts[m](self.intra[m](full[m])), has[m]
        for name, san in self.cross.items():
            sub = torch.stack([has[m] for m in san.modalities], -1)
            z[name] = self.experts[name](san({m: full[m] for m in san.modalities}, sub))
            mask[name] = sub.any(-1)
        experts = torch.stack([z[j] for j in self.expert_names], 1)  # [N, E, e]
        present = torch.stack([mask[j] for j in self.expert_names], 1)  # [N, E]
        if self.config.fusion == "concat":
            return SideAdapterOutput(item_embeddings=self.fuse((experts * present[..., None]).flatten(1)))
        logits = torch.cat([self.router[j](z[j]) for j in self.expert_names], -1)  # MoMEF router, [N, E]
        weights = logits.masked_fill(~present, float("-inf")).softmax(-1)
        return SideAdapterOutput(item_embeddings=(weights[..., None] * experts).sum(1), router_weights=weights)
