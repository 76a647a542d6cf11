"""DDO self-play rounds (arXiv 2503.01103, §3.3) and the samplers that produce reference samples.

Round n: freeze the best model of round n−1 as the reference ``θ*_{n−1}``, generate its samples, reset θ to it,
train with a fresh optimizer while evaluating a user metric densely, and keep the best checkpoint ``θ*_n``
("the optimization process of DDO provides useful gradient information in the early stage but does not converge
to the data distribution in the final", so the last checkpoint is not the one to keep).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from .ddo_config import DDOConfig
from .ddo_trainer import DDOTrainer


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
            x = scheduler.step(out.sample if hasattr(out, "sample") else out, t, x, generator=generator).prev_sample
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
    """Evaluates ``metric_fn(model)`` at step 0 and every ``every`` steps; keeps a CPU copy of the best weights."""

    def __init__(self, metric_fn: Callable[[nn.Module], float], every: int, greater_is_better: bool):
        self.metric_fn, self.every, self.greater_is_better = metric_fn, every, greater_is_better
        self.history: list[tuple[int, float]] = []
        self.best: tuple[int, float, dict[str, torch.Tensor]] | None = None

    def _evaluate(self, model: nn.Module, step: int) -> None:
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
                  **trainer_kwargs: Any) -> SelfPlayOutput:
    """Run ``args.num_rounds`` DDO self-play rounds starting from the pretrained ``model``.

    Args:
        model: the pretrained model; it is the first reference.
        args: a [`DDOConfig`]; each round trains ``max_steps`` / ``num_train_epochs`` in ``output_dir/round_<n>``.
        train_dataset: real data (see [`DDOTrainer`]).
        generate_fn: ``generate_fn(reference, num_samples, round) -> fake_dataset``; called with
            ``args.num_reference_samples`` (e.g. a wrapper of :func:`generate_diffusion_samples`).
        metric_fn: ``metric_fn(model) -> float``; evaluated on the reference at step 0 and every
            ``args.self_play_eval_steps``. Make it deterministic (fixed seeds) so checkpoints are comparable.
        greater_is_better: direction of the metric (False for FID-like metrics).
        round_callback: ``round_callback(round, best_model)`` after each round (e.g. a test-set evaluation).
        noise_scheduler, trainer_kwargs: passed to every round's [`DDOTrainer`].

    Each round's best model is saved in ``output_dir/round_<n>/best`` and the metrics of all rounds so far in
    ``output_dir/self_play.json``; ``trainer.log`` also records ``self_play/*`` values in the round's log history.
    """
    rounds: list[SelfPlayRound] = []
    best_model = model
    for n in range(1, args.num_rounds + 1):
        reference = copy.deepcopy(best_model).eval().requires_grad_(False)
        fake_dataset = generate_fn(reference, args.num_reference_samples, n)
        policy = copy.deepcopy(best_model).train().requires_grad_(True)  # θ ← θ_ref, fresh optimizer below
        round_args = copy.deepcopy(args)
        round_args.output_dir = os.path.join(args.output_dir, f"round_{n}")
        keep_best = _KeepBestCallback(metric_fn, args.self_play_eval_steps, greater_is_better)
        trainer = DDOTrainer(policy, ref_model=reference, args=round_args, train_dataset=train_dataset,
                             fake_dataset=fake_dataset, noise_scheduler=noise_scheduler,
                             callbacks=[keep_best], **trainer_kwargs)
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
            with open(os.path.join(args.output_dir, "self_play.json"), "w") as f:
                json.dump([asdict(r) for r in rounds], f, indent=2)
        if round_callback is not None:
            round_callback(result, policy)
        best_model = policy
    return SelfPlayOutput(model=best_model, rounds=rounds)
