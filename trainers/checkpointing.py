"""Checkpoints, resume and atomic saves of every hfgen trainer.

[`CheckpointingMixin`] is the base of [`~hfgen.trainers.base.HfgenTrainerMixin`] (which goes first among a trainer's
bases) and changes only this of ``transformers.Trainer``:

- ``training_step``: a NaN or infinite loss raises [`NonFiniteLossError`] naming the step, *before* the optimizer step,
  so the model still holds the last good parameters and no checkpoint is written from the bad ones (``transformers``
  would otherwise hide it from the logs with ``logging_nan_inf_filter`` and, in fp32/bf16, step the optimizer on NaN
  gradients; fp16's gradient scaler would skip the step, but a forward pass that overflows to inf is a real fault
  there too). Under several processes the ranks agree.
- every checkpoint lists its files (weights, optimizer, scheduler, RNG and trainer states) in a checksum file once it
  is complete (a callback's ``on_save``), so a damaged one is caught before resuming;
- ``checkpointed_modules()`` and ``save_training_state`` / ``load_training_state``: extra training state a trainer
  declares (an EMA, a target network, a buffered rollout) is saved with every checkpoint and restored on resume, or
  the resume is refused;
- ``train(resume_from_checkpoint=...)``: ``True`` picks the newest *complete* checkpoint (one whose
  ``trainer_state.json``, written last by ``transformers``, exists and whose checksums match); a path to an
  incomplete or corrupted checkpoint is refused with a ``ValueError`` instead of resuming silently from step 0 or
  from partial weights.

[`committed_save`] is how ``save_model`` writes: through [`hfgen.hub.atomic_save_dir`] (temporary folder, checksums,
rename), so ``trainer.save_model()`` and each ``checkpoint-N`` hold whole weights or no marker file at all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import TrainerCallback

from hfgen.hub import SAFE_WEIGHT_SUFFIX, atomic_save_dir, verify_folder, write_checksums

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


def _is_sharded(trainer) -> bool:
    """DeepSpeed or FSDP: every rank writes its shard, and transformers checks such checkpoints itself."""
    return getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False)


@contextlib.contextmanager
def committed_save(trainer, output_dir: str) -> Iterator[str]:
    """The folder a save of ``trainer`` writes into: a staging folder committed to ``output_dir`` on success
    ([`atomic_save_dir`]), or ``output_dir`` itself where other ranks write too (sharded saves) or this rank writes
    nothing."""
    if not trainer.args.should_save or _is_sharded(trainer):
        yield output_dir
        return
    with atomic_save_dir(output_dir) as tmp:
        yield str(tmp)


class _ChecksumCallback(TrainerCallback):
    """After each checkpoint (``on_save``, once transformers wrote its last file): list every file of it, the
    optimizer, scheduler, RNG and trainer states too, so that a damaged one is caught before resuming."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        if _is_sharded(trainer):
            return
        if trainer.accelerator.num_processes > 1:  # every rank has written its rng_state_<k>.pth
            trainer.accelerator.wait_for_everyone()
        run_dir = trainer._get_output_dir(trial=getattr(trainer, "_trial", None))
        folder = os.path.join(run_dir, f"checkpoint-{state.global_step}")
        if args.should_save and os.path.isdir(folder):
            write_checksums(folder)


class CheckpointingMixin:
    """Non-finite-loss guard, checksummed checkpoints, extra training state and checked resume for a
    ``transformers.Trainer`` subclass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.callback_handler.callbacks.insert(0, _ChecksumCallback(self))  # before any user callback's on_save

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

    # ---------------------------------------------------------------------------------- training state

    def checkpointed_modules(self) -> dict[str, torch.nn.Module]:
        """Training state beyond the model and optimizer that an exact resume needs (e.g. an EMA), by file stem:
        each is saved as ``<name>.safetensors`` with the optimizer state of every checkpoint and restored on
        ``resume_from_checkpoint``. Override in a trainer; none by default."""
        return {}

    def save_training_state(self, folder: str) -> None:
        """Write training state that is not a module (counters, buffered batches) into the checkpoint ``folder``;
        called on every process after the optimizer state and [`checkpointed_modules`]. Nothing by default."""

    def load_training_state(self, folder: str) -> None:
        """Restore what [`save_training_state`] wrote to the checkpoint ``folder``. Nothing by default."""

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            from safetensors.torch import save_model

            for name, module in self.checkpointed_modules().items():
                save_model(module, os.path.join(output_dir, f"{name}{SAFE_WEIGHT_SUFFIX}"))
        self.save_training_state(output_dir)

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
        self.load_training_state(checkpoint)

    # ------------------------------------------------------------------------------------------- resume

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        if _is_sharded(self):
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
