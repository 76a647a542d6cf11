"""DDOTrainer: Direct Discriminative Optimization (Zheng et al., ICML 2025, arXiv 2503.01103).

A pretrained likelihood model is fine-tuned as a GAN whose discriminator is implicit: the log-likelihood
ratio ``r = log p_θ − log p_ref`` between the trained model and a frozen copy of it (Eq. 8). Real data is
pulled up, samples of the reference are pushed down (Eq. 13)::

    L(θ) = − E_{x∼p_data} log σ(β r(x)) − α · E_{x∼p_ref} log σ(−β r(x))

- Causal LMs: ``r`` is exact, ``Σ_tokens log p_θ − log p_ref`` over the tokens whose ``labels`` are not -100.
- Diffusion denoisers: ``r`` is replaced by the one-draw ELBO proxy (Eqs. 14-16)
  ``Δ = −Σ_dims w · (‖err_θ‖² − ‖err_ref‖²)``, with one noise level and one noise tensor shared by the four
  forward passes (real and fake, through θ and through the reference under ``no_grad``), and ``w`` the model's
  pretraining weighting: EDM's ``λ(σ)`` for an EDM scheduler, 1 (or min-SNR-γ) for DDPM-style schedulers.

Conditional models (``cond_drop_prob > 0``): the paper keeps random label dropout during DDO so the model stays
usable with classifier-free guidance, and sets α = 0 for the unconditional part (NVlabs/DDO issue #3). A dropped
row is scored with the null condition by θ and by the reference; dropped reference samples get weight 0.

Self-play rounds live in [`hfgen.trainers.ddo.self_play`].
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import is_peft_model
from torch import nn
from transformers import Trainer

from ..base import HfgenTrainerMixin, check_args
from ..utils import (
    EMA,
    StepEndCallback,
    add_adapter,
    diffusion_target,
    fp32_or_wider,
    is_adapted_diffusers_model,
    model_output,
    resolve_null_class_label,
    resolve_null_token_id,
    sample_condition_dropout,
    to_training_device,
    with_null_condition,
    with_null_token,
)
from .ddo_config import DDOConfig

TOKEN_KEYS = ("input_ids", "attention_mask", "labels")
DIFFUSION_COND_KEYS = ("class_labels", "encoder_hidden_states", "encoder_attention_mask")


# ------------------------------------------------------------------------------------------ the math


def ddo_loss(log_ratio_real: torch.Tensor, log_ratio_fake: torch.Tensor, alpha: float | torch.Tensor,
             beta: float) -> torch.Tensor:
    """Eq. 13: ``−mean log σ(β r_real) − α · mean log σ(−β r_fake)``; ``log σ`` is ``logsigmoid`` (stable).

    ``alpha`` may be a per-row weight of shape (B,) (e.g. 0 on reference samples whose condition was dropped);
    the fake term is then ``−mean_i α_i log σ(−β r_fake_i)``, the mean still over all B rows.
    """
    real_term = -F.logsigmoid(beta * log_ratio_real).mean()
    if torch.is_tensor(alpha):
        return real_term - (alpha * F.logsigmoid(-beta * log_ratio_fake)).mean()
    return real_term - alpha * F.logsigmoid(-beta * log_ratio_fake).mean()


def sequence_log_prob(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
    """``log p(x) = Σ_i log p(x_i | x_<i)`` (Eq. 1) over the positions whose ``labels`` are not -100; shape (B,).

    ``labels`` follow the transformers convention (not yet shifted; -100 on prompt and padding tokens).
    """
    logits = fp32_or_wider(model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1])  # (B, L-1, V)
    targets = labels[:, 1:]
    mask = targets != -100
    token_logp = torch.gather(logits.log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(-1)


def denoising_log_likelihood(model: nn.Module, noise_scheduler, x0: torch.Tensor, noise: torch.Tensor,
                             noise_level: torch.Tensor, snr_gamma: float | None = None,
                             learned_uncertainty: bool = False, **cond: Any) -> torch.Tensor:
    """The ELBO proxy ``−w · Σ_dims ‖err‖²`` of Eq. 2 (up to a constant independent of θ), per sample; shape (B,).

    ``noise_level`` is ``σ`` (B,) for EDM schedulers (those with ``precondition_outputs``) and an integer timestep
    (B,) for DDPM-style schedulers. EDM: ``x_σ = x0 + σ n``, ``D = c_skip x_σ + c_out F(c_in x_σ, c_noise)`` and
    ``w = λ(σ) = (σ² + σ_d²) / (σ σ_d)²``, the pretraining weighting of EDM and of the paper's App. D.
    DDPM: the target of ``prediction_type`` with ``w = 1``, or min-SNR-γ when ``snr_gamma`` is set.

    ``learned_uncertainty`` (EDM schedulers only): EDM2's pretraining loss with its learned uncertainty u(σ)
    (Karras et al., 2024, Eq. 21; NVlabs/edm2 ``EDM2Loss``), ``−Σ_dims [λ(σ)/e^u · (D − x0)² + u]``; the model's output
    must carry ``logvar`` (u, one per sample), as EDM2's network returns it with ``return_logvar=True``.
    """
    shape = (-1,) + (1,) * (x0.ndim - 1)
    if hasattr(noise_scheduler, "precondition_outputs"):  # EDM (EDMEulerScheduler, EDMDPMSolverMultistepScheduler)
        sigma = noise_level.to(x0.dtype).view(shape)
        x_t = x0 + sigma * noise
        raw = model(noise_scheduler.precondition_inputs(x_t, sigma), noise_scheduler.precondition_noise(noise_level),
                    **cond)
        denoised = noise_scheduler.precondition_outputs(x_t, fp32_or_wider(model_output(raw)), sigma)
        sigma_data = noise_scheduler.config.sigma_data
        weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
        if not learned_uncertainty:
            return -(weight * (denoised - x0) ** 2).flatten(1).sum(-1)
        logvar = getattr(raw, "logvar", None)
        if logvar is None:
            raise ValueError("`uncertainty_weighting=True` needs a model whose output has a `logvar` field (EDM2's u(σ)).")
        logvar = fp32_or_wider(logvar).reshape(shape)
        return -((weight / logvar.exp()) * (denoised - x0) ** 2 + logvar).flatten(1).sum(-1)
    if learned_uncertainty:
        raise ValueError("`uncertainty_weighting=True` (EDM2's learned uncertainty) needs an EDM noise scheduler.")
    x_t = noise_scheduler.add_noise(x0, noise, noise_level)
    out = fp32_or_wider(model_output(model(x_t, noise_level, **cond)))
    target = diffusion_target(noise_scheduler, x0, noise, noise_level)
    sq_err = ((out - target) ** 2).flatten(1).sum(-1)
    if snr_gamma is None:
        return -sq_err
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, noise_level)
    weight = torch.clamp(snr, max=snr_gamma) / snr  # min-SNR-γ (Hang et al., 2023), as in diffusers' examples
    if noise_scheduler.config.prediction_type == "v_prediction":
        weight = torch.clamp(snr, max=snr_gamma) / (snr + 1)
    return -weight * sq_err


# ------------------------------------------------------------------------------------------ the data


class RealFakePairs(torch.utils.data.Dataset):
    """``{"real": real[i], "fake": fake[i mod len(fake)]}``: equal numbers of real and reference samples per batch.

    The loss is unpaired (two separate expectations); pairing only fixes the 1:1 batch composition.
    """

    def __init__(self, real, fake):
        if len(real) == 0 or len(fake) == 0:
            raise ValueError("`train_dataset` and `fake_dataset` must not be empty.")
        self.real, self.fake = real, fake

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"real": self.real[i], "fake": self.fake[i % len(self.fake)]}


class DDODataCollator:
    """Collates ``RealFakePairs`` items into ``{"real": batch, "fake": batch}``.

    Token fields are right-padded to one length across real *and* fake (``input_ids`` with ``pad_token_id``,
    ``attention_mask`` with 0, ``labels`` with -100), so both halves run through the model in one forward.
    Missing ``attention_mask`` means all ones; missing ``labels`` means ``input_ids`` (every token scored).
    """

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, dict[str, torch.Tensor]]:
        halves = {side: [ex[side] for ex in examples] for side in ("real", "fake")}
        if "input_ids" not in halves["real"][0]:
            return {side: {k: torch.stack([torch.as_tensor(ex[k]) for ex in exs]) for k in exs[0]}
                    for side, exs in halves.items()}
        length = max(len(ex["input_ids"]) for exs in halves.values() for ex in exs)
        pad = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": -100}
        batches = {}
        for side, exs in halves.items():
            batch = {k: [] for k in TOKEN_KEYS}
            for ex in exs:
                ids = torch.as_tensor(ex["input_ids"], dtype=torch.long)
                fields = {
                    "input_ids": ids,
                    "attention_mask": torch.as_tensor(ex.get("attention_mask", torch.ones_like(ids)), dtype=torch.long),
                    "labels": torch.as_tensor(ex.get("labels", ids), dtype=torch.long),
                }
                for k, v in fields.items():
                    batch[k].append(F.pad(v, (0, length - len(v)), value=pad[k]))
            batches[side] = {k: torch.stack(v) for k, v in batch.items()}
            batches[side]["labels"] = batches[side]["labels"].masked_fill(batches[side]["attention_mask"] == 0, -100)
        return batches


# ------------------------------------------------------------------------------------------ the trainer


class DDOTrainer(HfgenTrainerMixin, Trainer):
    r"""
    Trainer for Direct Discriminative Optimization (DDO).

    Args:
        model: the model to fine-tune, initialised from the pretrained model: a transformers causal LM (any module
            whose output has ``.logits``) or, with ``noise_scheduler``, a Diffusers denoiser (``UNet2DModel``,
            ``UNet2DConditionModel`` or any module called as ``model(x_t, timestep, **cond)``).
        ref_model: the frozen reference ``p_ref``. Defaults to a copy of ``model`` made at construction (θ = θ_ref).
            It never receives gradients, is not part of ``model``'s module tree, optimizer or ``state_dict``.
        args: a [`DDOConfig`].
        train_dataset: real data. Causal LM: examples with ``input_ids`` (and optionally ``attention_mask`` and
            ``labels`` with -100 on prompt tokens). Diffusion: ``pixel_values`` (and optionally ``class_labels`` or
            ``encoder_hidden_states``).
        fake_dataset: samples of the reference model in the same format (see
            [`hfgen.trainers.ddo.generate_diffusion_samples`] / [`~hfgen.trainers.ddo.generate_lm_samples`]).
        noise_scheduler: the Diffusers scheduler the denoiser was pretrained with: an EDM scheduler (σ ∼ log-normal
            with ``p_mean``/``p_std``, EDM preconditioning and weighting) or a DDPM-style one (uniform timesteps,
            ``prediction_type`` target). ``None`` means ``model`` is a causal LM.
        processing_class: a tokenizer; its ``pad_token_id`` is used for padding.
        eval_dataset (keyword): held-out ``RealFakePairs(real, fake)``; ``evaluate()`` reports the DDO loss and
            the ``ddo/*`` metrics on it (``eval_``-prefixed).
        null_encoder_hidden_states: ``(L, D)`` null text condition (e.g. the embedding of ""), needed with
            ``cond_drop_prob > 0`` when batches carry ``encoder_hidden_states``.
        peft_config: a PEFT config (e.g. ``LoraConfig``): θ becomes ``model`` with that adapter, the reference
            stays the plain ``model`` (see [`~hfgen.trainers.base.HfgenTrainerMixin`] for adapter-only saves).

    With ``args.ema_decay`` set, ``trainer.ema_model`` holds the EMA of θ (a separate frozen copy of the trained
    module, initialised to θ, updated after each optimizer step, saved in each checkpoint and restored on resume);
    export it with ``trainer.ema_model.save_pretrained(...)``. With ``peft_config`` the copy is made after the
    adapter is added (as Diffusers' scripts build ``EMAModel(unet.parameters())`` after ``add_adapter``): the EMA
    averages the adapter's parameters (the copy also holds a frozen copy of the base, equal to the model's: one more
    full copy in memory, besides ``ref_model``), checkpoints hold the adapter's EMA only,
    and the export is an adapter (``save_pretrained`` of a PEFT model, ``save_lora_adapter`` of a Diffusers one).

    Logged: ``ddo/log_ratio_real``, ``ddo/log_ratio_fake`` (means of r on each half), ``ddo/margin`` (their
    difference) and ``ddo/accuracy`` (how often the implicit discriminator classifies a sample right, ties 1/2).
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean
    method_name = "ddo"
    card_args = ("alpha", "beta", "learning_rate", "max_steps", "per_device_train_batch_size")

    def __init__(self, model: nn.Module, ref_model: nn.Module | None = None, args: DDOConfig | None = None,
                 train_dataset=None, fake_dataset=None, noise_scheduler=None, data_collator=None,
                 processing_class=None, callbacks=None, optimizers=(None, None),
                 null_encoder_hidden_states: torch.Tensor | None = None, peft_config=None, **kwargs):
        args = check_args(args, DDOConfig, "ddo-model")
        if train_dataset is None or fake_dataset is None:
            raise ValueError("`train_dataset` (real data) and `fake_dataset` (reference samples) are both required.")
        self._check_eval_dataset(kwargs.get("eval_dataset"))
        if ref_model is None:
            ref_model = copy.deepcopy(model)
        elif ref_model is model:
            raise ValueError("`ref_model` must be a separate copy of the model, not the trained model itself.")
        self._check_same_architecture(model, ref_model)
        if peft_config is not None:  # here, not in the base class: dropout and the EMA must see the adapted model
            model = add_adapter(model, peft_config)
        self.is_diffusion = noise_scheduler is not None
        self._check_examples(train_dataset[0], fake_dataset[0])
        if args.disable_dropout:
            for module in (model, ref_model):
                for m in module.modules():
                    if isinstance(m, nn.Dropout):
                        m.p = 0.0
        self.noise_scheduler = noise_scheduler
        if args.uncertainty_weighting and not hasattr(noise_scheduler, "precondition_outputs"):
            raise ValueError("`uncertainty_weighting=True` (EDM2's learned uncertainty) needs an EDM `noise_scheduler`.")
        if args.cond_drop_prob > 0:
            self._init_condition_dropout(model, args, train_dataset[0], null_encoder_hidden_states)
        # the EMA averages exactly the trained parameters (the adapter's with `peft_config`), matched by name
        self._ema = None if args.ema_decay is None else EMA(model, args.ema_decay)
        self.ema_model = None if self._ema is None else self._ema.model
        if self._ema is not None:
            self._ema_names = self._ema.names
            callbacks = [StepEndCallback(self.update_ema), *(callbacks or [])]  # before user callbacks that read it
        if data_collator is None:
            pad_token_id = getattr(processing_class, "pad_token_id", None)
            data_collator = DDODataCollator(pad_token_id=pad_token_id if pad_token_id is not None else 0)
        super().__init__(model=model, args=args, data_collator=data_collator,
                         train_dataset=RealFakePairs(train_dataset, fake_dataset), processing_class=processing_class,
                         callbacks=callbacks, optimizers=optimizers, **kwargs)
        self.ref_model = to_training_device(ref_model.eval().requires_grad_(False), self.args.device)
        if self.ema_model is not None:
            self.ema_model.to(self.args.device)

    # -------------------------------------------------------------------------------- validation

    @staticmethod
    def _check_eval_dataset(eval_dataset) -> None:
        """DDO's loss needs held-out real examples *and* reference samples: plain examples would fail only in
        ``evaluate()``, after training."""
        named = eval_dataset.items() if isinstance(eval_dataset, dict) else [(None, eval_dataset)]
        for name, dataset in named:
            if dataset is not None and not isinstance(dataset, RealFakePairs):
                where = "`eval_dataset`" if name is None else f"`eval_dataset[{name!r}]`"
                raise ValueError(f"{where} must be a `RealFakePairs(real, fake)` (held-out real examples paired with "
                                 f"reference samples, as `train_dataset` and `fake_dataset` are), got "
                                 f"{type(dataset).__name__}.")

    @staticmethod
    def _check_same_architecture(model: nn.Module, ref_model: nn.Module) -> None:
        if type(model) is not type(ref_model):
            raise ValueError(f"`ref_model` must have the architecture of `model`: got {type(ref_model).__name__} "
                             f"for a {type(model).__name__}.")
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        ref_shapes = {k: tuple(v.shape) for k, v in ref_model.state_dict().items()}
        if shapes != ref_shapes:
            diff = sorted(set(shapes.items()) ^ set(ref_shapes.items()))[:3]
            raise ValueError(f"`ref_model` must have the architecture of `model`; parameters differ: {diff}.")

    def _check_examples(self, real: dict, fake: dict) -> None:
        key = "pixel_values" if self.is_diffusion else "input_ids"
        for name, example in (("train_dataset", real), ("fake_dataset", fake)):
            if key not in example:
                kind = "a diffusion model (noise_scheduler given)" if self.is_diffusion else "a causal LM"
                raise ValueError(f"`{name}` examples must hold {key!r} for {kind}; got keys {sorted(example)}.")
        if self.is_diffusion:
            real_shape, fake_shape = tuple(torch.as_tensor(real[key]).shape), tuple(torch.as_tensor(fake[key]).shape)
            if real_shape != fake_shape:
                raise ValueError(f"`fake_dataset` samples must have the shape of the real data: 'pixel_values' is "
                                 f"{fake_shape} in `fake_dataset` and {real_shape} in `train_dataset`.")
            if sorted(k for k in real if k in DIFFUSION_COND_KEYS) != sorted(k for k in fake if k in DIFFUSION_COND_KEYS):
                raise ValueError("`train_dataset` and `fake_dataset` must carry the same conditioning keys "
                                 f"(any of {DIFFUSION_COND_KEYS}).")

    def _init_condition_dropout(self, model: nn.Module, args: DDOConfig, example: dict,
                                null_encoder_hidden_states: torch.Tensor | None) -> None:
        config = getattr(model, "config", None)
        if not self.is_diffusion:
            self.null_condition_token_id = resolve_null_token_id(args.null_condition_token_id, config)
            return
        conditions = [k for k in ("class_labels", "encoder_hidden_states") if k in example]
        if not conditions:
            raise ValueError("`cond_drop_prob` > 0 needs a conditional model: `train_dataset` examples must carry "
                             "'class_labels' or 'encoder_hidden_states'.")
        if "class_labels" in example:
            num_class_embeds = config.get("num_class_embeds") if isinstance(config, dict) else getattr(
                config, "num_class_embeds", None)
            self.null_class_label = resolve_null_class_label(args.null_class_label, num_class_embeds)
        if "encoder_hidden_states" in example:
            shape = tuple(torch.as_tensor(example["encoder_hidden_states"]).shape)
            if null_encoder_hidden_states is None or tuple(null_encoder_hidden_states.shape) != shape:
                got = None if null_encoder_hidden_states is None else tuple(null_encoder_hidden_states.shape)
                raise ValueError(f"`null_encoder_hidden_states` of shape {shape} (the null text condition) is needed "
                                 f"with `cond_drop_prob` > 0 on text-conditional data; got {got}.")
        self.null_encoder_hidden_states = null_encoder_hidden_states

    # -------------------------------------------------------------------------------- the loss

    def sample_condition_dropout(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """Which rows lose their condition: a (2B,) bool mask, real rows first, each dropped independently with
        probability ``cond_drop_prob``. One mask serves the θ and the reference passes."""
        return sample_condition_dropout(2 * batch_size, self.args.cond_drop_prob, device)

    def drop_conditions(self, inputs: dict[str, dict[str, torch.Tensor]], drop: torch.Tensor):
        """``inputs`` with the condition of the rows in ``drop`` (2B,) replaced by the null condition."""
        out = {}
        for side, mask in zip(("real", "fake"), drop.chunk(2)):
            half = dict(inputs[side])
            if not self.is_diffusion:
                half["input_ids"] = with_null_token(half["input_ids"], mask, self.null_condition_token_id)
            if "class_labels" in half:
                half["class_labels"] = with_null_condition(half["class_labels"], mask, self.null_class_label)
            if "encoder_hidden_states" in half:
                half["encoder_hidden_states"] = with_null_condition(half["encoder_hidden_states"], mask,
                                                                    self.null_encoder_hidden_states)
                if "encoder_attention_mask" in half:  # the null condition attends to all its tokens
                    attn = half["encoder_attention_mask"]
                    half["encoder_attention_mask"] = torch.where(mask.view(-1, 1), torch.ones_like(attn), attn)
            out[side] = half
        return out

    def sample_noise(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noise_level, noise)`` for a batch ``x0``: one level per sample, ``σ = exp(N(p_mean, p_std²))`` (EDM)
        or ``t ∼ U{0, …, T−1}`` (DDPM), and ``n ∼ N(0, I)`` shaped like ``x0``."""
        batch_size = len(x0)
        if hasattr(self.noise_scheduler, "precondition_outputs"):
            noise_level = (torch.randn(batch_size, device=x0.device) * self.args.p_std + self.args.p_mean).exp()
        else:
            num_train_timesteps = self.noise_scheduler.config.num_train_timesteps
            noise_level = torch.randint(0, num_train_timesteps, (batch_size,), device=x0.device)
        return noise_level, torch.randn_like(x0)

    def compute_log_ratio(self, model: nn.Module, inputs: dict[str, dict[str, torch.Tensor]]):
        """``(r_real, r_fake)``, each (B,). Override to support another model family."""
        real, fake = inputs["real"], inputs["fake"]
        if not self.is_diffusion:
            batch = {k: torch.cat([real[k], fake[k]]) for k in TOKEN_KEYS}  # one forward for real and fake
            logp = sequence_log_prob(model, **batch)
            with torch.no_grad():
                ref_logp = sequence_log_prob(self.ref_model, **batch)
            return (logp - ref_logp).chunk(2)
        x0 = fp32_or_wider(torch.cat([real["pixel_values"], fake["pixel_values"]]))
        cond = {k: torch.cat([real[k], fake[k]]) for k in DIFFUSION_COND_KEYS if k in real}
        # One (σ, n) per real/fake pair, shared by all four passes (Eq. 15 and the paper's App. D).
        noise_level, noise = self.sample_noise(x0.chunk(2)[0])
        noise_level, noise = noise_level.repeat(2), noise.repeat((2,) + (1,) * (x0.ndim - 1))
        uncertainty = self.args.uncertainty_weighting
        ll = denoising_log_likelihood(model, self.noise_scheduler, x0, noise, noise_level, self.args.snr_gamma,
                                      uncertainty, **cond)
        with torch.no_grad():
            ref_ll = denoising_log_likelihood(self.ref_model, self.noise_scheduler, x0, noise, noise_level,
                                              self.args.snr_gamma, uncertainty, **cond)
        return (ll - ref_ll).chunk(2)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        alpha = self.args.alpha
        if self.args.cond_drop_prob > 0:
            key = "pixel_values" if self.is_diffusion else "input_ids"
            drop = self.sample_condition_dropout(len(inputs["real"][key]), inputs["real"][key].device)
            inputs = self.drop_conditions(inputs, drop)
            # α only on conditional reference samples: the unconditional part gets no push-down (issue #3)
            alpha = alpha * (~drop.chunk(2)[1]).float()
        r_real, r_fake = self.compute_log_ratio(model, inputs)
        loss = ddo_loss(r_real, r_fake, alpha, self.args.beta)
        if self.args.normalize_by_max_alpha:
            loss = loss / max(self.args.alpha, 1.0)
        with torch.no_grad():
            r_real, r_fake = self.accelerator.gather_for_metrics((r_real.detach(), r_fake.detach()))
            accuracy = torch.cat([(r_real > 0).float() + 0.5 * (r_real == 0), (r_fake < 0).float() + 0.5 * (r_fake == 0)])
            metrics = self._metrics["train" if model.training else "eval"]
            metrics["ddo/log_ratio_real"].append(r_real.mean())  # on the device until logging time
            metrics["ddo/log_ratio_fake"].append(r_fake.mean())
            metrics["ddo/margin"].append(r_real.mean() - r_fake.mean())
            metrics["ddo/accuracy"].append(accuracy.mean())
        return (loss, {"log_ratio_real": r_real, "log_ratio_fake": r_fake}) if return_outputs else loss

    # -------------------------------------------------------------------------------- EMA

    def update_ema(self) -> None:
        """``θ_ema ← d·θ_ema + (1 − d)·θ`` for every trained parameter (``d = ema_decay``), matched by name; frozen
        parameters (a PEFT adapter's base) never change, so the EMA's stay equal to them; buffers are copied."""
        self._ema.update(self.accelerator.unwrap_model(self.model))

    def checkpointed_modules(self) -> dict[str, nn.Module]:
        """The EMA is training state, like the optimizer's moments: saved with each checkpoint as
        ``ddo_ema.safetensors`` and restored on resume, so a resumed run equals an unbroken one. With an adapter
        the file holds the EMA of the trained parameters only (keyed by their names, ``/`` for ``.``), as the
        checkpoint holds the adapter only: the EMA copy's frozen base equals the model's."""
        if self._ema is None:
            return {}
        model = self.accelerator.unwrap_model(self.model)
        if not (is_peft_model(model) or is_adapted_diffusers_model(model)):
            return {"ddo_ema": self._ema.model}
        return {"ddo_ema": self._ema.trained_parameters()}

    # -------------------------------------------------------------------------------- card

    def card_training_config(self) -> dict[str, Any]:
        config = {**super().card_training_config(), "model_family": "diffusion" if self.is_diffusion else "causal LM"}
        if self.args.cond_drop_prob:
            config["cond_drop_prob"] = self.args.cond_drop_prob
        if self.args.ema_decay is not None:
            config["ema_decay"] = self.args.ema_decay
        return config

    def card_vars(self) -> dict[str, Any]:
        return {"is_diffusion": self.is_diffusion}
