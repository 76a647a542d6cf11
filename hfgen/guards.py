"""Guards shared by every hfgen trainer: stop on a non-finite loss, save atomically, resume only from whole checkpoints.

[`GuardedTrainerMixin`] is a base of [`~hfgen.trainers.base.HfgenTrainerMixin`], which goes first among a trainer's
bases (``class NFTTrainer(HfgenTrainerMixin, GRPOTrainer)``); it wraps these ``transformers.Trainer`` methods and
changes nothing else:

- ``training_step``: a NaN or infinite loss raises [`NonFiniteLossError`] naming the step, *before*
  the optimizer step, so the model still holds the last good parameters and no checkpoint is written
  from the bad ones (``transformers`` would otherwise hide it from the logs with ``logging_nan_inf_filter``
  and, in fp32/bf16, step the optimizer on NaN gradients; fp16's gradient scaler would skip the step, but a
  forward pass that overflows to inf is a real fault there too). Under several processes the ranks agree.
- ``save_model``: writes through [`hfgen.hub.atomic_save_dir`] (temporary folder, checksums, rename),
  so ``trainer.save_model()`` and each ``checkpoint-N`` hold whole weights or no marker file at all.
- ``train(resume_from_checkpoint=...)``: ``True`` picks the newest *complete* checkpoint (one whose
  ``trainer_state.json``, written last by ``transformers``, exists); a path to an incomplete or corrupted
  checkpoint is refused with a ``ValueError`` instead of resuming silently from step 0 or from partial weights.
- ``checkpointed_modules()``: extra training state a trainer declares (an EMA, a target network) is saved
  with every checkpoint and restored on resume, or the resume is refused.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import numbers
import os
import re
from pathlib import Path

import torch

from hfgen.hub import CHECKSUMS_NAME, SAFE_WEIGHT_SUFFIX, atomic_save_dir, verify_folder, write_checksums

TRAINER_STATE_NAME = "trainer_state.json"
logger = logging.getLogger(__name__)
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite; training stopped before the optimizer step."""


def checkpoint_problem(folder: str | os.PathLike, hashes: bool = True) -> str | None:
    """Why ``folder`` is not a complete Trainer checkpoint, or ``None`` if it is (``hashes=False``: sizes only)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "it is not a directory"
    state = folder / TRAINER_STATE_NAME
    if not state.is_file():
        return f"it has no {TRAINER_STATE_NAME}, which transformers writes last (the save was interrupted)"
    if not any(folder.rglob("*" + SAFE_WEIGHT_SUFFIX)):
        return "it holds no weights (*.safetensors)"
    try:
        verify_folder(folder, hashes=hashes, pickles_required=True)  # weights, configs, optimizer.pt, scheduler.pt, rng_state*.pth, state
        step = json.loads(state.read_text(encoding="utf-8")).get("global_step")
    except (ValueError, AttributeError, OSError) as err:
        return str(err)
    match = _CHECKPOINT_RE.match(folder.name)
    if match and step != int(match.group(1)):
        return f"{state} says global_step={step!r}, but the folder is {folder.name} (edited or mixed up)"
    return None


def last_complete_checkpoint(output_dir: str | os.PathLike, hashes: bool = True) -> str | None:
    """The newest ``checkpoint-N`` under ``output_dir`` that [`checkpoint_problem`] accepts; each newer one that
    it skips is logged as a warning naming the problem (the damaged file)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in output_dir.iterdir() if (m := _CHECKPOINT_RE.match(p.name))),
                   reverse=True)
    for _, path in steps:
        problem = checkpoint_problem(path, hashes)
        if problem is None:
            return str(path)
        logger.warning("Skipping %s: it is not a complete checkpoint: %s", path, problem)
    return None


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


def make_epochs_resumable(sampler):
    """Make TRL's ``RepeatSampler`` (GRPO-style trainers) shuffle each epoch as an unbroken run does after a resume.

    It seeds its generator once and draws one permutation per epoch, so epoch ``e``'s order depends on how many
    epochs *this process* iterated: a run resumed after the first epoch starts a fresh generator and shuffles every
    later epoch differently. With this, ``set_epoch(e)`` (which ``Trainer`` calls at the start of each epoch)
    reseeds the generator and replays ``e`` permutations, so epoch ``e`` gets the same order in both runs (and the
    same as TRL's for a run that is never resumed). Returns ``sampler``.
    """
    def set_epoch(epoch: int) -> None:
        if sampler.shuffle and sampler.seed is not None:
            sampler.generator.manual_seed(sampler.seed)
            for _ in range(epoch):
                torch.randperm(sampler.num_samples, generator=sampler.generator)

    if getattr(sampler, "shuffle", False) and hasattr(sampler, "generator") and not hasattr(sampler, "set_epoch"):
        sampler.set_epoch = set_epoch
    return sampler


