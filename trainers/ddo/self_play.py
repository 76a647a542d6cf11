"""DDO self-play rounds (arXiv 2503.01103, §3.3) and the samplers that produce reference samples.

Round n: freeze the best model of round n−1 as the reference ``θ*_{n−1}``, generate its samples, reset θ to it,
train with a fresh optimizer while evaluating a user metric densely, and keep the best checkpoint ``θ*_n``
("the optimization process of DDO provides useful gradient information in the early stage but does not converge
to the data distribution in the final", so the last checkpoint is not the one to keep).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import TrainerCallback, set_seed
from transformers.utils import logging

from hfgen.hub import atomic_save_dir, verify_folder

from ..utils import model_output
from .ddo_config import DDOConfig
from .ddo_trainer import DDOTrainer

logger = logging.get_logger(__name__)


@torch.no_grad()
def generate_diffusion_samples(model: nn.Module, noise_scheduler, num_samples: int, sample_shape: tuple[int, ...],
                               num_inference_steps: int = 20, batch_size: int = 256,
                               generator: torch.Generator | None = None,
                               class_labels: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """Sample a denoiser with the stock Diffusers loop (``scale_model_input`` / ``step``) of a copy of its scheduler.

    Returns a list of examples ``{"pixel_values": (C, H, W)}`` (with ``class_labels`` when given), ready to be a
    ``fake_dataset``.
    """
    scheduler = type(noise_scheduler).from_config(noise_scheduler.config)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    samples = []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        cond = {} if class_labels is None else {"class_labels": class_labels[start:start + n].to(device)}
        scheduler.set_timesteps(num_inference_steps, device=device)
        x = torch.randn((n, *sample_shape), generator=generator).to(device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            out = model(scheduler.scale_model_input(x, t), t, **cond)
            x = scheduler.step(model_output(out), t, x, generator=generator).prev_sample
        samples.append(x.cpu())
    model.train(was_training)
    images = torch.cat(samples)
    if class_labels is None:
        return [{"pixel_values": img} for img in images]
    return [{"pixel_values": img, "class_labels": label} for img, label in zip(images, class_labels.cpu())]


@torch.no_grad()
def generate_lm_samples(model: nn.Module, prompt_ids: torch.Tensor, num_samples: int, max_new_tokens: int,
                        batch_size: int = 256, seed: int = 0, **generate_kwargs: Any) -> list[dict[str, torch.Tensor]]:
    """Ancestral samples (``do_sample=True``, temperature 1, no top-k/p) of a causal LM after ``prompt_ids`` (P,).

    Returns examples ``{"input_ids", "labels"}`` with the prompt masked (-100) in ``labels``. Generation stops only
    at ``max_new_tokens`` unless ``eos_token_id`` is passed.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    examples = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            prompts = prompt_ids.to(device).unsqueeze(0).repeat(n, 1)
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0, top_p=1.0,
                                 temperature=1.0, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                 **generate_kwargs)
            for ids in out.cpu():
                labels = ids.clone()
                labels[: len(prompt_ids)] = -100
                examples.append({"input_ids": ids, "labels": labels})
    model.train(was_training)
    return examples


# ------------------------------------------------------------------------------------------ self-play


@dataclass
class SelfPlayRound:
    """One round: the metric of its reference (step 0) and of every evaluated step, and the best one kept."""

    round: int
    reference_metric: float
    best_metric: float
    best_step: int
    history: list[tuple[int, float]] = field(default_factory=list)
    best_model_path: str | None = None


@dataclass
class SelfPlayOutput:
    model: nn.Module  # the best model of the last round
    rounds: list[SelfPlayRound]


