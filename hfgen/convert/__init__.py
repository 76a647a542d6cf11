"""Converters from the checkpoints released with the papers to hfgen / transformers / Diffusers classes.

Each method's manifest declares its converters (``MethodInfo.converters``: kind -> [`hfgen.registry.Converter`]);
``CONVERTERS`` is derived from them (hfgen's own, then the installed plugins'), mapping a kind (the first argument of
``hfgen convert``) to ``(module:function, fixed options, description)``. A converter is
``fn(source, output=None, **options) -> model`` and is imported only when used. Every converter reads safetensors or
``torch.load(weights_only=True)`` only, refuses a source with unmapped or missing tensors (naming them) and writes a
safetensors folder plus a card naming the source atomically.
"""

from __future__ import annotations

import importlib

from hfgen.convert.errors import ConversionError


def converter_table() -> dict[str, tuple[str, dict, str]]:
    """``{kind: (module:function, fixed options, description)}`` of every installed method's manifest."""
    from hfgen.methods import converters

    return {kind: (c.target, dict(c.options), c.description) for kind, c in converters().items()}


def __getattr__(name):
    if name == "CONVERTERS":  # derived at each access, so a method registered at run time is seen
        return converter_table()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_converter(kind: str):
    """``(function, fixed keyword arguments)`` for ``kind``."""
    table = converter_table()
    if kind not in table:
        raise ValueError(f"Unknown converter kind {kind!r}; known kinds: {', '.join(sorted(table))}.")
    target, fixed, _ = table[kind]
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name), dict(fixed)


def convert(kind: str, source, output=None, **options):
    """Convert ``source`` with the converter ``kind`` (see ``CONVERTERS``); saves to ``output`` if given."""
    fn, fixed = get_converter(kind)
    return fn(source, output, **fixed, **options)


__all__ = ["CONVERTERS", "ConversionError", "convert", "converter_table", "get_converter"]
