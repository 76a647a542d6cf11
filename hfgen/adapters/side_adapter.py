"""Shared building blocks of hfgen's decoupled side adapters (IISAN, IISAN-Versa, CROSSAN).

A side adapter never touches its backbones: each frozen encoder runs once per item (no gradient,
eval mode), one pooled vector is read from each kept layer, and a small trainable side network
turns those ``[K, d]`` states into an item embedding. Because the states depend on the item alone,
they can be computed once and cached ([`SideAdapterModel.cache_hidden_states`]); training then
never runs a backbone.

What lives here, written once for every side-adapter method:

- [`select_layers`]: which ``hidden_states`` the side network reads (IISAN's LayerDrop,
  IISAN-Versa's group layer-dropping, or an explicit list);
- [`pool_hidden_states`]: the CLS vector or the masked token mean of each kept layer;
- [`SANB`], [`GatedSideNetwork`] (the intra-modal SAN with learnable gates) and
  [`MixtureSideNetwork`] (the inter-modal SAN over any number of modalities, with the
  dimension-transformation layers of IISAN-Versa);
- [`SideAdapterConfig`] / [`SideAdapterModel`]: a PEFT-style folder (see below), item
  tables, the hidden-state cache, ``save_pretrained`` / ``from_pretrained`` /
  ``print_trainable_parameters`` / ``push_to_hub``.

Files: PEFT-style, not PEFT format. A saved adapter is ``adapter_config.json`` +
``adapter_model.safetensors`` (+ ``README.md``), PEFT's file names and JSON layout
(``base_model_name_or_path``, a string: the Hub id or local folder of the first backbone; ``inference_mode``), but a
side network is not a PEFT method (PEFT 0.21's ``PeftType`` enum is closed to third parties), so:

- what works with PEFT / Hub tools: reading the JSON and the safetensors file as data
  (``json.load``, ``safetensors.safe_open``), ``huggingface_hub`` upload / download / snapshot of
  the folder, and hfgen's loaders (``hfgen.load(path)``, ``IISANModel.from_pretrained(path, backbones)``);
- what does not: ``PeftConfig.from_pretrained``, ``PeftModel.from_pretrained``,
  ``AutoPeftModel*.from_pretrained`` and transformers' ``model.load_adapter`` all raise ``KeyError``
  whose text is the file's ``peft_type``, ``"HFGEN_<METHOD>: an hfgen side adapter, not a PEFT
  method; PEFT cannot load it. Load it with hfgen.load(path) or ...from_pretrained(path, backbones)"``
  (tested in ``tests/test_side_adapter_io.py``); ``get_peft_model`` / ``merge_and_unload`` have no
  meaning for a side network (it adds no weights inside the backbone).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers.utils import ModelOutput

from hfgen.validation import check_numeric_fields

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
POOLINGS = ("cls", "mean")


# --------------------------------------------------------------------------- layer selection


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


#: Config keys that a dtype / quantisation / location change alters but that do not change the encoder.
_VOLATILE_CONFIG_KEYS = ("dtype", "torch_dtype", "quantization_config", "_name_or_path", "transformers_version",
                         "_attn_implementation", "_attn_implementation_autoset", "_commit_hash", "architectures",
                         "use_cache", "output_hidden_states", "return_dict")


def _config_without_volatile_keys(config) -> dict:
    def clean(d):
        return {k: clean(v) if isinstance(v, dict) else v for k, v in d.items() if k not in _VOLATILE_CONFIG_KEYS}

    return clean(config.to_dict())


def encoder_fingerprint(backbone: nn.Module, strict: bool = False) -> str:
    """A short digest that identifies a backbone, so that a cache or adapter built on another encoder is refused.

    - default (``"structure:..."``): the config (without dtype, quantisation, path and version fields), the
      parameter and buffer names and, for unquantised models, their shapes. It reads no weight, so it
      costs nothing for a 70B encoder, and the same backbone loaded in bf16 / fp16 / quantised is
      accepted. It does not tell two checkpoints of the same architecture apart (e.g. two fine-tunes).
    - ``strict=True`` (``"weights:..."``): also every weight byte in its stored dtype: a changed
      checkpoint is refused, and so is a dtype change (minutes for a very large encoder).
    """
    if not hasattr(backbone, "config"):
        raise ValueError(f"A side adapter's backbone must be a transformers model with a `config`, got "
                         f"{type(backbone).__name__}.")
    h = hashlib.sha256(json.dumps(_config_without_volatile_keys(backbone.config), sort_keys=True, default=str).encode())
    quantized = getattr(backbone, "hf_quantizer", None) is not None or hasattr(backbone.config, "quantization_config")
    for name, t in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        if not quantized:
            h.update(str(tuple(t.shape)).encode())
        if strict:
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return ("weights:" if strict else "structure:") + h.hexdigest()[:16]


def _legacy_fingerprint(backbone: nn.Module) -> str:
    """The fingerprint of adapters saved before hfgen 0.1 recorded its kind (config JSON + every weight byte)."""
    h = hashlib.sha256(backbone.config.to_json_string(use_diff=False).encode())
    for name, t in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint_like(backbone: nn.Module, recorded: str | None, strict: bool = False) -> str:
    """The backbone's fingerprint of the same kind as ``recorded`` (so an adapter saved in strict mode is checked
    strictly); a new one of the configured kind when nothing was recorded."""
    if recorded is None:
        return encoder_fingerprint(backbone, strict)
    if recorded.startswith(("structure:", "weights:")):
        return encoder_fingerprint(backbone, recorded.startswith("weights:"))
    return _legacy_fingerprint(backbone)


def hub_id_of(backbone: nn.Module) -> str:
    """The backbone's Hub id if its config names one (never a local path), else its class name."""
    name = getattr(getattr(backbone, "config", None), "_name_or_path", "") or ""
    if name and not os.path.isabs(name) and not os.path.exists(name) and "\\" not in name and name.count("/") <= 1:
        return name
    return type(backbone).__name__


