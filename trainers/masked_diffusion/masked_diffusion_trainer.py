"""Masked-diffusion training of any masked language model (arXiv 2409.02908, Sec. 3; MDLM)."""

from __future__ import annotations

import inspect

import torch
from transformers import Trainer

from hfgen.pipelines.masked_diffusion.masking import alpha, elbo_weight, time_keyword, total_noise
from hfgen.validation import (
    check_bidirectional,
    check_token_id,
    check_token_ids,
    check_vocab_covers_tokenizer,
    vocab_size_of,
)

from ..base import HfgenTrainerMixin, check_args
from .masked_diffusion_config import MaskedDiffusionConfig


class MaskedDiffusionTrainer(HfgenTrainerMixin, Trainer):
    r"""Train an ``AutoModelForMaskedLM`` as the denoiser of a masked diffusion model.

    Each sequence gets a time ``t`` (stratified over the batch), each token is masked with
    probability ``1 - alpha(t)``, and the loss is the continuous-time NELBO per token (Eq. 6):

        ``E_t [ -alpha'(t) / (1 - alpha(t)) * sum_{l masked} -log mu(x_0^l | x_t) ] / L``,

    with ``mu`` the model's softmax without the mask class (Eq. 4). It equals
    ``sum_n 1/n E[sum_{l masked} -log mu(x_0^l | x_n)] / L`` over exactly-``n``-masked inputs for
    every schedule (Prop. 3.1), so the model learns ``p(x^l | visible tokens)`` at every mask ratio
    (Prop. 3.2), which is what [`~hfgen.pipelines.MaskedDiffusionPipeline`] samples with.

    The data are ``input_ids`` (fixed-length blocks; an ``attention_mask`` marks padding, which is
    never masked nor scored). Subclasses can override [`sample_times`] or [`corrupt`].

    With ``args.time_conditioning`` ``"t"`` or ``"sigma"`` the model is time-conditioned, as MDLM's
    backbone can be: its ``forward`` takes ``timesteps`` (shape ``(batch,)``) and receives each row's ``t``
    or ``sigma(t) = -log alpha(t)`` ([`model_time`]; through the ``sigma`` argument where ``forward`` has one, as
    ``MDLMDiTForMaskedLM``, which would map ``timesteps`` to ``sigma`` itself), in float32 at least. The loss is
    unchanged.
    """

    method_name = "masked_diffusion"
    card_args = ("masking_schedule", "time_epsilon", "low_discrepancy_sampling", "time_conditioning",
                 "learning_rate", "per_device_train_batch_size", "max_steps", "num_train_epochs", "seed")

    def __init__(self, model=None, args: MaskedDiffusionConfig | None = None, *pargs, **kwargs):
        args = check_args(args, MaskedDiffusionConfig, "masked_diffusion_output")
        super().__init__(model, args, *pargs, **kwargs)
        mask_id = args.mask_token_id
        if mask_id is None:
            mask_id = getattr(self.processing_class, "mask_token_id", None)
        if mask_id is None:
            raise ValueError("No mask token: pass `mask_token_id` in the config or a `processing_class` that has one.")
        model = self.accelerator.unwrap_model(self.model)
        check_bidirectional("model", model)
        check_vocab_covers_tokenizer("model", model, self.processing_class)
        self.vocab_size = vocab_size_of(model)
        if self.vocab_size is not None:
            check_token_id("mask_token_id", mask_id, self.vocab_size)
        self.mask_token_id = int(mask_id)
        if args.time_conditioning is not None:
            forward = self.accelerator.unwrap_model(self.model).forward
            if "timesteps" not in inspect.signature(forward).parameters:
                raise ValueError(f"`time_conditioning={args.time_conditioning!r}` needs a model whose forward takes "
                                 f"`timesteps`; {type(self.model).__name__}.forward does not.")

    def sample_times(self, batch_size: int, device) -> torch.Tensor:
        """``t ~ U(time_epsilon, 1)``, stratified over the batch if ``low_discrepancy_sampling`` (App. G.2)."""
        u = torch.rand(batch_size, device=device, dtype=torch.float64)
        if self.args.low_discrepancy_sampling:
            u = (u + torch.arange(batch_size, device=device)) / batch_size
        return self.args.time_epsilon + (1 - self.args.time_epsilon) * u

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """The ``timesteps`` a time-conditioned model receives: ``t`` or ``sigma(t) = -log alpha(t)``."""
        if self.args.time_conditioning == "sigma":
            return total_noise(self.args.masking_schedule, t, self.args.schedule_eps)
        return t

    def corrupt(self, input_ids, t, maskable):
        """The forward process (Eq. 1): mask each token independently with probability ``1 - alpha(t)``."""
        keep = alpha(self.args.masking_schedule, t, self.args.schedule_eps)[:, None]
        masked = (torch.rand(input_ids.shape, device=input_ids.device, dtype=torch.float64) >= keep) & maskable
        return torch.where(masked, self.mask_token_id, input_ids), masked

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        x_0 = inputs["input_ids"]
        if self.vocab_size is not None:  # one min/max per batch, before the forward pass
            check_token_ids("train_dataset", x_0, self.vocab_size)
        maskable = inputs.get("attention_mask", torch.ones_like(x_0)).bool()
        t = self.sample_times(x_0.shape[0], x_0.device)
        x_t, masked = self.corrupt(x_0, t, maskable)
        kwargs = {}
        if self.args.time_conditioning is not None:  # float32 at least whatever the model's dtype (bf16 rounds t near 1)
            unwrapped = self.accelerator.unwrap_model(model)
            dtype = torch.promote_types(next(unwrapped.parameters()).dtype, torch.float32)
            kwargs[time_keyword(unwrapped, self.args.time_conditioning)] = self.model_time(t).to(dtype)
        outputs = model(input_ids=x_t, attention_mask=maskable.long(), **kwargs)
        mask_class = torch.tensor([self.mask_token_id], device=x_0.device)
        logits = outputs.logits.float().index_fill(-1, mask_class, -torch.inf)  # SUBS: no mass on the mask (Eq. 4)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x_0, reduction="none")  # [B, L]
        weight = elbo_weight(self.args.masking_schedule, t, self.args.schedule_eps).float()
        per_sequence = weight * (nll * masked).sum(1) / maskable.sum(1)  # NELBO per token, one draw of t
        loss = per_sequence.mean()
        # averaged over processes, as Trainer does for the logged loss; kept on the device until logging time
        stats = torch.stack([loss.detach(), (masked.sum() / maskable.sum()).to(loss.dtype)])
        nelbo, mask_ratio = self.accelerator.reduce(stats, reduction="mean").unbind()
        mode = "train" if model.training else "eval"
        self._metrics[mode]["nelbo"].append(nelbo)
        self._metrics[mode]["mask_ratio"].append(mask_ratio)
        return (loss, outputs) if return_outputs else loss
