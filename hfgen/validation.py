"""Checks of arguments, each raising a ``ValueError`` / ``TypeError`` that names the argument, cheap enough to run
once at the start of a call, before any expensive work: plain numbers, flags and strings by annotation
([`check_numeric_fields`] for a config's fields, [`check_arguments`] for a function's parameters), then paths and repo
ids, tensors, token ids, data sets and models.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import torch


def _value_problem(name: str, kind: str, value, optional: bool):
    """A ``TypeError``/``ValueError`` naming ``name`` if ``value`` is not a valid ``kind`` (int, float, bool, str)."""
    if value is None and optional:
        return None
    if kind == "bool":
        if not isinstance(value, bool) and not (hasattr(value, "dtype") and str(getattr(value, "dtype", "")) == "bool"):
            return TypeError(f"`{name}` must be True or False, got {value!r} of type {type(value).__name__}.")
        return None
    if kind == "str":
        if not isinstance(value, str):
            return TypeError(f"`{name}` must be a string, got {value!r} of type {type(value).__name__}.")
        return None
    wanted = numbers.Integral if kind == "int" else numbers.Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        what = "an integer" if kind == "int" else "a number"
        return TypeError(f"`{name}` must be {what} ({kind}), got {value!r} of type {type(value).__name__}.")
    if not math.isfinite(value):
        return ValueError(f"`{name}` must be finite, got {value!r}.")
    return None


def _annotation_kind(annotation) -> tuple[str | None, bool]:
    """(``int``/``float``/``bool``/``str`` or ``None`` for anything else, whether ``None`` is allowed).

    ``annotation`` is a string (``from __future__ import annotations``) or a resolved type: ``HfArgumentParser``
    replaces a dataclass's string annotations with the types they name."""
    import types
    import typing

    if isinstance(annotation, str):
        text = annotation.replace("typing.", "").replace("Optional[", "").replace("]", "|None").replace(" ", "")
        parts = [p for p in text.split("|") if p]
    else:
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        members = typing.get_args(annotation) if union else (annotation,)
        parts = ["None" if m is type(None) else getattr(m, "__name__", str(m)) for m in members]
    optional = "None" in parts or "NoneType" in parts
    parts = [p for p in parts if p not in ("None", "NoneType")]
    if parts in (["int"], ["bool"], ["str"], ["float"]):
        return parts[0], optional
    if sorted(parts) == ["float", "int"]:
        return "float", optional
    return None, optional


@functools.cache
def _declared_types(cls: type) -> dict:
    """The annotations as the class declares them (``HfArgumentParser`` rewrites ``dataclasses.fields(...).type``,
    dropping ``| None``, so the field objects cannot be trusted after a config was parsed from the command line)."""
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not evaluate here: fall back to the field objects
        return {}


def check_numeric_fields(config, base: type) -> None:
    """Refuse a wrongly typed value (``TypeError``) or a NaN/infinity (``ValueError``) in ``config``'s own fields.

    ``config`` is a dataclass config; the fields it declares beyond ``base``'s (e.g. ``TrainingArguments``)
    whose annotation is ``int``, ``float``, ``bool`` or ``str`` (optionally ``| None``) are checked, naming the
    field: a bool is not an integer size, a string is not a number, ``2`` is not a flag. Range checks stay in each
    config's ``__post_init__``; this runs first so that they see real numbers.
    """
    import dataclasses

    inherited = {f.name for f in dataclasses.fields(base)} if dataclasses.is_dataclass(base) else set()
    hints = _declared_types(type(config))
    for f in dataclasses.fields(config):
        if f.name in inherited and f.name not in type(config).__dict__.get("__annotations__", {}):
            continue
        kind, optional = _annotation_kind(hints.get(f.name, f.type))
        if kind is None:
            continue
        error = _value_problem(f.name, kind, getattr(config, f.name), optional)
        if error is not None:
            raise error


