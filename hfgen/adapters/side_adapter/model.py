"""[`SideAdapterModel`], the base of hfgen's side adapters: frozen backbones, the item table, the hidden-state cache
([`hfgen.adapters.side_adapter.cache`]) and PEFT-style ``save_pretrained`` / ``from_pretrained`` /
``print_trainable_parameters`` / ``push_to_hub``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers.utils import ModelOutput

from .cache import HiddenStateCacheMixin
from .config import WEIGHTS_NAME, SideAdapterConfig
from .fingerprint import backbone_source, fingerprint_like, hub_id_of
from .layer import select_layers


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


class SideAdapterModel(HiddenStateCacheMixin, TrainableParametersMixin, nn.Module):
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
