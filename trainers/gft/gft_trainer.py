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

import os

import torch
import torch.nn.functional as F
from hfgen.pipelines.gft.modeling_beta_conditioning import beta_embedding, has_beta_input
from transformers import PreTrainedModel, Trainer

from hfgen.guards import GuardedTrainerMixin

from .gft_config import GFTConfig


def gft_interpolate(sampling_output: torch.Tensor, unconditional_output: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """β·f^s + (1 − β)·sg[f^u], β of shape ``(B,)`` broadcast over the remaining dimensions."""
    beta = beta.view(-1, *([1] * (sampling_output.ndim - 1))).to(sampling_output.dtype)
    return beta * sampling_output + (1.0 - beta) * unconditional_output.detach()


class GFTTrainer(GuardedTrainerMixin, Trainer):
    r"""Guidance-free training of a Diffusers UNet or a transformers causal LM.

    Args:
        model: (a) a ``UNet2DConditionModel`` with a β input (``time_cond_proj_dim``; from scratch, or
            :func:`~hfgen.pipelines.gft.add_beta_conditioning` of a CFG model for fine-tuning), either
            class-conditional (``num_class_embeds = num_classes + 1``, last label = null) or text-conditional
            (batches carry ``encoder_hidden_states``; pass ``null_encoder_hidden_states``, e.g. the embedding of "");
            batches carry ``pixel_values`` (and ``labels`` for classes). (b) a :class:`GFTCausalLM`; batches carry
            ``input_ids`` whose first token is the condition (and optionally ``labels`` with -100 to ignore).
        args (:class:`GFTConfig`): training arguments.
        noise_scheduler: the diffusion training scheduler; default ``DDPMScheduler(num_train_timesteps,
            beta_schedule=noise_schedule, prediction_type)`` from ``args``.
        null_encoder_hidden_states (`torch.Tensor`, *optional*): ``(L, D)`` null text condition.

    Subclass hooks: :meth:`sample_beta`, :meth:`diffusion_loss`, :meth:`lm_loss`, :meth:`denoise`.
    """

    _tag_names = ["hfgen", "gft"]

    def __init__(self, model, args: GFTConfig | None = None, train_dataset=None, eval_dataset=None, noise_scheduler=None,
                 null_encoder_hidden_states: torch.Tensor | None = None, **kwargs):
        args = args if args is not None else GFTConfig(output_dir="gft-output")
        if not isinstance(args, GFTConfig):
            raise ValueError(f"`args` must be a GFTConfig, got {type(args).__name__}.")
        self.is_diffusion = not isinstance(model, PreTrainedModel)
        if self.is_diffusion:
            self._init_diffusion(model, args, noise_scheduler, null_encoder_hidden_states)
        else:
            self._init_lm(model, args)
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        self.model_accepts_loss_kwargs = False  # the loss is ours: let Trainer scale it for accumulation
        self._gft_metrics: dict[str, list[float]] = {}

    def _init_diffusion(self, unet, args, noise_scheduler, null_encoder_hidden_states):
        from diffusers import DDPMScheduler

        config = getattr(unet, "config", None)
        if config is None or not hasattr(config, "in_channels"):
            raise ValueError(f"`model` must be a Diffusers UNet or a GFTCausalLM, got {type(unet).__name__}.")
        if args.guidance_free and not has_beta_input(unet):
            raise ValueError(
                f"`model` ({type(unet).__name__}) has no β input: GFT needs a UNet2DConditionModel with "
                "`time_cond_proj_dim` (build one, or convert a CFG model with hfgen.pipelines.gft."
                "add_beta_conditioning). Only beta_min = beta_max = 1 (plain CFG training) works without it."
            )
        self.num_class_embeds = getattr(config, "num_class_embeds", None)
        if self.num_class_embeds is not None:
            null = self.num_class_embeds - 1 if args.null_class_label is None else args.null_class_label
            if not 0 <= null < self.num_class_embeds:
                raise ValueError(f"`null_class_label` must lie in [0, {self.num_class_embeds - 1}], got {null!r}.")
            self.null_class_label = null
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
        null = args.null_condition_token_id
        if null is None:
            null = getattr(model.config, "null_condition_token_id", None)
        if null is None:
            raise ValueError("Set `null_condition_token_id` (in GFTConfig or the model config): the unconditional token.")
        self.null_condition_token_id = null

    # ------------------------------------------------------------------------------------ hooks

    def sample_beta(self, batch_size: int, device) -> torch.Tensor:
        """β ~ U(beta_min, beta_max), one per example."""
        u = torch.rand(batch_size, device=device)
        return self.args.beta_min + (self.args.beta_max - self.args.beta_min) * u

    def denoise(self, model, x_t, timesteps, condition: dict, beta: torch.Tensor) -> torch.Tensor:
        """The UNet's output f_θ(x_t | condition, β)."""
        unet = self.accelerator.unwrap_model(model) if hasattr(self, "accelerator") else model
        timestep_cond = None
        if has_beta_input(unet):
            timestep_cond = beta_embedding(beta, unet.config.time_cond_proj_dim).to(x_t.dtype)
        return model(x_t, timesteps, timestep_cond=timestep_cond, **condition).sample

    def _conditions(self, inputs, drop: torch.Tensor):
        """(condition with dropped rows replaced by the null condition, the all-null condition)."""
        if self.num_class_embeds is not None:
            labels = inputs["labels"]
            null = torch.full_like(labels, self.null_class_label)
            return ({"class_labels": torch.where(drop, null, labels), "encoder_hidden_states": None},
                    {"class_labels": null, "encoder_hidden_states": None})
        states = inputs["encoder_hidden_states"]
        null = self.null_encoder_hidden_states.to(states).expand_as(states)
        return ({"encoder_hidden_states": torch.where(drop[:, None, None], null, states)},
                {"encoder_hidden_states": null})

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
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(x0, noise, timesteps)
        else:
            target = x0
        beta = self.sample_beta(batch_size, device)
        drop = torch.rand(batch_size, device=device) < self.args.cond_drop_prob
        condition, null_condition = self._conditions(inputs, drop)
        output = self.denoise(model, x_t, timesteps, condition, torch.where(drop, torch.ones_like(beta), beta))
        metrics = {}
        if self.args.guidance_free:
            uncond = self._unconditional(model, lambda: self.denoise(model, x_t, timesteps, null_condition,
                                                                     torch.ones_like(beta)))
            metrics["loss_uncond"] = F.mse_loss(uncond.float(), target.float()).item()
            output = gft_interpolate(output, uncond, beta)
        loss = F.mse_loss(output.float(), target.float())
        return loss, metrics

    def lm_loss(self, model, inputs) -> tuple[torch.Tensor, dict[str, float]]:
        input_ids = inputs["input_ids"]
        labels = inputs.get("labels", input_ids)
        attention_mask = inputs.get("attention_mask")
        batch_size, device = input_ids.shape[0], input_ids.device
        beta = self.sample_beta(batch_size, device)
        drop = torch.rand(batch_size, device=device) < self.args.cond_drop_prob
        null_ids = input_ids.clone()
        null_ids[:, 0] = self.null_condition_token_id
        ids = torch.where(drop[:, None], null_ids, input_ids)
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
            self._gft_metrics.setdefault(key, []).append(value)
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation reports the GFT loss (there are no logits to gather)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._gft_metrics and "loss" in logs:
            logs.update({k: sum(v) / len(v) for k, v in self._gft_metrics.items()})
            self._gft_metrics.clear()
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict=None):
        if not self.args.should_save:  # one writer: other ranks' saves raced it and could drop the weights
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        # save_pretrained of the model itself (safetensors; the Diffusers layout for UNets, so pipelines and
        # hfgen.load read it), the arguments as JSON (no pickled training_args.bin), and the hfgen card
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, safe_serialization=True)
        if self.is_diffusion:
            self.noise_scheduler.save_pretrained(output_dir)
        with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as f:
            f.write(self.args.to_json_string())
        self.create_model_card(output_dir=output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if not self.is_diffusion:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        from safetensors.torch import load_file

        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        state = load_file(os.path.join(resume_from_checkpoint, "diffusion_pytorch_model.safetensors"))
        model.load_state_dict(state)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None,
                          output_dir: str | None = None, **kwargs):
        """Write hfgen's GFT card (``model_cards/gft.md``) as ``README.md`` of the output folder."""
        if not self.is_world_process_zero():
            return
        from hfgen.hub import save_model_card

        keys = ("cond_drop_prob", "beta_min", "beta_max", "learning_rate", "max_steps", "num_train_epochs",
                "per_device_train_batch_size")
        training_config = {k: getattr(self.args, k) for k in keys}
        if self.is_diffusion:
            training_config.update(prediction_type=self.prediction_type,
                                   num_train_timesteps=self.noise_scheduler.config.num_train_timesteps)
        save_model_card(output_dir or self.args.output_dir, "gft",
                        model_name=model_name or os.path.basename(os.path.normpath(self.args.output_dir)),
                        datasets=[dataset_name] if dataset_name else None, training_config=training_config,
                        extra_tags=list(tags or []), kind="diffusion" if self.is_diffusion else "autoregressive")
