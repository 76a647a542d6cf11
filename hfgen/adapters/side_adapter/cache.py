"""The backbones' states that a side network reads, and their cache: [`backbone_states`] pools the kept layers of one
backbone; [`cache_hidden_states`] runs each frozen backbone once over every item, and training then reads the pooled
kept-layer states ``[n_items, K, d]`` instead of running a backbone. A cache written to a file records each encoder's
fingerprint, so one built with another encoder is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .fingerprint import fingerprint_like
from .layer import pool_hidden_states


class HiddenStateCacheMixin:
    """[`backbone_states`], [`cache_hidden_states`], [`save_hidden_state_cache`] and [`load_hidden_state_cache`] of
    [`~hfgen.adapters.SideAdapterModel`], which holds the cache in ``self.cache``."""

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
