"""The side network's parts: which backbone layers it reads, how it pools them, and its blocks.

- [`select_layers`]: which ``hidden_states`` the side network reads (IISAN's LayerDrop, IISAN-Versa's group
  layer-dropping, or an explicit list); [`pool_hidden_states`]: the CLS vector or the masked token mean of each;
- [`SANB`], [`GatedSideNetwork`] (the intra-modal SAN with learnable gates) and [`MixtureSideNetwork`] (the
  inter-modal SAN over any number of modalities, with the dimension-transformation layers of IISAN-Versa);
  [`iisan_head`], the projection to the item-embedding width.
"""

from __future__ import annotations

import torch
from torch import nn


def select_layers(num_layers: int, layers: str | list[int]) -> list[int]:
    """Indices into ``hidden_states`` (0 = embedding output, ``l`` = output of layer ``l``) kept by the side net.

    - ``"every:S"``: IISAN's LayerDrop, the embedding output and every S-th layer ending at the last
      (``"every:2"`` on 12 layers gives ``[0, 2, 4, ..., 12]``, the official 7 side blocks);
    - ``"group:G"``: IISAN-Versa's group layer-dropping, the embedding output plus G layers, one per
      group, evenly spaced and ending at the last layer whatever the depth: with 0-based layer ids
      ``s = floor((L-1)/(G-1))``, ``id_k = (L-1) - (G-1-k) s`` (reproduces every official config);
    - ``"all"``; ``"last"`` (only the final layer, the frozen-feature baseline);
    - a list of ``hidden_states`` indices.
    """
    if isinstance(layers, (list, tuple)):
        idx = [int(i) for i in layers]
        if not idx or any(i < 0 or i > num_layers for i in idx) or idx != sorted(set(idx)):
            raise ValueError(f"`layers` {idx} must be increasing hidden_states indices in [0, {num_layers}].")
        return idx
    kind, _, arg = str(layers).partition(":")
    if kind == "all":
        return list(range(num_layers + 1))
    if kind == "last":
        return [num_layers]
    if kind in ("every", "group") and arg.isdigit() and int(arg) >= 1:
        n = int(arg)
        if kind == "every":
            return [0] + list(range(num_layers % n or n, num_layers + 1, n))
        if n > num_layers:
            raise ValueError(f"`layers`='group:{n}' needs at least {n} layers, the encoder has {num_layers}.")
        step = (num_layers - 1) // (n - 1) if n > 1 else 0
        return [0] + [(num_layers - 1) - (n - 1 - k) * step + 1 for k in range(n)]
    raise ValueError(f"`layers` must be 'every:S', 'group:G', 'all', 'last' or a list of indices, got {layers!r}.")


def pool_hidden_states(hidden_states, indices: list[int], pooling: str, attention_mask=None) -> torch.Tensor:
    """Stack one vector per kept layer: ``[N, K, d]``, the first token (``"cls"``) or the masked token mean."""
    if hidden_states is None:
        raise ValueError("The backbone returned no hidden_states; a side adapter needs an encoder that supports "
                         "output_hidden_states=True.")
    if max(indices) >= len(hidden_states):
        raise ValueError(f"Kept layers {indices} do not exist: the backbone returned {len(hidden_states)} hidden states.")
    states = torch.stack([hidden_states[i] for i in indices], dim=1)  # [N, K, T, d]
    if pooling == "cls":
        return states[:, :, 0]
    if attention_mask is None:
        return states.mean(2)
    w = attention_mask[:, None, :, None].to(states.dtype)  # masked mean (the official LLM cache averages padding too)
    return (states * w).sum(2) / w.sum(2).clamp_min(1.0)