class GuardedTrainerMixin:
    """Non-finite-loss guard, atomic saves and checked resume for a ``transformers.Trainer`` subclass."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = torch.tensor([0.0 if bool(torch.isfinite(loss).all()) else 1.0], device=loss.device)
        if self.accelerator.num_processes > 1:  # every rank must stop, not only the one that saw it
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() > 0:
            step = self.state.global_step + 1
            value = loss.detach().float().mean().item()
            last = last_complete_checkpoint(self.args.output_dir, hashes=False)
            raise NonFiniteLossError(
                f"Non-finite training loss ({value if not math.isfinite(value) else 'on another rank'}) at step {step}"
                f" of {self.state.max_steps}: training stopped before the optimizer step, so the model holds the "
                f"parameters after step {step - 1} and nothing was saved from the bad step. Last complete checkpoint: "
                f"{last or 'none saved yet'}. Lower the learning rate or check the batch, then resume from it."
            )
        return loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save or getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            return super().save_model(output_dir, _internal_call)  # sharded saves write from every rank
        with atomic_save_dir(output_dir) as tmp:
            super().save_model(str(tmp), _internal_call=True)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def checkpointed_modules(self) -> dict[str, torch.nn.Module]:
        """Training state beyond the model and optimizer that an exact resume needs (e.g. an EMA), by file stem:
        each is saved as ``<name>.safetensors`` with the optimizer state of every checkpoint and restored on
        ``resume_from_checkpoint``. Override in a trainer; none by default."""
        return {}

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            from safetensors.torch import save_model

            for name, module in self.checkpointed_modules().items():
                save_model(module, os.path.join(output_dir, f"{name}{SAFE_WEIGHT_SUFFIX}"))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        from safetensors.torch import load_model

        for name, module in self.checkpointed_modules().items():
            path = os.path.join(checkpoint, f"{name}{SAFE_WEIGHT_SUFFIX}")
            if not os.path.isfile(path):
                raise ValueError(f"`resume_from_checkpoint` {checkpoint!r} has no {name}{SAFE_WEIGHT_SUFFIX}: the "
                                 f"trainer's {name} cannot be restored, so the run would not resume exactly.")
            # onto the module's own device: args.device is "cpu:0" under CPU DDP, which safetensors refuses
            load_model(module, path, device=str(next(module.parameters()).device))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            return
        if self.accelerator.num_processes > 1:  # every rank has written its rng_state_<k>.pth
            self.accelerator.wait_for_everyone()
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.args.should_save and os.path.isdir(folder):
            # list the optimizer, scheduler, RNG and trainer states too, so a damaged one is caught before resuming
            write_checksums(folder)

    def _push_from_checkpoint(self, checkpoint_folder):
        # transformers copies the checkpoint's weights into output_dir, then uploads it in the background: drop the
        # checksums of the previous weights first (never push a stale list), and list the new ones
        manifest = Path(self.args.output_dir) / CHECKSUMS_NAME
        stale = self.args.should_save and manifest.is_file()
        if stale:
            manifest.unlink()
        super()._push_from_checkpoint(checkpoint_folder)
        if stale:
            write_checksums(self.args.output_dir)

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        if getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            pass  # sharded checkpoints (no safetensors of the whole model): transformers checks them itself
        elif resume_from_checkpoint is True:  # the newest intact checkpoint; damaged newer ones are named in warnings
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"`resume_from_checkpoint=True` but {self.args.output_dir} holds no complete checkpoint.")
        elif resume_from_checkpoint:
            problem = checkpoint_problem(resume_from_checkpoint)
            if problem is not None:
                raise ValueError(f"`resume_from_checkpoint` {str(resume_from_checkpoint)!r} is not a complete "
                                 f"checkpoint: {problem}.")
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
