"""DFN: the Decoupled Fine-tuning Network that adapts a frozen MF^2 to AU detection and emotion recognition.

MF^2's paper (arXiv 2504.10351) names DFN and says it adapts the foundation model across tasks and
data sets at low cost; its design is not public. This is the reconstruction of ``face_popcorn.md``
§1.5, built on the group's decoupled PEFT (IISAN, arXiv 2404.02059): the backbone never receives a
gradient; a small side network reads the backbone's per-layer states, which therefore can be
computed once and cached. DFN reads them at MF^2's two levels:

    for each kept layer l (hidden_states index):           # frozen, cacheable
        c_l      = LN(H_l)[:, 0]                            # global: the [CLS] state          [B, D]
        a_{l,k}  = LN_au(Q_k + CrossAttn(Q_k, LN(H_l)[:, 1:]))  # local: MF^2's AU queries    [B, K, D]
    u   = SideNet_glob(c_1..c_L)                           # IISAN's gated chain of SANBs     [B, D]
    v_k = SideNet_loc(a_{1,k}..a_{L,k})                    # one chain shared by the AUs      [B, K, D]
    AU logits       y_k = w_k · LN(v_k) + b_k              # multi-label, BCE
    emotion logits  e   = W_e [LN(u); LN(v_1); ...; LN(v_K)] + b_e   # single-label, CE

with ``SideNet`` the gated chain ``s^i = SANB^i(g^i h_i + (1 - g^i) s^{i-1})``, ``g^i = sigmoid(w^i / τ)``
([`hfgen.adapters.side_adapter.GatedSideNetwork`]). The two heads are decoupled: a data set with
only AU labels (DISFA, BP4D) or only emotion labels (RAF-DB, AffectNet) trains the head it has.
On disk DFN follows PEFT: ``adapter_config.json`` (with ``"hfgen_adapter_type": "DFNModel"``) and
``adapter_model.safetensors`` holding the side network only. Like the other side adapters it is PEFT-style,
not PEFT format: PEFT's own loaders raise ``KeyError`` whose text names hfgen and ``DFNModel.from_pretrained``
(see [`hfgen.adapters.side_adapter`]).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers.utils import ModelOutput

from hfgen.adapters.side_adapter import (
    WEIGHTS_NAME,
    AdapterConfigMixin,
    GatedSideNetwork,
    TrainableParametersMixin,
    load_adapter_weights,
    select_layers,
)
from hfgen.data.faces import check_au_names
from hfgen.validation import check_numeric_fields


def weights_fingerprint(model: nn.Module) -> str:
    """A short digest of a model's weights (names and bytes): an adapter or cache built on another MF^2 is refused."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class DFNConfig(AdapterConfigMixin):
    """Configuration of [`DFNModel`], saved as PEFT's ``adapter_config.json``.

    ``hidden_size``, ``num_hidden_layers``, ``base_au_names``, ``base_model_fingerprint`` and
    ``base_model_name_or_path`` are filled from the MF^2 model when the adapter is built on it.
    """

    au_names: list[str] | None = field(default=None, metadata={"help": "AUs to detect (a subset of the base model's "
                                                                       "AUs); default: all of them."})
    emotion_names: list[str] | None = field(default=None, metadata={"help": "Emotion classes of the emotion head; "
                                                                            "default: the base model's."})
    layers: Any = field(default="every:1", metadata={"help": "ViT hidden_states read by the side network: 'every:S', "
                                                            "'group:G', 'all', 'last' or a list of indices."})
    bottleneck_size: int = field(default=16, metadata={"help": "SANB bottleneck width r."})
    gate_temperature: float = field(default=0.1, metadata={"help": "τ in g = sigmoid(w / τ)."})
    activation: str = field(default="relu", metadata={"help": "SANB activation: 'relu' or 'gelu'."})
    au_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the AU (BCE) loss."})
    emotion_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the emotion (CE) loss."})
    hidden_size: int | None = field(default=None, metadata={"help": "ViT width D (filled from the base model)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "ViT depth (filled from the base model)."})
    base_au_names: list[str] | None = field(default=None, metadata={"help": "The base model's AU queries (filled)."})
    base_model_fingerprint: str | None = field(default=None, metadata={"help": "Digest of the base model's weights."})
    base_model_name_or_path: str | None = field(default=None, metadata={"help": "The base model's name or path."})
    inference_mode: bool = field(default=False, metadata={"help": "PEFT field: True when loaded for inference."})

    hfgen_adapter_type = "DFNModel"
    hfgen_loader_args = "path, base_model"
    peft_type = "DFN"  # written as peft_type_message("DFN", ...): PEFT's own loaders refuse it naming hfgen

    def __post_init__(self):
        check_numeric_fields(self, object)  # types and finiteness of every typed field
        if self.au_names is not None:
            self.au_names = check_au_names(self.au_names)
        if self.emotion_names is not None and (len(self.emotion_names) < 2 or
                                               len(set(self.emotion_names)) != len(self.emotion_names)):
            raise ValueError(f"`emotion_names` must list at least two distinct classes, got {self.emotion_names!r}.")
        if not isinstance(self.layers, (list, tuple)):
            select_layers(10**6, self.layers)  # checks the form; the depth is checked against the base model
        if int(self.bottleneck_size) < 1:
            raise ValueError(f"`bottleneck_size` must be a positive integer, got {self.bottleneck_size!r}.")
        if not self.gate_temperature > 0:  # also refuses NaN
            raise ValueError(f"`gate_temperature` must be > 0, got {self.gate_temperature!r}.")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"`activation` must be 'relu' or 'gelu', got {self.activation!r}.")
        if self.au_loss_weight < 0 or self.emotion_loss_weight < 0:
            raise ValueError("`au_loss_weight` and `emotion_loss_weight` must be >= 0.")


@dataclass
class DFNOutput(ModelOutput):
    """Output of [`DFNModel`].

    Args:
        loss: weighted BCE (AU) + CE (emotion) over the labels given.
        au_logits: ``[B, K]`` (``sigmoid > 0.5``, i.e. logit > 0, means present).
        emotion_logits: ``[B, C]``.
    """

    loss: torch.Tensor | None = None
    au_logits: torch.Tensor | None = None
    emotion_logits: torch.Tensor | None = None


class DFNModel(TrainableParametersMixin, nn.Module):
    """The decoupled side network over a frozen [`~hfgen.models.mf2.MF2Model`] (see the module docstring).

    Use it on images (``dfn(pixel_values=...)``: the frozen MF^2 runs without gradient) or on cached
    states (``states = dfn.cache_states(pixel_values)``, then ``dfn(**states)``: MF^2 never runs, and the
    adapter can even be built without it from a saved config).

    Example::

        dfn = DFNModel(DFNConfig(au_names=["AU1", "AU12"]), mf2)
        states = dfn.cache_states(train_pixels)
        out = dfn(**states, au_labels=y_au, emotion_labels=y_emo)
        out.loss.backward()
        dfn.save_pretrained("dfn-adapter")   # adapter_config.json + adapter_model.safetensors + README.md
    """

    config_class = DFNConfig
    base_model_prefix = "base_model"

    def __init__(self, config: DFNConfig, base_model=None):
        super().__init__()
        if base_model is not None:
            vc = base_model.config.vision_config
            fp = weights_fingerprint(base_model)
            if config.base_model_fingerprint not in (None, fp):
                raise ValueError(f"`base_model` is not the MF^2 this adapter was trained on (fingerprint {fp} != "
                                 f"{config.base_model_fingerprint}).")
            config.hidden_size, config.num_hidden_layers = vc.hidden_size, vc.num_hidden_layers
            config.base_au_names = list(base_model.config.au_names)
            config.base_model_fingerprint = fp
            config.base_model_name_or_path = config.base_model_name_or_path or base_model.config._name_or_path or None
            config.au_names = config.au_names or list(base_model.config.au_names)
            config.emotion_names = config.emotion_names or list(base_model.config.emotion_names)
            base_model.requires_grad_(False).eval()
        if config.hidden_size is None or config.base_au_names is None or config.emotion_names is None:
            raise ValueError("Pass `base_model` (an MF2Model) or a config saved from an adapter built on one.")
        config.au_names = check_au_names(config.au_names or config.base_au_names, known=config.base_au_names)
        self.config = config
        self.base_model = base_model
        self.layer_indices = select_layers(config.num_hidden_layers, config.layers)
        self.register_buffer("au_index", torch.tensor([config.base_au_names.index(a) for a in config.au_names]),
                             persistent=False)
        D, L, K, C = config.hidden_size, len(self.layer_indices), len(config.au_names), len(config.emotion_names)
        side = dict(dim=D, bottleneck=config.bottleneck_size, num_blocks=L, temperature=config.gate_temperature,
                    activation=config.activation)
        self.global_side = GatedSideNetwork(**side)
        self.local_side = GatedSideNetwork(**side)
        self.global_norm = nn.LayerNorm(D)
        self.local_norm = nn.LayerNorm(D)
        self.au_weight = nn.Parameter(torch.randn(K, D) * 0.02)
        self.au_bias = nn.Parameter(torch.zeros(K))
        self.emotion_head = nn.Linear(D * (K + 1), C)

    # ------------------------------------------------------------------------------ the states

    def base_states(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The frozen MF^2's per-layer states read by this adapter: ``global_states`` ``[B, L, D]``, ``au_states`` ``[B, L, K, D]``."""
        if self.base_model is None:
            raise ValueError("This DFN has no base model: pass `base_model` when building it, or give cached states.")
        with torch.no_grad():
            g, a = self.base_model.multilevel_states(pixel_values, self.layer_indices)
        return {"global_states": g, "au_states": a[:, :, self.au_index]}

    @torch.no_grad()
    def cache_states(self, pixel_values: torch.Tensor, batch_size: int = 256, path: str | os.PathLike | None = None,
                     progress_bar: bool = False) -> dict[str, torch.Tensor]:
        """Run the frozen MF^2 once over ``pixel_values`` and return (and with ``path``, save) its states.

        The saved file records the base model's fingerprint and the layers, so that
        [`load_cached_states`] refuses a cache built with another MF^2.
        """
        from tqdm.auto import tqdm

        chunks = [self.base_states(pixel_values[i:i + batch_size])
                  for i in tqdm(range(0, len(pixel_values), batch_size), desc="caching MF2 states",
                                disable=not progress_bar)]
        states = {k: torch.cat([c[k] for c in chunks]).cpu() for k in chunks[0]}
        if path is not None:
            meta = {"fingerprint": self.config.base_model_fingerprint, "layers": self.layer_indices,
                    "au_names": self.config.au_names}
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in states.items()}, str(path),
                      metadata={"hfgen_dfn_cache": json.dumps(meta)})
        return states

    def load_cached_states(self, path: str | os.PathLike) -> dict[str, torch.Tensor]:
        """Load a cache written by [`cache_states`]; refuse one built with another MF^2, layers or AUs."""
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("hfgen_dfn_cache", "{}"))
            states = {k: f.get_tensor(k) for k in f.keys()}
        want = {"fingerprint": self.config.base_model_fingerprint, "layers": self.layer_indices,
                "au_names": self.config.au_names}
        for key, value in want.items():
            if meta.get(key) != value:
                raise ValueError(f"The cache {path} was built with {key}={meta.get(key)!r}, this adapter has "
                                 f"{value!r}; rebuild it with `cache_states`.")
        return states

    def _check_states(self, global_states, au_states) -> None:
        L, D, K = len(self.layer_indices), self.config.hidden_size, len(self.config.au_names)
        if global_states.dim() != 3 or tuple(global_states.shape[1:]) != (L, D):
            raise ValueError(f"`global_states` must be [batch, {L}, {D}], got {tuple(global_states.shape)}.")
        if au_states.dim() != 4 or tuple(au_states.shape[1:]) != (L, K, D) or len(au_states) != len(global_states):
            raise ValueError(f"`au_states` must be [{len(global_states)}, {L}, {K}, {D}], got {tuple(au_states.shape)}.")

    def _check_labels(self, au_labels, emotion_labels, batch: int) -> None:
        K, C = len(self.config.au_names), len(self.config.emotion_names)
        if au_labels is not None and (au_labels.dim() != 2 or tuple(au_labels.shape) != (batch, K)):
            raise ValueError(f"`au_labels` must be [batch, {K}] (one column per AU of {self.config.au_names}), "
                             f"got {tuple(au_labels.shape)}.")
        if emotion_labels is not None:
            if emotion_labels.shape != (batch,) or emotion_labels.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"`emotion_labels` must be [batch] integer class ids, got "
                                 f"{tuple(emotion_labels.shape)} {emotion_labels.dtype}.")
            if len(emotion_labels) and (int(emotion_labels.min()) < 0 or int(emotion_labels.max()) >= C):
                raise ValueError(f"`emotion_labels` must be in [0, {C}) ({self.config.emotion_names}).")

    # ------------------------------------------------------------------------------- forward

    def forward(self, pixel_values: torch.Tensor | None = None, global_states: torch.Tensor | None = None,
                au_states: torch.Tensor | None = None, au_labels: torch.Tensor | None = None,
                emotion_labels: torch.Tensor | None = None, return_dict: bool = True) -> DFNOutput | tuple:
        """AU and emotion logits from images (the frozen MF^2 runs) or from cached states.

        Args:
            pixel_values: ``[B, C, H, W]`` (needs the base model).
            global_states, au_states: cached states from [`cache_states`].
            au_labels: ``[B, K]`` 0/1 floats; emotion_labels: ``[B]`` class ids. Either gives a loss.
        """
        if pixel_values is not None:
            states = self.base_states(pixel_values)
            global_states, au_states = states["global_states"], states["au_states"]
        elif global_states is None or au_states is None:
            raise ValueError("Give `pixel_values`, or both cached `global_states` and `au_states`.")
        self._check_states(global_states, au_states)
        B, L, K, D = au_states.shape
        self._check_labels(au_labels, emotion_labels, B)
        device = self.au_weight.device
        u = self.global_norm(self.global_side(global_states.to(device)))  # [B, D]
        v = self.local_side(au_states.to(device).transpose(1, 2).reshape(B * K, L, D))
        v = self.local_norm(v).view(B, K, D)
        au_logits = (v * self.au_weight).sum(-1) + self.au_bias
        emotion_logits = self.emotion_head(torch.cat([u, v.flatten(1)], -1))
        losses = []
        if au_labels is not None:
            losses.append(self.config.au_loss_weight *
                          F.binary_cross_entropy_with_logits(au_logits, au_labels.to(au_logits)))
        if emotion_labels is not None:
            losses.append(self.config.emotion_loss_weight * F.cross_entropy(emotion_logits, emotion_labels.to(device)))
        out = DFNOutput(loss=torch.stack(losses).sum() if losses else None, au_logits=au_logits,
                        emotion_logits=emotion_logits)
        return out if return_dict else out.to_tuple()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.base_model is not None:
            self.base_model.eval()  # frozen: no dropout, so cached and uncached states agree
        return self

    # ------------------------------------------------------------------------------ PEFT-style I/O

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The side network's weights (never the base model's)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base_model.")}

    def save_pretrained(self, save_directory: str | os.PathLike, model_card: bool = True, **card_kwargs) -> None:
        """Write ``adapter_config.json``, ``adapter_model.safetensors`` (side network only) and a model card."""
        from hfgen.hub import atomic_save_dir, save_model_card_or_warn

        with atomic_save_dir(save_directory) as tmp:
            self.config.save_pretrained(tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.adapter_state_dict().items()},
                      str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        if model_card:  # once the weights are committed: a card problem never costs them
            save_model_card_or_warn(save_directory, "mf2", owner=type(self).__name__, model_name=Path(save_directory).name,
                                    base_model=self.config.base_model_name_or_path, artifact="dfn",
                                    training_config={k: v for k, v in self.config.to_dict().items()
                                                     if k not in ("base_model_fingerprint", "base_au_names")},
                                    au_names=self.config.au_names, emotion_names=self.config.emotion_names,
                                    **card_kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, base_model=None,
                        is_trainable: bool = False, **config_kwargs) -> DFNModel:
        """Load an adapter folder (or Hub repo id) onto ``base_model``; without it the adapter runs on cached states."""
        from hfgen.hub import resolve_folder

        folder = resolve_folder(pretrained_model_name_or_path)
        config = cls.config_class.from_pretrained(folder, inference_mode=not is_trainable, **config_kwargs)
        model = cls(config, base_model)
        load_adapter_weights(model, folder)
        model.requires_grad_(is_trainable)
        if base_model is not None:
            base_model.requires_grad_(False)
        return model if is_trainable else model.eval()

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload DFN adapter with hfgen") -> str:
        """Save to a temporary folder and upload it in one commit; returns the commit URL."""
        from hfgen.hub import push

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(Path(tmp) / "adapter")
            return push(Path(tmp) / "adapter", repo_id, private=private, token=token, commit_message=commit_message)