def check_arguments(function, values: dict) -> None:
    """Refuse wrongly typed or non-finite arguments of ``function`` (a constructor or ``__call__``), by annotation.

    Call it first in the body with ``locals()``: every parameter annotated ``int``, ``float``, ``bool`` or ``str``
    (optionally ``| None``, or with a ``None`` default) is checked as [`check_numeric_fields`] does, naming it.
    Generated from the signature, so a new argument is checked as soon as it is added.
    """
    import inspect

    for name, param in inspect.signature(function).parameters.items():
        if name not in values or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        kind, optional = _annotation_kind(param.annotation)
        if kind is None:
            continue
        error = _value_problem(name, kind, values[name], optional or param.default is None)
        if error is not None:
            raise error


def check_text(name: str, value: Any, what: str = "a path or Hub repo id") -> str:
    """``value`` as a non-empty string: ``None``, ``""`` or blanks, or a non-string (but ``os.PathLike``) are refused
    (``""`` would otherwise mean the current folder)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be {what} (a string), got {type(value).__name__} {value!r}.")
    if not value.strip():
        raise ValueError(f"`{name}` must be {what}, got an empty string.")
    return value


def check_finite(name: str, value: Any) -> None:
    """Refuse a floating tensor (or a list of them) holding NaN or infinity; other inputs (PIL images, integer
    tensors, ``None``) pass. One reduction per tensor."""
    tensors = value if isinstance(value, (list, tuple)) else [value]
    for tensor in tensors:
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"`{name}` holds {bad} non-finite value(s) (NaN or inf) of {tensor.numel()}: the output "
                             "would be NaN.")


def check_token_ids(name: str, ids: Any, vocab_size: int) -> None:
    """Refuse token ids outside ``[0, vocab_size)`` (an embedding lookup would fail with an ``IndexError``, or a
    negative id silently wrap)."""
    ids = torch.as_tensor(ids)
    if ids.numel() == 0:
        return
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer token ids, got dtype {ids.dtype}.")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"`{name}` holds token ids outside the vocabulary [0, {vocab_size}): min {low}, max {high}.")


def check_token_id(name: str, value: Any, vocab_size: int) -> None:
    """One token id (e.g. ``mask_token_id``): an ``int`` in ``[0, vocab_size)``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an integer token id, got {type(value).__name__} {value!r}.")
    if not 0 <= value < vocab_size:
        raise ValueError(f"`{name}`={value} is outside the vocabulary [0, {vocab_size}).")


def check_not_empty(name: str, dataset: Any) -> None:
    """Refuse a data set with no examples (a sized one; streams are not counted)."""
    if dataset is not None and hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ValueError(f"`{name}` is empty: there is nothing to train on.")


def vocab_size_of(model) -> int | None:
    """The number of rows of the model's input embedding (what token ids may index), else its config's."""
    try:
        return int(model.get_input_embeddings().num_embeddings)
    except (AttributeError, NotImplementedError, TypeError):
        size = getattr(getattr(model, "config", None), "vocab_size", None)
        return size if isinstance(size, int) else None


def check_bidirectional(name: str, model) -> None:
    """Refuse a causal language model where a bidirectional (masked) denoiser is expected: its config says
    ``is_decoder``, its class is a ``...ForCausalLM`` / ``...LMHeadModel``, or its ``model_type`` has a causal-LM
    class in transformers but no masked-LM one (Llama, GPT-2, Qwen2, ...). It would train and sample, wrongly:
    each position sees only the tokens to its left."""
    base = getattr(model, "get_base_model", lambda: model)()
    config = getattr(base, "config", None)
    cls = type(base).__name__
    reason = None
    if getattr(config, "is_decoder", False):
        reason = "its config has `is_decoder=True`"
    elif cls.endswith(("ForCausalLM", "LMHeadModel")):
        reason = f"it is a {cls}"
    else:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )

        model_type = getattr(config, "model_type", None)
        if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            reason = f"its model_type {model_type!r} is a causal (left-to-right) architecture"
    if reason is not None:
        raise ValueError(f"`{name}` must be a bidirectional (masked) denoiser, but {reason}: a causal model sees only "
                         "the tokens to the left of each position. Use a masked LM (e.g. BERT, ModernBERT, MDLM).")