class _KeepBestCallback(TrainerCallback):
    """Evaluates ``metric_fn(model)`` at step 0 and every ``every`` steps; keeps a CPU copy of the best weights.

    ``evaluated_model`` (the trainer's EMA when ``ema_decay`` is set) replaces the trained model when given.
    """

    def __init__(self, metric_fn: Callable[[nn.Module], float], every: int, greater_is_better: bool):
        self.metric_fn, self.every, self.greater_is_better = metric_fn, every, greater_is_better
        self.history: list[tuple[int, float]] = []
        self.best: tuple[int, float, dict[str, torch.Tensor]] | None = None
        self.evaluated_model: nn.Module | None = None

    def _evaluate(self, model: nn.Module, step: int) -> None:
        model = self.evaluated_model if self.evaluated_model is not None else model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            value = float(self.metric_fn(model))
        model.train(was_training)
        self.history.append((step, value))
        better = self.best is None or (value > self.best[1] if self.greater_is_better else value < self.best[1])
        if better:
            self.best = (step, value, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._evaluate(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._evaluate(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.history[-1][0] != state.global_step:
            self._evaluate(model, state.global_step)


def ddo_self_play(model: nn.Module, args: DDOConfig, train_dataset,
                  generate_fn: Callable[[nn.Module, int, int], Any], metric_fn: Callable[[nn.Module], float], *,
                  greater_is_better: bool = False, noise_scheduler=None,
                  round_callback: Callable[[SelfPlayRound, nn.Module], None] | None = None,
                  resume_from_checkpoint: bool | str | None = None, **trainer_kwargs: Any) -> SelfPlayOutput:
    """Run ``args.num_rounds`` DDO self-play rounds starting from the pretrained ``model``.

    Args:
        model: the pretrained model; it is the first reference (it is copied, never modified).
        args: a [`DDOConfig`]; each round trains ``max_steps`` / ``num_train_epochs`` in ``output_dir/round_<n>``.
        train_dataset: real data (see [`DDOTrainer`]).
        generate_fn: ``generate_fn(reference, num_samples, round) -> fake_dataset``; called with
            ``args.num_reference_samples`` (e.g. a wrapper of [`generate_diffusion_samples`]), after seeding
            ``random``/NumPy/torch with a seed derived from ``args.seed`` and the round, so that a generator that
            draws from the global RNG gives the same samples in a resumed run.
        metric_fn: ``metric_fn(model) -> float``; evaluated on the reference at step 0 and every
            ``args.self_play_eval_steps``. Make it deterministic (fixed seeds) so checkpoints are comparable.
            With ``args.ema_decay`` set it is evaluated on the round's EMA of θ (reset to the reference at the
            round's start), and the best EMA becomes the next reference (the paper's EDM runs keep an EMA; App. C as
            transcribed by a third party, not verified).
        greater_is_better: direction of the metric (False for FID-like metrics).
        round_callback: ``round_callback(round, best_model)`` after each round run by this call (e.g. a test-set
            evaluation); rounds restored by ``resume_from_checkpoint`` are not replayed.
        resume_from_checkpoint: ``True`` resumes from the newest ``output_dir/self_play_checkpoint-<n>``; a path
            resumes from that folder. Completed rounds are skipped (their best weights become the reference and
            their records are returned); a round cut short is re-run from its start, so the result equals the
            unbroken run's. A folder written with other settings (``num_rounds``, ``alpha``, ``beta``, the
            optimizer, ...) or for another architecture is refused with a ``ValueError``.
        noise_scheduler, trainer_kwargs: passed to every round's [`DDOTrainer`] (``callbacks`` are added to the
            keep-best callback).

    Each round's best model is saved in ``output_dir/round_<n>/best`` and the metrics of all rounds so far in
    ``output_dir/self_play.json``; ``trainer.log`` also records ``self_play/*`` values in the round's log history.
    After round ``n`` the resume state is written atomically ([`hfgen.hub.atomic_save_dir`]) to
    ``output_dir/self_play_checkpoint-<n>``: ``model.safetensors`` (the best weights, i.e. the next reference) and
    ``self_play_state.json`` (round index, settings, architecture, every round's record); the previous one is
    then deleted. Each round's training is seeded from ``args.seed`` (as ``Trainer`` does), so no RNG state needs
    saving.
    """
    if trainer_kwargs.get("peft_config") is not None:  # each round's best θ must load into the next reference
        raise ValueError("`peft_config` is not supported by `ddo_self_play`: a round's best model becomes the next "
                         "reference, which needs full weights. Train with `DDOTrainer(..., peft_config=...)` and merge "
                         "the adapter (`merge_and_unload`) before a next round, or run self-play without an adapter.")
    fingerprint = _fingerprint(model, args, greater_is_better)
    rounds: list[SelfPlayRound] = []
    best_model = model
    if resume_from_checkpoint:
        checkpoint = _resolve_self_play_checkpoint(resume_from_checkpoint, args.output_dir)
        rounds, best_model = _load_self_play_checkpoint(checkpoint, model, fingerprint)
    elif _self_play_checkpoints(args.output_dir):
        logger.warning(f"{args.output_dir} holds self-play checkpoints of an earlier run; they are replaced after "
                       "round 1. Pass `resume_from_checkpoint=True` to continue that run instead.")
    extra_callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
    for n in range(len(rounds) + 1, args.num_rounds + 1):
        reference = copy.deepcopy(best_model).eval().requires_grad_(False)
        set_seed(_round_seed(args.seed, n))  # the global RNG state would otherwise depend on the rounds before
        fake_dataset = generate_fn(reference, args.num_reference_samples, n)
        policy = copy.deepcopy(best_model).train().requires_grad_(True)  # θ ← θ_ref, fresh optimizer below
        round_args = copy.deepcopy(args)
        round_args.output_dir = os.path.join(args.output_dir, f"round_{n}")
        keep_best = _KeepBestCallback(metric_fn, args.self_play_eval_steps, greater_is_better)
        trainer = DDOTrainer(policy, ref_model=reference, args=round_args, train_dataset=train_dataset,
                             fake_dataset=fake_dataset, noise_scheduler=noise_scheduler,
                             callbacks=[keep_best, *extra_callbacks], **trainer_kwargs)
        keep_best.evaluated_model = trainer.ema_model  # None without `ema_decay`: θ itself is evaluated and kept
        trainer.train()
        best_step, best_metric, best_state = keep_best.best
        policy.load_state_dict(best_state)
        best_path = os.path.join(round_args.output_dir, "best")
        trainer.save_model(best_path)
        result = SelfPlayRound(n, keep_best.history[0][1], best_metric, best_step, keep_best.history, best_path)
        trainer.log({"self_play/round": n, "self_play/reference_metric": result.reference_metric,
                     "self_play/best_metric": best_metric, "self_play/best_step": best_step})
        rounds.append(result)
        if args.should_save:
            _write_json(os.path.join(args.output_dir, "self_play.json"), [asdict(r) for r in rounds])
            _save_self_play_checkpoint(args.output_dir, n, policy, rounds, fingerprint)
        if round_callback is not None:
            round_callback(result, policy)
        best_model = policy
    if best_model is model:  # nothing to run or restore: still return a copy, never the caller's model
        best_model = copy.deepcopy(model)
    return SelfPlayOutput(model=best_model, rounds=rounds)


# ------------------------------------------------------------------------------------------ resume

STATE_NAME = "self_play_state.json"
WEIGHTS_NAME = "model.safetensors"
CHECKPOINT_PREFIX = "self_play_checkpoint-"
# The settings a resumed run must share with the run that wrote the checkpoint (others, e.g. logging, may change).
RESUME_FIELDS = ("num_rounds", "num_reference_samples", "self_play_eval_steps", "alpha", "beta",
                 "normalize_by_max_alpha", "disable_dropout", "p_mean", "p_std", "snr_gamma", "cond_drop_prob",
                 "null_class_label", "null_condition_token_id", "ema_decay", "seed", "data_seed",
                 "full_determinism", "max_steps", "num_train_epochs", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs",
                 "warmup_steps", "weight_decay", "optim", "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon",
                 "max_grad_norm", "bf16", "fp16", "tf32")


def _round_seed(seed: int, round_index: int) -> int:
    """A seed for round ``round_index`` that depends only on the base seed and the round (not on earlier rounds)."""
    return int.from_bytes(hashlib.sha256(f"ddo-self-play:{seed}:{round_index}".encode()).digest()[:4], "little")


def _fingerprint(model: nn.Module, args: DDOConfig, greater_is_better: bool) -> dict[str, Any]:
    settings = args.to_dict()
    config = {k: settings[k] for k in RESUME_FIELDS if k in settings}
    config["greater_is_better"] = greater_is_better
    architecture = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
                    "tensors": {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}}
    return json.loads(json.dumps({"config": config, "architecture": architecture}))  # compared with a JSON file


def _self_play_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """``(round, path)`` of the ``self_play_checkpoint-<n>`` folders holding a state file, newest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        suffix = name[len(CHECKPOINT_PREFIX):]
        path = os.path.join(output_dir, name)
        if name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() and os.path.isfile(os.path.join(path, STATE_NAME)):
            found.append((int(suffix), path))
    return sorted(found, reverse=True)


def _resolve_self_play_checkpoint(resume_from_checkpoint: bool | str, output_dir: str) -> str:
    if resume_from_checkpoint is True:
        found = _self_play_checkpoints(output_dir)
        if not found:
            raise ValueError(f"`resume_from_checkpoint=True` but {output_dir} holds no {CHECKPOINT_PREFIX}<n> folder "
                             f"with a {STATE_NAME} (no self-play round was completed there).")
        return found[0][1]
    if not isinstance(resume_from_checkpoint, (str, os.PathLike)):
        raise TypeError("`resume_from_checkpoint` must be a bool or a path, got "
                        f"{type(resume_from_checkpoint).__name__}.")
    if not os.path.isfile(os.path.join(resume_from_checkpoint, STATE_NAME)):
        raise ValueError(f"`resume_from_checkpoint` {str(resume_from_checkpoint)!r} has no {STATE_NAME}: it is not a "
                         "self-play checkpoint, or its save was interrupted.")
    return str(resume_from_checkpoint)


def _load_self_play_checkpoint(folder: str, model: nn.Module,
                               fingerprint: dict[str, Any]) -> tuple[list[SelfPlayRound], nn.Module]:
    state_path = os.path.join(folder, STATE_NAME)
    with open(state_path) as f:
        state = json.load(f)
    saved_config, config = state["config"], fingerprint["config"]
    changed = sorted(k for k in set(saved_config) | set(config) if saved_config.get(k) != config.get(k))
    if changed:
        diff = ", ".join(f"`{k}`: {saved_config.get(k)!r} there, {config.get(k)!r} now" for k in changed)
        raise ValueError(f"Cannot resume from {state_path}: it was written with other settings ({diff}).")
    saved_arch, arch = state["architecture"], fingerprint["architecture"]
    if saved_arch != arch:
        if saved_arch["class"] != arch["class"]:
            detail = f"a {saved_arch['class']}, not a {arch['class']}"
        else:
            keys = sorted(k for k in set(saved_arch["tensors"]) | set(arch["tensors"])
                          if saved_arch["tensors"].get(k) != arch["tensors"].get(k))[:3]
            detail = "; ".join(f"{k}: {saved_arch['tensors'].get(k)} there, {arch['tensors'].get(k)} now"
                               for k in keys)
        raise ValueError(f"Cannot resume from {state_path}: it was written for another `model` architecture "
                         f"({detail}).")
    if state["round"] > config["num_rounds"] or len(state["rounds"]) != state["round"]:
        raise ValueError(f"{state_path} is inconsistent: round {state['round']} with {len(state['rounds'])} records.")
    verify_folder(folder)
    best_model = copy.deepcopy(model)
    load_model(best_model, os.path.join(folder, WEIGHTS_NAME), device=str(next(model.parameters()).device))
    rounds = [SelfPlayRound(**{**r, "history": [tuple(h) for h in r["history"]]}) for r in state["rounds"]]
    return rounds, best_model


def _save_self_play_checkpoint(output_dir: str, round_index: int, best_model: nn.Module,
                               rounds: list[SelfPlayRound], fingerprint: dict[str, Any]) -> None:
    folder = os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{round_index}")
    with atomic_save_dir(folder) as tmp:
        save_model(best_model, str(tmp / WEIGHTS_NAME))
        state = {"round": round_index, **fingerprint, "rounds": [asdict(r) for r in rounds]}
        (tmp / STATE_NAME).write_text(json.dumps(state, indent=2))
    for _, path in _self_play_checkpoints(output_dir):  # only the newest is needed to resume
        if path != folder:
            shutil.rmtree(path, ignore_errors=True)


def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