def backbone_source(backbone: nn.Module) -> str:
    """Where the backbone can be loaded from: its Hub id, or its local folder (absolute); ``""`` if it was built
    from a config (no id, no folder)."""
    name = getattr(getattr(backbone, "config", None), "_name_or_path", "") or ""
    if name and os.path.isdir(name):
        return os.path.abspath(name)
    return name if hub_id_of(backbone) == name else ""


# --------------------------------------------------------------------------------- side blocks


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


# ------------------------------------------------------------------------------ config & model


def peft_type_message(method: str, adapter_class: str, loader_args: str = "path, backbones") -> str:
    """The ``peft_type`` written by hfgen side adapters: readable as an error message when PEFT looks it up."""
    return (f"HFGEN_{method}: an hfgen side adapter, not a PEFT method; PEFT cannot load it. Load it with "
            f"hfgen.load(path) or hfgen.adapters.{adapter_class}.from_pretrained({loader_args})")


class AdapterConfigMixin:
    """PEFT-style config I/O for a dataclass config: ``adapter_config.json`` with ``peft_type`` and
    ``hfgen_adapter_type`` (the adapter class name that ``hfgen.load`` dispatches on)."""

    peft_type: str
    hfgen_adapter_type: str
    hfgen_loader_args = "path, backbones"  # the arguments of the adapter's from_pretrained, for the message

    def to_dict(self) -> dict:
        """The ``adapter_config.json`` content. ``peft_type`` is deliberately not a PEFT method name: PEFT's own
        loaders (``PeftConfig.from_pretrained``, ``PeftModel.from_pretrained``, ``AutoPeftModel...``,
        transformers' ``load_adapter``) then fail with ``KeyError`` showing this text, which names hfgen and
        the call that loads the file."""
        return {**dataclasses.asdict(self), "hfgen_adapter_type": self.hfgen_adapter_type,
                "peft_type": peft_type_message(self.peft_type, self.hfgen_adapter_type, self.hfgen_loader_args)}

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        with open(Path(save_directory) / CONFIG_NAME, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs):
        with open(Path(path) / CONFIG_NAME, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("hfgen_adapter_type") != cls.hfgen_adapter_type:
            raise ValueError(f"{path} holds a {data.get('hfgen_adapter_type')!r} adapter, not {cls.hfgen_adapter_type!r}.")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in {**data, **kwargs}.items() if k in names})


