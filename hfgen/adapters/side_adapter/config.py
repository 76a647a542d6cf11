"""PEFT-style configuration of hfgen's side adapters: ``adapter_config.json`` with a ``peft_type`` that PEFT's own
loaders refuse with a message naming hfgen ([`peft_type_message`]), and [`SideAdapterConfig`], the fields every side
adapter shares."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfgen.validation import check_numeric_fields

from .layer import select_layers

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
POOLINGS = ("cls", "mean")


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
