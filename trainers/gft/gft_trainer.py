"""Guidance-free training (GFT; Chen, Jiang et al., ICML 2025, arXiv 2501.15420).

CFG samples from p(x|c)·[p(x|c)/p(x)]^s with two network calls a step. GFT trains the *sampling*
model ε^s_θ(x_t | c, β), β = 1/(1+s), directly, by defining the conditional model implicitly as

    ε^c_θ(x_t | c, β) := β·ε^s_θ(x_t | c, β) + (1 − β)·sg[ε_θ(x_t | ∅, β = 1)]

and fitting ε^c to the usual target with the usual loss (MSE for diffusion; cross-entropy on the
logits ℓ^c = β·ℓ^s + (1 − β)·sg[ℓ^u] for autoregressive models). The unconditional branch is the
same network with the null condition at β = 1, run in eval mode without gradient. At the optimum
ε^s = ε^u + (ε^c − ε^u)/β: the CFG prediction at scale 1/β, so sampling needs one call a step.
Examples whose condition is dropped (probability ``cond_drop_prob``) feed β = 1 to the network but
keep the sampled β in the interpolation, as in the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer

from hfgen.pipelines.gft.modeling_beta_conditioning import has_beta_input, unet_timestep_cond

from ..base import HfgenTrainerMixin, check_args
from ..utils import (
    EMA,
    StepEndCallback,
    diffusion_target,
    fp32_or_wider,
    resolve_null_class_label,
    resolve_null_token_id,
    sample_condition_dropout,
    with_null_condition,
    with_null_token,
)
from .gft_config import GFTConfig


def gft_interpolate(sampling_output: torch.Tensor, unconditional_output: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """β·f^s + (1 − β)·sg[f^u], β of shape ``(B,)`` broadcast over the remaining dimensions."""
    beta = beta.view(-1, *([1] * (sampling_output.ndim - 1))).to(sampling_output.dtype)
    return beta * sampling_output + (1.0 - beta) * unconditional_output.detach()


class GFTTrainer(HfgenTrainerMixin, Trainer):
    r"""Guidance-free training of a Diffusers UNet or a transformers causal LM.

    Args:
        model: (a) a ``UNet2DConditionModel`` with a β input (``time_cond_proj_dim``; from scratch, or
            [`~hfgen.pipelines.gft.add_beta_conditioning`] of a CFG model for fine-tuning), either
            class-conditional (``num_class_embeds = num_classes + 1``, last label = null) or text-conditional
            (batches carry ``encoder_hidden_states``; pass ``null_encoder_hidden_states``, e.g. the embedding of "");
            batches carry ``pixel_values`` (and ``labels`` for classes). (b) a [`GFTCausalLM`]; batches carry
            ``input_ids`` whose first token is the condition (and optionally ``labels`` with -100 to ignore).
        args ([`GFTConfig`]): training arguments.
        noise_scheduler: the diffusion training scheduler; default ``DDPMScheduler(num_train_timesteps,
            beta_schedule=noise_schedule, prediction_type)`` from ``args``.
        null_encoder_hidden_states (`torch.Tensor`, *optional*): ``(L, D)`` null text condition.

    The β input of a UNet takes the form stored in its config (see
    [`~hfgen.pipelines.gft.add_beta_conditioning`]): the SD1.5 form (default) or the DiT form. With
    ``args.ema_decay`` set, ``trainer.ema_model`` holds an EMA of the weights (a frozen copy, updated after each
    optimizer step, saved with each checkpoint and restored on resume; export it with ``save_pretrained``).

    Subclass hooks: [`sample_beta`], [`diffusion_loss`], [`lm_loss`], [`denoise`].
    """

    _tag_names = ["hfgen", "gft"]
    method_name = "gft"
    card_args = ("cond_drop_prob", "beta_min", "beta_max", "beta_power", "null_branch_beta", "ema_decay",
                 "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size")

    def __init__(self, model, args: GFTConfig | None = None, train_dataset=None, eval_dataset=None, noise_scheduler=None,
                 null_encoder_hidden_states: torch.Tensor | None = None, **kwargs):
        args = check_args(args, GFTConfig, "gft-output")
        self.is_diffusion = not isinstance(model, PreTrainedModel)
        if self.is_diffusion:
            self._init_diffusion(model, args, noise_scheduler, null_encoder_hidden_states)
        else:
            self._init_lm(model, args)
        # official: EMA 0.9999 of the weights (DiT train.py, SD1.5 --use_ema)
        self._ema = None if args.ema_decay is None else EMA(model, args.ema_decay)
        self.ema_model = None if self._ema is None else self._ema.model
        if self._ema is not None:
            kwargs["callbacks"] = [StepEndCallback(self.update_ema), *(kwargs.get("callbacks") or [])]
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        if self.ema_model is not None:
            self.ema_model.to(self.args.device)
        self.model_accepts_loss_kwargs = False  # the loss is ours: let Trainer scale it for accumulation

    def _init_diffusion(self, unet, args, noise_scheduler, null_encoder_hidden_states):
        from diffusers import DDPMScheduler

        config = getattr(unet, "config", None)
        if config is None or not hasattr(config, "in_channels"):
            raise ValueError(f"`model` must be a Diffusers UNet or a GFTCausalLM, got {type(unet).__name__}.")
        if "beta_cond_proj_dim" in config:  # has_beta_input is true for it, but denoise() speaks the UNet's interface
            raise ValueError(f"`model` is a {type(unet).__name__} (a GFT DiT): GFTTrainer trains UNet2DConditionModel "
                             "and GFTCausalLM models; sample the DiT with GuidanceFreePipeline(transformer=...).")
        if args.guidance_free and not has_beta_input(unet):
            raise ValueError(
                f"`model` ({type(unet).__name__}) has no β input: GFT needs a UNet2DConditionModel with "
                "`time_cond_proj_dim` (build one, or convert a CFG model with hfgen.pipelines.gft."
                "add_beta_conditioning). Only beta_min = beta_max = 1 (plain CFG training) works without it."
            )
        self.num_class_embeds = getattr(config, "num_class_embeds", None)
        if self.num_class_embeds is not None:
            self.null_class_label = resolve_null_class_label(args.null_class_label, self.num_class_embeds)
        elif null_encoder_hidden_states is None:
            raise ValueError("A text-conditional unet needs `null_encoder_hidden_states` (the null condition, e.g. of '').")
        self.null_encoder_hidden_states = null_encoder_hidden_states
        if noise_scheduler is None:
            noise_scheduler = DDPMScheduler(num_train_timesteps=args.num_train_timesteps,
                                            beta_schedule=args.noise_schedule,
                                            prediction_type=args.prediction_type or "epsilon")
        self.noise_scheduler = noise_scheduler
        self.prediction_type = args.prediction_type or noise_scheduler.config.prediction_type

    def _init_lm(self, model, args):
        from hfgen.pipelines.gft.modeling_gft import GFTCausalLM

        if args.guidance_free and not isinstance(model, GFTCausalLM):
            raise ValueError(
                f"`model` ({type(model).__name__}) has no β input: wrap it with GFTCausalLM.from_causal_lm(model, "
                "null_condition_token_id=...) (zero-initialised, so its outputs are unchanged)."
            )
        self.null_condition_token_id = resolve_null_token_id(args.null_condition_token_id, model.config)

    # ------------------------------------------------------------------------------------ hooks

    def sample_beta(self, batch_size: int, device) -> torch.Tensor:
        """β = beta_min + (beta_max − beta_min)·u^beta_power, u ~ U(0, 1), one per example (official SD1.5: ``pho``)."""
        u = torch.rand(batch_size, device=device) ** self.args.beta_power
        return self.args.beta_min + (self.args.beta_max - self.args.beta_min) * u

    def denoise(self, model, x_t, timesteps, condition: dict, beta: torch.Tensor | None) -> torch.Tensor:
        """The UNet's output f_θ(x_t | condition, β); ``beta=None`` feeds no β input (``timestep_cond=None``)."""
        unet = self.accelerator.unwrap_model(model) if hasattr(self, "accelerator") else model
        timestep_cond = unet_timestep_cond(unet, beta, x_t.dtype)
        return model(x_t, timesteps, timestep_cond=timestep_cond, **condition).sample

    def update_ema(self) -> None:
        """``θ_ema ← d·θ_ema + (1 − d)·θ`` for every trained parameter (``d = ema_decay``, constant as in the
        official DiT ``update_ema``); buffers are copied."""
        self._ema.update(self.accelerator.unwrap_model(self.model))

    def checkpointed_modules(self) -> dict[str, torch.nn.Module]:
        """The EMA is saved with each checkpoint (``gft_ema.safetensors``) and restored on resume."""
        return {} if self.ema_model is None else {"gft_ema": self.ema_model}

    def _conditions(self, inputs, drop: torch.Tensor):
        """(condition with dropped rows replaced by the null condition, the all-null condition)."""
        if self.num_class_embeds is not None:
            labels = inputs["labels"]
            if bool(((labels == self.null_class_label) | (labels < 0) | (labels >= self.num_class_embeds)).any()):
                raise ValueError(
                    f"`labels` must be class ids in [0, {self.num_class_embeds - 1}) other than the null label "
                    f"{self.null_class_label}, got {sorted(set(labels.tolist()))}: build the unet with "
                    "`num_class_embeds = number of classes + 1` (the last embedding is the null class).")
            null = torch.full_like(labels, self.null_class_label)
            dropped = with_null_condition(labels, drop, self.null_class_label)
            return ({"class_labels": dropped, "encoder_hidden_states": None},
                    {"class_labels": null, "encoder_hidden_states": None})
        states = inputs["encoder_hidden_states"]
        null = self.null_encoder_hidden_states.to(states).expand_as(states)
        dropped = with_null_condition(states, drop, self.null_encoder_hidden_states)
        return {"encoder_hidden_states": dropped}, {"encoder_hidden_states": null}

    @staticmethod
    def _unconditional(model, fn):
        """Run ``fn`` in eval mode without gradient (official code: the stop-gradient null branch)."""
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return fn()
        finally:
            model.train(was_training)

    def diffusion_loss(self, model, inputs) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = inputs["pixel_values"]
        batch_size, device = x0.shape[0], x0.device
        noise = torch.randn_like(x0)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (batch_size,), device=device)
        x_t = self.noise_scheduler.add_noise(x0, noise, timesteps)
        target = diffusion_target(self.noise_scheduler, x0, noise, timesteps, self.prediction_type)
        beta = self.sample_beta(batch_size, device)
        drop = sample_condition_dropout(batch_size, self.args.cond_drop_prob, device)
        condition, null_condition = self._conditions(inputs, drop)
        output = self.denoise(model, x_t, timesteps, condition, torch.where(drop, torch.ones_like(beta), beta))
        metrics = {}
        if self.args.guidance_free:
            null_beta = None if self.args.null_branch_beta == "none" else torch.ones_like(beta)
            uncond = self._unconditional(model, lambda: self.denoise(model, x_t, timesteps, null_condition, null_beta))
            metrics["loss_uncond"] = F.mse_loss(fp32_or_wider(uncond), fp32_or_wider(target)).detach()  # read when logged
            output = gft_interpolate(output, uncond, beta)
        loss = F.mse_loss(fp32_or_wider(output), fp32_or_wider(target))
        return loss, metrics

    def lm_loss(self, model, inputs) -> tuple[torch.Tensor, dict[str, float]]:
        input_ids = inputs["input_ids"]
        labels = inputs.get("labels", input_ids)
        attention_mask = inputs.get("attention_mask")
        batch_size, device = input_ids.shape[0], input_ids.device
        beta = self.sample_beta(batch_size, device)
        drop = sample_condition_dropout(batch_size, self.args.cond_drop_prob, device)
        ids = with_null_token(input_ids, drop, self.null_condition_token_id)
        null_ids = with_null_token(input_ids, torch.ones_like(drop), self.null_condition_token_id)
        kwargs = {"beta": torch.where(drop, torch.ones_like(beta), beta)} if self.args.guidance_free else {}
        logits = model(input_ids=ids, attention_mask=attention_mask, **kwargs).logits
        metrics = {}
        if self.args.guidance_free:
            uncond = self._unconditional(
                model, lambda: model(input_ids=null_ids, attention_mask=attention_mask, beta=torch.ones_like(beta)).logits)
            logits = gft_interpolate(logits, uncond, beta)
        # next-token cross-entropy; position 0 (the condition) is never a target
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return loss, metrics

    # ------------------------------------------------------------------------------ Trainer API

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = (self.diffusion_loss if self.is_diffusion else self.lm_loss)(model, inputs)
        for key, value in metrics.items():
            self._metrics["train" if model.training else "eval"][key].append(value)
        return (loss, None) if return_outputs else loss

    def save_extras(self, output_dir: str) -> None:
        """A diffusion model is saved with its training noise scheduler (``scheduler_config.json``)."""
        if self.is_diffusion:
            self.noise_scheduler.save_pretrained(output_dir)

    def card_training_config(self) -> dict:
        config = super().card_training_config()
        if self.is_diffusion:
            config.update(prediction_type=self.prediction_type,
                          num_train_timesteps=self.noise_scheduler.config.num_train_timesteps)
        return config

    def card_vars(self) -> dict:
        if not self.is_diffusion:
            return {"kind": "autoregressive", "pipeline_tag": "text-generation"}
        if self.num_class_embeds is None:  # text-conditional (encoder_hidden_states)
            return {"kind": "diffusion", "pipeline_tag": "text-to-image"}
        # the Hub has no class-conditional pipeline tag: none, and a `class-conditional-image-generation` tag
        return {"kind": "diffusion", "pipeline_tag": None, "num_classes": self.num_class_embeds - 1,
                "null_class_label": self.null_class_label}

    def card_tags(self) -> list[str]:
        return ["class-conditional-image-generation"] if self.is_diffusion and self.num_class_embeds else []
