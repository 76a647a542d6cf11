"""Pieces several hfgen trainers share, written once: adapters, devices, precision, the diffusion target, the null
condition of classifier-free guidance and an EMA of the weights.

The EMA is hfgen's own rather than ``diffusers.training_utils.EMAModel`` or TRL's ``BEMACallback``: the methods'
official code uses a constant decay (``EMAModel`` warms it up as ``(1 + t) / (10 + t)``; BEMA is another estimator),
and the trainers expose the average as a module (``trainer.ema_model``) that is evaluated, exported with
``save_pretrained`` and checkpointed through ``checkpointed_modules()``, where ``EMAModel`` keeps a list of tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel, TrainerCallback

# ----------------------------------------------------------------------------------- models and devices


def add_adapter(model, peft_config):
    """``model`` with a PEFT adapter: ``get_peft_model`` for a transformers model, ``add_adapter`` (in place) for a
    Diffusers model; a ``ValueError`` naming ``peft_config`` for a model that supports neither."""
    if isinstance(model, PreTrainedModel):
        from peft import get_peft_model

        return get_peft_model(model, peft_config)
    if hasattr(model, "add_adapter") and hasattr(model, "save_lora_adapter"):
        model.add_adapter(peft_config)
        return model
    raise ValueError(f"`peft_config` needs a transformers model or a Diffusers model with adapter support "
                     f"(PeftAdapterMixin, e.g. UNet2DConditionModel); {type(model).__name__} has neither.")


def is_adapted_diffusers_model(model) -> bool:
    """Whether ``model`` is a Diffusers model carrying a PEFT adapter (saved as a LoRA file, not whole weights)."""
    return not isinstance(model, PreTrainedModel) and hasattr(model, "save_lora_adapter") and bool(
        getattr(model, "peft_config", None))


def to_training_device(model, device):
    """``model`` moved to the training ``device``, unless it is sharded with ``device_map`` (``hf_device_map`` set):
    such a model already sits on its devices, and ``.to`` would break (or undo) the sharding."""
    if getattr(model, "hf_device_map", None):
        return model
    return model.to(device)


def fp32_or_wider(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 at least (half precision is upcast, float64 stays float64): for losses, and for differences
    of two nearly equal losses."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def model_output(output) -> torch.Tensor:
    """The tensor a Diffusers model returns (its ``.sample``), or ``output`` itself for a plain module."""
    return output.sample if hasattr(output, "sample") else output


# -------------------------------------------------------------------------------------- diffusion target


def diffusion_target(noise_scheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                     prediction_type: str | None = None) -> torch.Tensor:
    """What a DDPM-style denoiser regresses for ``x_t = add_noise(x0, noise, timesteps)``: the noise (``"epsilon"``),
    the velocity (``"v_prediction"``) or ``x0`` (``"sample"``). ``prediction_type`` defaults to the scheduler's."""
    prediction_type = prediction_type or noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(x0, noise, timesteps)
    if prediction_type == "sample":
        return x0
    raise ValueError(f"Unsupported `prediction_type` {prediction_type!r} of the noise scheduler: expected 'epsilon', "
                     "'v_prediction' or 'sample'.")


# ------------------------------------------------------------------ null condition (classifier-free guidance)


def sample_condition_dropout(batch_size: int, drop_prob: float, device) -> torch.Tensor:
    """Which rows lose their condition: a (``batch_size``,) bool mask, each row dropped with probability
    ``drop_prob`` (one ``torch.rand`` draw)."""
    return torch.rand(batch_size, device=device) < drop_prob


def with_null_condition(condition: torch.Tensor, drop: torch.Tensor, null) -> torch.Tensor:
    """``condition`` (batch first) with the rows in ``drop`` (B,) replaced by ``null``: a class label or token id,
    or one row of the condition (e.g. the ``(L, D)`` null text embedding)."""
    null = torch.as_tensor(null).to(device=condition.device, dtype=condition.dtype)
    mask = drop.view(-1, *[1] * (condition.ndim - 1))
    return torch.where(mask, null.expand_as(condition), condition)


def with_null_token(input_ids: torch.Tensor, drop: torch.Tensor, null_token_id: int) -> torch.Tensor:
    """``input_ids`` whose condition token (position 0) is the null token in the rows of ``drop`` (B,)."""
    ids = input_ids.clone()
    ids[:, 0] = with_null_condition(input_ids[:, 0], drop, null_token_id)
    return ids


def resolve_null_class_label(null_class_label: int | None, num_class_embeds: int | None) -> int:
    """The null class: ``null_class_label``, by default the model's last class embedding; a ``ValueError`` naming
    ``null_class_label`` when it cannot be found or lies outside the embedding."""
    if null_class_label is None:
        if num_class_embeds is None:
            raise ValueError("Set `null_class_label`: the model config has no `num_class_embeds`.")
        null_class_label = num_class_embeds - 1
    if not 0 <= null_class_label < (num_class_embeds or null_class_label + 1):
        raise ValueError(f"`null_class_label` must lie in [0, {num_class_embeds}), got {null_class_label!r}.")
    return null_class_label


def resolve_null_token_id(null_condition_token_id: int | None, model_config) -> int:
    """The null condition token of a causal LM: ``null_condition_token_id``, by default the model config's; a
    ``ValueError`` naming it when neither gives one or it lies outside the vocabulary."""
    get = model_config.get if isinstance(model_config, dict) else lambda key: getattr(model_config, key, None)
    null = null_condition_token_id if null_condition_token_id is not None else get("null_condition_token_id")
    if null is None:
        raise ValueError("Set `null_condition_token_id` (in the training config or the model config): the token that "
                         "replaces the condition token at position 0 in the unconditional rows.")
    vocab_size = get("vocab_size")
    if not 0 <= null < (vocab_size or null + 1):
        raise ValueError(f"`null_condition_token_id` must lie in [0, {vocab_size}), got {null}.")
    return null


# --------------------------------------------------------------------------------------------------- EMA


class EMA:
    """An exponential moving average ``θ_ema ← d·θ_ema + (1 − d)·θ`` of a model's trained parameters.

    ``model`` is a frozen copy of the online model made now (so it starts at θ); ``names`` are the parameters that
    required gradients then (a PEFT adapter's, with the frozen base left equal to the online model's), matched by
    name at each [`update`]; buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        """One step of the average towards ``online``'s parameters (after an optimizer step)."""
        params, ema_params = dict(online.named_parameters()), dict(self.model.named_parameters())
        for name in self.names:
            ema_params[name].lerp_(params[name].detach(), 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), online.buffers()):
            b_ema.copy_(b)

    def trained_parameters(self) -> nn.ParameterDict:
        """The averaged parameters alone (keyed by name, ``/`` for ``.``): what a checkpoint of an adapter holds."""
        ema_params = dict(self.model.named_parameters())
        return nn.ParameterDict({name.replace(".", "/"): ema_params[name] for name in self.names})


class StepEndCallback(TrainerCallback):
    """Calls ``fn()`` after every optimizer step (``on_step_end``): an EMA's update, before checkpoints and
    evaluations see the model."""

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn

    def on_step_end(self, args, state, control, **kwargs):
        self.fn()
