"""Checks of arguments that are not plain numbers (those are [`hfgen.guards.check_arguments`]'s): paths and repo
ids, tensors, token ids, data sets, models. Each raises a ``ValueError`` / ``TypeError`` naming the argument, and
is cheap enough to run once at the start of a call, before any expensive work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


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