@dataclass
class SideAdapterConfig(AdapterConfigMixin):
    """Fields shared by every hfgen side adapter; saved as a PEFT-style ``adapter_config.json`` (PEFT's own
    loaders refuse it with a message naming hfgen; see the module docstring).

    Per-modality options (``layers``, ``pooling``) take one value for all encoders or a dict keyed
    by modality. ``hidden_sizes``, ``num_hidden_layers``, ``encoder_fingerprints`` and
    ``base_model_name_or_path`` are filled from the backbones when the model is built.
    """

    modalities: list[str] = field(default_factory=lambda: ["text", "image"],
                                  metadata={"help": "Names of the modality encoders, e.g. ['text', 'image']."})
    layers: Any = field(default="every:2", metadata={"help": "Kept layers: 'every:S', 'group:G', 'all', 'last', "
                                                             "a list of hidden_states indices, or a dict per modality."})
    pooling: Any = field(default="cls", metadata={"help": "'cls' (first token) or 'mean' (masked token mean), "
                                                          "or a dict per modality."})
    embedding_dim: int = field(default=64, metadata={"help": "Width of the item embedding fed to the recommender."})
    bottleneck_size: int = field(default=64, metadata={"help": "SANB bottleneck r."})
    gate_temperature: float = field(default=0.1, metadata={"help": "tau in g = sigmoid(w / tau)."})
    activation: str = field(default="relu", metadata={"help": "SANB activation: 'relu' or 'gelu'."})
    hidden_sizes: dict | None = field(default=None, metadata={"help": "Encoder widths (filled from the backbones)."})
    num_hidden_layers: dict | None = field(default=None, metadata={"help": "Encoder depths (filled from the backbones)."})
    encoder_fingerprints: dict | None = field(default=None, metadata={
        "help": "Fingerprint of each backbone (see `encoder_fingerprint`), filled when the model is built."})
    strict_fingerprint: bool = field(default=False, metadata={
        "help": "Fingerprint backbones by every weight byte (refuses a dtype change; slow for huge encoders) instead "
                "of config + parameter names + shapes."})
    backbone_names: dict | None = field(default=None, metadata={
        "help": "Hub id of each backbone, e.g. {'text': 'sentence-transformers/all-MiniLM-L6-v2'}; default: the "
                "backbone config's `_name_or_path` when it is a Hub id (a local path is never recorded)."})
    base_model_name_or_path: str | None = field(default=None, metadata={
        "help": "PEFT field, always a string: the Hub id or local folder of the first modality's backbone (all Hub "
                "ids are in `backbone_names`); empty for a backbone built from a config."})
    inference_mode: bool = field(default=False, metadata={"help": "PEFT field: True when loaded for inference."})

    hfgen_adapter_type = "SideAdapterModel"  # overridden by each adapter; hfgen.load dispatches on it
    peft_type = "SIDE_ADAPTER"

    def __post_init__(self):
        check_numeric_fields(self, object)  # types and finiteness of every typed field
        if isinstance(self.modalities, str) or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"`modalities` must be a non-empty list of distinct names, got {self.modalities!r}.")
        self.modalities = list(self.modalities)
        for name in ("layers", "pooling"):
            value = getattr(self, name)
            if isinstance(value, dict) and set(value) != set(self.modalities):
                raise ValueError(f"`{name}` has keys {sorted(value)} but `modalities` is {self.modalities}.")
        for m in self.modalities:
            if self.modality_option("pooling", m) not in POOLINGS:
                raise ValueError(f"`pooling` for {m!r} must be one of {POOLINGS}, got {self.modality_option('pooling', m)!r}.")
            spec = self.modality_option("layers", m)
            if not isinstance(spec, (list, tuple)):
                select_layers(10**6, spec)  # checks the spec's form; depth is checked when backbones are known
        for name in ("embedding_dim", "bottleneck_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}.")
        if not self.gate_temperature > 0:  # also refuses NaN
            raise ValueError(f"`gate_temperature` must be > 0, got {self.gate_temperature!r}.")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"`activation` must be 'relu' or 'gelu', got {self.activation!r}.")

    def modality_option(self, name: str, modality: str):
        value = getattr(self, name)
        return value[modality] if isinstance(value, dict) else value



