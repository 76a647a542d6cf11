"""Shared building blocks of hfgen's decoupled side adapters (IISAN, IISAN-Versa, CROSSAN, DFN).

A side adapter never touches its backbones: each frozen encoder runs once per item (no gradient,
eval mode), one pooled vector is read from each kept layer, and a small trainable side network
turns those ``[K, d]`` states into an item embedding. Because the states depend on the item alone,
they can be computed once and cached ([`SideAdapterModel.cache_hidden_states`]); training then
never runs a backbone.

What lives here, written once for every side-adapter method, one concern a module (PEFT's layout):

- ``layer``: [`select_layers`] (which ``hidden_states`` the side network reads: IISAN's LayerDrop,
  IISAN-Versa's group layer-dropping, or an explicit list), [`pool_hidden_states`] (the CLS vector or
  the masked token mean of each kept layer), [`SANB`], [`GatedSideNetwork`] (the intra-modal SAN with
  learnable gates), [`MixtureSideNetwork`] (the inter-modal SAN over any number of modalities, with the
  dimension-transformation layers of IISAN-Versa) and [`iisan_head`];
- ``config``: [`SideAdapterConfig`] and the PEFT-style ``adapter_config.json`` I/O ([`AdapterConfigMixin`]);
- ``fingerprint``: [`encoder_fingerprint`], which refuses an adapter or cache built on another encoder;
- ``cache``: the backbones' pooled states and their cache ([`HiddenStateCacheMixin`]);
- ``model``: [`SideAdapterModel`], a PEFT-style folder (see below), item tables, ``save_pretrained`` /
  ``from_pretrained`` / ``print_trainable_parameters`` / ``push_to_hub``.

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

from .cache import HiddenStateCacheMixin
from .config import CONFIG_NAME, POOLINGS, WEIGHTS_NAME, AdapterConfigMixin, SideAdapterConfig, peft_type_message
from .fingerprint import backbone_source, encoder_fingerprint, fingerprint_like, hub_id_of
from .layer import SANB, GatedSideNetwork, MixtureSideNetwork, iisan_head, pool_hidden_states, select_layers
from .model import SideAdapterModel, SideAdapterOutput, TrainableParametersMixin, load_adapter_weights

__all__ = ["CONFIG_NAME", "POOLINGS", "SANB", "WEIGHTS_NAME", "AdapterConfigMixin", "GatedSideNetwork",
           "HiddenStateCacheMixin", "MixtureSideNetwork", "SideAdapterConfig", "SideAdapterModel", "SideAdapterOutput",
           "TrainableParametersMixin", "backbone_source", "encoder_fingerprint", "fingerprint_like", "hub_id_of",
           "iisan_head", "load_adapter_weights", "peft_type_message", "pool_hidden_states", "select_layers"]