class SANB(nn.Module):
    """Side adapted network block (IISAN Eq. 1): ``x + W_up act(W_down x + b_down) + b_up``, bottleneck ``r``.

    Weights start at N(0, 0.01) and biases at 0, as in the official code, so a block starts near identity.
    """

    def __init__(self, dim: int, bottleneck: int, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        for lin in (self.down, self.up):
            nn.init.normal_(lin.weight, std=0.01)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class GatedSideNetwork(nn.Module):
    """Intra-modal SAN (IISAN §3.2): a chain of K SANBs over the K kept layer states of one encoder.

        s^0 = 0,   g^k = sigmoid(w^k / tau),   s^k = SANB^k(g^k h_k + (1 - g^k) s^{k-1})

    with one scalar gate per block, ``w^k = 0`` at init (so ``g = 0.5``). ``fusion="add"`` is the
    paper's ablation ``s^k = SANB^k(h_k + s^{k-1})``.
    """

    def __init__(self, dim: int, bottleneck: int, num_blocks: int, temperature: float = 0.1,
                 activation: str = "relu", fusion: str = "gate"):
        super().__init__()
        self.blocks = nn.ModuleList(SANB(dim, bottleneck, activation) for _ in range(num_blocks))
        self.gate_logits = nn.Parameter(torch.zeros(num_blocks)) if fusion == "gate" else None
        self.temperature = temperature

    @property
    def gates(self) -> torch.Tensor:
        return torch.sigmoid(self.gate_logits / self.temperature)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: [N, K, d] -> [N, d]
        s = torch.zeros_like(h[:, 0])
        for k, block in enumerate(self.blocks):
            x = h[:, k] + s if self.gate_logits is None else self.gates[k] * h[:, k] + (1 - self.gates[k]) * s
            s = block(x)
        return s


class MixtureSideNetwork(nn.Module):
    """Inter-modal SAN over M >= 2 modalities, top-aligned to the last K states of each encoder.

        x_m^k = DTL_m^k(h_m[-K + k])                 # IISAN-Versa's Linear(d_m -> d) where d_m != d
        a^k   = softmax_m(w_m^k / tau)               # renormalised over the modalities an item has
        u^0 = 0,  u^k = SANB^k(u^{k-1} + sum_m a_m^k x_m^k)

    With two modalities and the first logit fixed at 0 (``reference_modality=True``) this is exactly
    IISAN's ``u^k = SANB(u^{k-1} + a h_img + (1 - a) h_text)``, ``a = sigmoid(w / tau)``: one scalar
    gate per block. CROSSAN gives every modality its own logits, so a modality brings its own gate.
    """

    def __init__(self, dims: dict[str, int], dim: int, bottleneck: int, num_blocks: int,
                 temperature: float = 0.1, activation: str = "relu", reference_modality: bool = False):
        super().__init__()
        self.modalities = list(dims)
        self.reference = self.modalities[0] if reference_modality else None
        self.gate_logits = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(num_blocks)) for m in self.modalities if m != self.reference})
        self.dtl = nn.ModuleDict({m: nn.ModuleList(nn.Linear(d_m, dim) for _ in range(num_blocks))
                                  for m, d_m in dims.items() if d_m != dim})
        self.blocks = nn.ModuleList(SANB(dim, bottleneck, activation) for _ in range(num_blocks))
        self.temperature = temperature
        self.num_blocks = num_blocks

    def mixing_weights(self, available: torch.Tensor | None = None) -> torch.Tensor:
        """``a`` as ``[K, M]``, or ``[N, K, M]`` renormalised over the modalities each item has."""
        logits = torch.stack([self.gate_logits[m] if m in self.gate_logits else
                              torch.zeros_like(next(iter(self.gate_logits.values()))) for m in self.modalities], -1)
        logits = logits / self.temperature
        if available is None:
            return logits.softmax(-1)
        # an item with none of these modalities mixes nothing (all weights 0, not NaN)
        return logits[None].masked_fill(~available[:, None, :], float("-inf")).softmax(-1).nan_to_num(0.0)

    def forward(self, states: dict[str, torch.Tensor], available: torch.Tensor | None = None) -> torch.Tensor:
        K = self.num_blocks
        a = self.mixing_weights(available)  # [K, M] or [N, K, M]
        u = None
        for k, block in enumerate(self.blocks):
            x = 0
            for j, m in enumerate(self.modalities):
                x_m = states[m][:, states[m].shape[1] - K + k].float()
                if m in self.dtl:
                    x_m = self.dtl[m][k](x_m)
                w = a[k, j] if a.dim() == 2 else a[:, k, j, None]
                x = x + w * x_m
            u = block(x if u is None else u + x)
        return u


def iisan_head(dim: int, embedding_dim: int, kind: str = "iisan") -> nn.Sequential:
    """Projection of a SAN output to the item-embedding width (no nonlinearity, as in the official heads).

    ``"iisan"``: ``Linear(d, d) -> Linear(d, e)`` (``fc_bert`` then ``Text_Encoder.fc``);
    ``"versa"``: ``Linear(d, e) -> Linear(e, e)`` (IISAN-Versa, where ``d`` may be an LLM's 8192).
    """
    mid = dim if kind == "iisan" else embedding_dim
    head = nn.Sequential(nn.Linear(dim, mid), nn.Linear(mid, embedding_dim))
    for lin in head:
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
    return head