@dataclass
class SideAdapterOutput(ModelOutput):
    """Output of a side adapter.

    Args:
        item_embeddings: ``[N, embedding_dim]``.
        router_weights: ``[N, E]`` fusion weights per item (mixture-of-experts fusion only).
    """

    item_embeddings: torch.Tensor | None = None
    router_weights: torch.Tensor | None = None


def load_adapter_weights(model: nn.Module, folder: Path) -> None:
    """Load ``adapter_model.safetensors`` into ``model``; its keys must be exactly ``model.adapter_state_dict()``'s."""
    from hfgen.hub import verify_once, verify_safetensors

    verify_safetensors(folder / WEIGHTS_NAME)  # missing or unreadable
    verify_once(folder)  # against the checksums written with it: truncated, a flipped bit
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    expected = set(model.adapter_state_dict())
    if set(state) != expected:
        raise ValueError(f"{folder} does not fit this adapter: missing {sorted(expected - set(state))[:5]}, "
                         f"unexpected {sorted(set(state) - expected)[:5]}.")
    model.load_state_dict(state, strict=False)


class TrainableParametersMixin:
    """PEFT's parameter accounting for an ``nn.Module`` adapter."""

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, all)`` parameter counts, as in PEFT."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.parameters())

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")


class SideAdapterModel(TrainableParametersMixin, nn.Module):
    """Base of hfgen's side adapters: frozen backbones, item table, hidden-state cache, PEFT-style I/O.

    Subclasses build their side network in ``__init__`` (after ``super().__init__``) and implement
    [`embed`] from the per-modality layer states ``{m: [N, K_m, d_m]}``.

    The adapter is used three ways: on raw inputs (``adapter(text={...}, image={...})``), on item ids
    after [`set_item_inputs`] (the backbones run on the batch's items), or on item ids after
    [`cache_hidden_states`] / [`load_hidden_state_cache`] (no backbone runs at all; the model
    can even be built without backbones from a config that records their widths).
    """

    config_class = SideAdapterConfig
    method_name = None  # the hfgen registry name used for the model card
    frozen_backbones = True  # the baselines that fine-tune their backbones set this to False
    supports_missing_modalities = False  # CROSSAN embeds items that lack a modality

    def __init__(self, config: SideAdapterConfig, backbones: dict[str, nn.Module] | None = None):
        super().__init__()
        backbones = dict(backbones or {})
        unknown = set(backbones) - set(config.modalities)
        if unknown:
            raise ValueError(f"`backbones` has modalities {sorted(unknown)} that the config does not know "
                             f"(config.modalities = {config.modalities}).")
        config.hidden_sizes = dict(config.hidden_sizes or {})
        config.num_hidden_layers = dict(config.num_hidden_layers or {})
        config.encoder_fingerprints = dict(config.encoder_fingerprints or {})
        config.backbone_names = dict(config.backbone_names or {})
        for m, bb in backbones.items():
            c = bb.config
            if config.hidden_sizes.get(m, c.hidden_size) != c.hidden_size or \
                    config.num_hidden_layers.get(m, c.num_hidden_layers) != c.num_hidden_layers:
                raise ValueError(f"The {m!r} backbone ({c.num_hidden_layers} layers x {c.hidden_size}) does not match "
                                 f"the config ({config.num_hidden_layers[m]} layers x {config.hidden_sizes[m]}).")
            recorded = config.encoder_fingerprints.get(m)
            fp = fingerprint_like(bb, recorded, config.strict_fingerprint)
            if recorded is not None and recorded != fp:
                raise ValueError(f"The {m!r} backbone is not the encoder this adapter was built on "
                                 f"(fingerprint {fp} != {recorded}).")
            config.hidden_sizes[m], config.num_hidden_layers[m] = c.hidden_size, c.num_hidden_layers
            config.encoder_fingerprints[m] = fp
            config.backbone_names.setdefault(m, hub_id_of(bb))
            bb.requires_grad_(not self.frozen_backbones)
            if self.frozen_backbones:
                bb.eval()
        if config.base_model_name_or_path is None or not isinstance(config.base_model_name_or_path, str):
            # a real id or path (never a class name): PEFT-style readers load the base from it
            first = next((m for m in config.modalities if m in backbones), None)
            named = config.backbone_names.get(first)
            config.base_model_name_or_path = "" if first is None else (
                named if named != type(backbones[first]).__name__ else backbone_source(backbones[first]))
        missing = [m for m in config.modalities if m not in config.hidden_sizes]
        if missing:
            raise ValueError(f"No backbone and no recorded width for modalities {missing}: pass `backbones` "
                             "or a config with `hidden_sizes` and `num_hidden_layers`.")
        self.config = config
        self.backbones = nn.ModuleDict(backbones)
        self.layer_indices = {m: select_layers(config.num_hidden_layers[m], config.modality_option("layers", m))
                              for m in config.modalities}
        self.item_inputs: dict[str, dict[str, torch.Tensor]] | None = None
        self.item_available: dict[str, torch.Tensor] = {}
        self.cache: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------ the method

    def embed(self, states: dict[str, torch.Tensor], available: torch.Tensor | None) -> SideAdapterOutput:
        """Item embeddings from layer states ``{m: [N, K_m, d_m]}``; ``available`` is ``[N, M]`` bool or None."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ the inputs

    @property
    def num_items(self) -> int | None:
        table = self.cache or {m: next(iter(v.values())) for m, v in (self.item_inputs or {}).items()}
        return next(iter(table.values())).shape[0] if table else None

    def set_item_inputs(self, item_inputs: dict[str, dict[str, torch.Tensor]],
                        available: dict[str, torch.Tensor] | None = None) -> None:
        """Register every item's backbone inputs (row ``i`` = item id ``i``), e.g. tokenised titles and pixels.

        ``available[m]`` (bool ``[n_items]``) marks items that have modality ``m``; only adapters
        with a missing-modality policy accept items that lack one.
        """
        self._check_modalities(item_inputs, "item_inputs", require_all=False)
        sizes = {m: t.shape[0] for m, d in item_inputs.items() for t in d.values()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"`item_inputs` must give every modality the same number of items, got {sizes}.")
        self.item_inputs = item_inputs
        self.item_available = dict(available or {})
        self.cache = None

    @torch.no_grad()
    def cache_hidden_states(self, batch_size: int = 256, path: str | os.PathLike | None = None,
                            dtype: torch.dtype = torch.float32, progress_bar: bool = True) -> dict[str, torch.Tensor]:
        """Run each backbone once over every item and keep the pooled kept-layer states ``[n_items, K, d]``.

        Afterwards, ``forward(item_ids)`` reads the cache and never runs a backbone. With ``path``,
        the cache is also written as one safetensors file, with each encoder's fingerprint, so that
        [`load_hidden_state_cache`] refuses a cache built with another encoder.
        """
        from tqdm.auto import tqdm

        if self.item_inputs is None:
            raise ValueError("Call `set_item_inputs(...)` before `cache_hidden_states()`.")
        n = self.num_items
        cache = {}
        for m, inputs in self.item_inputs.items():
            chunks = []
            for i in tqdm(range(0, n, batch_size), desc=f"caching {m} states", disable=not progress_bar):
                batch = {k: v[i:i + batch_size] for k, v in inputs.items()}
                chunks.append(self.backbone_states(m, batch).to(dtype).cpu())
            cache[m] = torch.cat(chunks)
        self.cache = cache
        if path is not None:
            self.save_hidden_state_cache(path)
        return cache

    def save_hidden_state_cache(self, path: str | os.PathLike) -> None:
        tensors = {f"states.{m}": t.cpu().contiguous() for m, t in self.cache.items()}
        tensors.update({f"available.{m}": a.cpu().contiguous() for m, a in self.item_available.items()})
        meta = {"fingerprints": {m: self.config.encoder_fingerprints[m] for m in self.cache},
                "layers": {m: self.layer_indices[m] for m in self.cache},
                "pooling": {m: self.config.modality_option("pooling", m) for m in self.cache}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"hfgen_side_cache": json.dumps(meta)})

    def load_hidden_state_cache(self, path: str | os.PathLike) -> None:
        """Load a cache written by [`cache_hidden_states`]; refuse one built with other encoders or layers.

        The fingerprints must match (config, parameter names and shapes, or every weight byte with
        ``strict_fingerprint``); when the backbones and item inputs are present, the states of a few
        items are also recomputed and must agree (up to a dtype change), so a cache of another
        checkpoint of the same architecture is refused too.
        """
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("hfgen_side_cache", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        for m in self.config.modalities:
            if m not in meta.get("fingerprints", {}):
                raise ValueError(f"The cache {path} has no states for modality {m!r}.")
            if m in self.backbones:
                same = fingerprint_like(self.backbones[m], meta["fingerprints"][m]) == meta["fingerprints"][m]
            else:
                same = meta["fingerprints"][m] == self.config.encoder_fingerprints[m]
            if not same:
                raise ValueError(f"The cache {path} was built with another {m!r} encoder (fingerprint "
                                 f"{meta['fingerprints'][m]} != {self.config.encoder_fingerprints[m]}); rebuild it.")
            if meta["layers"][m] != self.layer_indices[m] or meta["pooling"][m] != self.config.modality_option("pooling", m):
                raise ValueError(f"The cache {path} keeps layers {meta['layers'][m]} ({meta['pooling'][m]} pooling) "
                                 f"of {m!r}, the adapter reads {self.layer_indices[m]}; rebuild it.")
            if m in self.backbones and self.item_inputs is not None and m in self.item_inputs:
                # the fingerprint does not read weights: also recompute a few items' states (tolerant to a dtype change)
                rows = torch.arange(min(4, tensors[f"states.{m}"].shape[0]))
                with torch.no_grad():
                    now = self.backbone_states(m, {k: v[rows] for k, v in self.item_inputs[m].items()}).float().cpu()
                ref = tensors[f"states.{m}"][rows].float()
                if (now - ref).abs().max() > 0.05 * ref.abs().max() + 1e-3:
                    raise ValueError(f"The cache {path} was built with another {m!r} encoder (its states of items "
                                     f"{rows.tolist()} differ from this backbone's); rebuild it.")
        self.cache = {m: tensors[f"states.{m}"] for m in self.config.modalities}
        self.item_available = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("available.")}

    @staticmethod
    def _moved(tables: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        """``tables`` with every tensor on ``device``, moved there in place the first time (then never copied again)."""
        for name, table in tables.items():
            if table.device != device:
                tables[name] = table.to(device)
        return tables

    def backbone_states(self, modality: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled kept-layer states ``[N, K, d]`` of one backbone (no gradient for a frozen backbone)."""
        if modality not in self.backbones:
            raise ValueError(f"No backbone for modality {modality!r}: pass it to the adapter, or use a hidden-state cache.")
        backbone = self.backbones[modality]
        device = next(backbone.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_backbones):
            out = backbone(**inputs, output_hidden_states=True, return_dict=True)
        states = pool_hidden_states(out.hidden_states, self.layer_indices[modality],
                                    self.config.modality_option("pooling", modality), inputs.get("attention_mask"))
        if states.shape[-1] != self.config.hidden_sizes[modality]:
            raise ValueError(f"The {modality!r} backbone gives {states.shape[-1]}-d states, the config says "
                             f"{self.config.hidden_sizes[modality]}.")
        return states

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbones:
            self.backbones.eval()  # frozen backbones never use dropout, so cached == uncached states
        return self

    def _check_modalities(self, given: dict, name: str, require_all: bool = True) -> None:
        if not given:
            raise ValueError(f"`{name}` is empty: give at least one of the modalities {self.config.modalities}.")
        unknown = sorted(set(given) - set(self.config.modalities))
        if unknown:
            raise ValueError(f"`{name}` has modalities {unknown} that the config does not know "
                             f"(config.modalities = {self.config.modalities}).")
        missing = [m for m in self.config.modalities if m not in given]
        if require_all and missing and not self.supports_missing_modalities:
            raise ValueError(f"`{name}` lacks modalities {missing}; {type(self).__name__} needs all of "
                             f"{self.config.modalities}.")

    def layer_states(self, item_ids=None, hidden_states=None, available=None, **modality_inputs):
        """``({m: [N, K_m, d_m]}, available [N, M] or None)`` from whichever input was given."""
        if hidden_states is not None:
            states = dict(hidden_states)
            self._check_modalities(states, "hidden_states")
        elif item_ids is not None:
            n = self.num_items
            if n is None:
                raise ValueError("`item_ids` need an item table: call `set_item_inputs(...)` or load a hidden-state cache.")
            if item_ids.device.type != "cpu":  # checked on the device, without waiting for it
                torch._assert_async(((item_ids >= 0) & (item_ids < n)).all(), f"Item ids must lie in 0..{n - 1}.")
            elif item_ids.numel() and (int(item_ids.min()) < 0 or int(item_ids.max()) >= n):
                raise IndexError(f"Item id {int(item_ids.max()) if int(item_ids.max()) >= n else int(item_ids.min())} "
                                 f"is not in the item table (ids 0..{n - 1}).")
            if self.cache is not None:  # read where the adapter runs: the cache moves there once, not every step
                ids = item_ids.to(self.device)
                states = {m: t[ids] for m, t in self._moved(self.cache, ids.device).items()}
            else:  # the item table stays on the host; `backbone_states` moves each batch to its backbone
                ids = item_ids.cpu()
                states = {m: self.backbone_states(m, {k: v[ids] for k, v in inp.items()})
                          for m, inp in self.item_inputs.items()}
            if self.item_available:
                flags = self._moved(self.item_available, ids.device)
                table = torch.stack([flags[m][ids] if m in flags else torch.ones(len(ids), dtype=torch.bool, device=ids.device)
                                     for m in self.config.modalities], -1)
                available = table if available is None else available.to(ids.device) & table
        else:
            self._check_modalities(modality_inputs, "inputs")
            states = {m: self.backbone_states(m, inp) for m, inp in modality_inputs.items()}
        sizes = {m: t.shape[0] for m, t in states.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"Batch sizes differ across modalities: {sizes}.")
        device = self.device
        states = {m: t.to(device=device, dtype=torch.float32) for m, t in states.items()}
        for m, t in states.items():
            want = (len(self.layer_indices[m]), self.config.hidden_sizes[m])
            if tuple(t.shape[1:]) != want:
                raise ValueError(f"States of {m!r} have shape {tuple(t.shape[1:])}, the adapter expects [K, d] = {want}.")
        if len(states) < len(self.config.modalities):  # an absent modality is missing for every item
            n = next(iter(states.values())).shape[0]
            have = torch.tensor([m in states for m in self.config.modalities], device=device)
            available = have.expand(n, -1) if available is None else available & have
        if available is not None:
            available = available.to(device)
            if device.type != "cpu":  # checked on the device, without waiting for it
                torch._assert_async(available.any(-1).all(), "An item has none of the modalities; it cannot be embedded.")
            elif not available.any(-1).all():
                raise ValueError("An item has none of the modalities; it cannot be embedded.")
        return states, available

    def forward(self, item_ids: torch.Tensor | None = None, hidden_states: dict[str, torch.Tensor] | None = None,
                available: torch.Tensor | None = None, return_dict: bool = True, **modality_inputs):
        """Item embeddings from item ids, precomputed layer states, or raw inputs per modality.

        Args:
            item_ids: ``[N]`` ids into the item table or the cache.
            hidden_states: ``{modality: [N, K_m, d_m]}`` kept-layer states.
            available: ``[N, M]`` bool, which modalities each item has (for adapters that allow missing ones).
            modality_inputs: ``text={"input_ids": ..., "attention_mask": ...}``, ``image={"pixel_values": ...}``.
        """
        states, available = self.layer_states(item_ids, hidden_states, available, **modality_inputs)
        out = self.embed(states, available)
        return out if return_dict else out.to_tuple()

    @torch.no_grad()
    def embed_all_items(self, batch_size: int = 1024) -> torch.Tensor:
        """``[n_items, embedding_dim]`` for the whole item table (for full-ranking evaluation)."""
        n = self.num_items
        return torch.cat([self(item_ids=torch.arange(i, min(i + batch_size, n))).item_embeddings
                          for i in range(0, n, batch_size)])

    # ------------------------------------------------------------------------------ PEFT-style I/O

    @property
    def device(self) -> torch.device:
        return next(p for n, p in self.named_parameters() if not n.startswith("backbones.")).device

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights an adapter file holds: everything but frozen backbone weights."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbones.") or k in trainable}

    def save_pretrained(self, save_directory: str | os.PathLike, model_card: bool = True, **card_kwargs) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (no backbone weights) and a model card."""
        from hfgen.hub import atomic_save_dir, save_model_card_or_warn

        with atomic_save_dir(save_directory) as tmp:
            self.config.save_pretrained(tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.adapter_state_dict().items()},
                      str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        if model_card and self.method_name:  # once the weights are committed: a card problem never costs them
            bases = self.config.backbone_names or {}
            save_model_card_or_warn(save_directory, self.method_name, owner=type(self).__name__,
                                    model_name=Path(save_directory).name,
                                    base_model=next((b for b in bases.values() if "/" in b), None),
                                    training_config={k: v for k, v in self.config.to_dict().items()
                                                     if k not in ("encoder_fingerprints", "base_model_name_or_path",
                                                                  "backbone_names")},
                                    backbones=bases, **card_kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike,
                        backbones: dict[str, nn.Module] | None = None, is_trainable: bool = False, **config_kwargs):
        """Load an adapter folder (or Hub repo id) onto ``backbones``; without backbones it runs on cached states."""
        from hfgen.hub import resolve_folder

        folder = resolve_folder(pretrained_model_name_or_path)
        config = cls.config_class.from_pretrained(folder, inference_mode=not is_trainable, **config_kwargs)
        model = cls(config, backbones)
        load_adapter_weights(model, folder)
        if not is_trainable:
            model.eval()
        return model

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload side adapter with hfgen") -> str:
        """Save to a temporary folder and upload it in one commit; returns the commit URL."""
        from hfgen.hub import push

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(Path(tmp) / "adapter")
            return push(Path(tmp) / "adapter", repo_id, private=private, token=token, commit_message=commit_message)