def check_vocab_covers_tokenizer(model_name: str, model, tokenizer) -> None:
    """Refuse a model whose embedding has fewer rows than the tokenizer has tokens (ids past it fail mid-run)."""
    size = vocab_size_of(model)
    if size is not None and tokenizer is not None and hasattr(tokenizer, "__len__") and len(tokenizer) > size:
        raise ValueError(f"`{model_name}` has a vocabulary of {size} tokens but the tokenizer (`processing_class`) "
                         f"has {len(tokenizer)}: ids >= {size} would index past the embedding. Resize the model's "
                         "embeddings (`model.resize_token_embeddings(len(tokenizer))`) or use its own tokenizer.")


def check_saved_folder(name: str, folder: Path) -> None:
    """Refuse a folder that holds no saved artifact (no marker file): pushing it would upload nothing useful."""
    from hfgen.hub.saving import MARKER_NAMES

    if not any((folder / marker).is_file() for marker in MARKER_NAMES):
        raise ValueError(f"`{name}` {str(folder)!r} holds no saved artifact: expected one of {', '.join(MARKER_NAMES)} "
                         "(write it with `save_pretrained`, or a trainer's `save_model`).")


def check_pipeline_subfolders(folder: Path) -> None:
    """Name each component folder that ``model_index.json`` lists but that is missing (else the loader reports a
    missing ``config.json`` in the pipeline's root)."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a missing or broken index is reported by the loader, naming the file
    if not isinstance(index, dict):
        return
    missing = [key for key, value in index.items() if not key.startswith("_") and isinstance(value, list)
               and len(value) == 2 and value[1] is not None and not (folder / key).is_dir()]
    if missing:
        raise ValueError(f"{folder} is missing the component folder(s) {', '.join(m + '/' for m in missing)} that "
                         "model_index.json lists: the save is incomplete (or a folder was deleted).")


def check_denoiser_inputs(denoiser, sequences: torch.Tensor, mask_token_id: int, ids_name: str, length_name: str) -> None:
    """Sequences for a token denoiser: ``mask_token_id`` and every id inside its vocabulary, and no longer than
    its ``max_position_embeddings`` (the position embedding would fail with a size mismatch)."""
    vocab = vocab_size_of(denoiser)
    if vocab is not None:
        check_token_id("mask_token_id", mask_token_id, vocab)
        check_token_ids(ids_name, sequences, vocab)
    limit = getattr(getattr(denoiser, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and sequences.shape[-1] > limit:
        raise ValueError(f"`{length_name}` gives sequences of {sequences.shape[-1]} tokens, but the denoiser takes at most "
                         f"{limit} (its `max_position_embeddings`).")


def check_step_in_plan(step_index: int | None, num_steps: int) -> None:
    """Refuse a scheduler ``step`` before ``set_timesteps`` or past the end of its plan."""
    if step_index is None:
        raise ValueError("Call `set_timesteps` before `step`.")
    if step_index >= num_steps:
        raise ValueError(f"`step` called after all {num_steps} planned steps were taken (the sampling plan is "
                         "finished); call `set_timesteps` again to sample anew.")


def check_forbidden_tokens(forbidden_tokens: Any, mask_token_id: int, vocab_size: int) -> None:
    """``forbidden_tokens`` (a boolean mask over the vocabulary) must leave a token to draw besides the mask."""
    check_token_id("mask_token_id", mask_token_id, vocab_size)
    if forbidden_tokens is None:
        return
    forbidden = torch.as_tensor(forbidden_tokens)
    if forbidden.dtype != torch.bool or forbidden.shape[-1:] != (vocab_size,):
        raise ValueError(f"`forbidden_tokens` must be a boolean mask over the {vocab_size} tokens, got dtype "
                         f"{forbidden.dtype} and shape {tuple(forbidden.shape)}.")
    allowed = ~forbidden.reshape(-1, vocab_size)
    allowed[:, mask_token_id] = False
    message = ("`forbidden_tokens` forbids every token (the mask token is never drawn either): there is nothing "
               "left to sample.")
    something_left = allowed.any(dim=-1).all()
    if something_left.device.type == "cpu":
        if not bool(something_left):
            raise ValueError(message)
    elif something_left.device.type != "meta":  # an accelerator checks it without a host sync
        torch._assert_async(something_left, message)
