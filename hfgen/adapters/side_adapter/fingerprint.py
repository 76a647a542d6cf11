"""Which backbone a side adapter or its hidden-state cache was built on: [`encoder_fingerprint`] (a short digest that
refuses another encoder), and where the backbone comes from ([`hub_id_of`], [`backbone_source`])."""

from __future__ import annotations

import hashlib
import json
import os

import torch
from torch import nn

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


def fingerprint_like(backbone: nn.Module, recorded: str | None, strict: bool = False) -> str:
    """The backbone's fingerprint of the same kind as ``recorded`` (so an adapter saved in strict mode is checked
    strictly); a new one of the configured kind when nothing was recorded."""
    if recorded is None:
        return encoder_fingerprint(backbone, strict)
    return encoder_fingerprint(backbone, recorded.startswith("weights:"))


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
