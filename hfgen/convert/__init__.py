"""Converters from the checkpoints released with the papers to hfgen / transformers / Diffusers classes.

``CONVERTERS`` maps a kind (the first argument of ``hfgen convert``) to ``module:function``; a converter is
``fn(source, output=None, **options) -> model`` and is imported only when used. Every converter reads
safetensors or ``torch.load(weights_only=True)`` only, refuses a source with unmapped or missing tensors
(naming them) and writes a safetensors folder plus a card naming the source atomically.
"""

from __future__ import annotations

import importlib

from hfgen.convert.errors import ConversionError

CONVERTERS = {
    "mdlm": ("hfgen.convert.mdlm:convert_mdlm", {"kind": "mdlm"},
             "MDLM DiT (kuleshov-group/mdlm) -> MDLMDiTForMaskedLM (AutoModelForMaskedLM)"),
    "sedd-absorb": ("hfgen.convert.mdlm:convert_mdlm", {"kind": "sedd-absorb"},
                    "SEDD-absorb DiT (kuleshov-group/mdlm) -> MDLMDiTForMaskedLM, time-conditioned"),
    "gft-sd15": ("hfgen.convert.gft_sd15:convert_gft_sd15", {},
                 "GFT Stable Diffusion 1.5 UNet (thu-ml/GFT) -> checked UNet2DConditionModel for GuidanceFreePipeline"),
    "ddbm": ("hfgen.convert.ddbm:convert_ddbm", {},
             "DDBM teacher (alexzhou907/DDBM ADM UNet; -o preset='e2h' or 'diode') -> UNet2DModel for ConsistencyBridgePipeline"),
    "gft-dit": ("hfgen.convert.gft_dit:convert_gft_dit", {},
                "GFT DiT-B/2 / DiT-XL/2 (thu-ml/GFT, linear beta embedder) -> GFTDiTTransformer2DModel (Diffusers DiT + beta)"),
}


def get_converter(kind: str):
    """``(function, fixed keyword arguments)`` for ``kind``."""
    if kind not in CONVERTERS:
        raise ValueError(f"Unknown converter kind {kind!r}; known kinds: {', '.join(sorted(CONVERTERS))}.")
    target, fixed, _ = CONVERTERS[kind]
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name), dict(fixed)


def convert(kind: str, source, output=None, **options):
    """Convert ``source`` with the converter ``kind`` (see [`CONVERTERS`]); saves to ``output`` if given."""
    fn, fixed = get_converter(kind)
    return fn(source, output, **fixed, **options)


__all__ = ["CONVERTERS", "ConversionError", "convert", "get_converter"]
