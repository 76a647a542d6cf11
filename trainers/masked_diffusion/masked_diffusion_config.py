"""Configuration of [`MaskedDiffusionTrainer`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.pipelines.masked_diffusion.masking import MASKING_SCHEDULES
from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
MASKED_DIFFUSION_OPTIONS = TRAINING_ARGUMENTS_OPTIONS


@dataclass
class MaskedDiffusionConfig(TrainingArguments):
    r"""Training arguments for masked-diffusion training of a masked language model (arXiv 2409.02908).

    Everything of [`~transformers.TrainingArguments`] applies; the fields below are the method's. The
    defaults follow the paper's OWT setting (App. H.3: AdamW, learning rate 3e-4, warm-up 2,500 steps,
    gradient clipping 1) where they make sense at any scale; scale ``warmup_steps`` to your run.

    Parameters:
        masking_schedule (`str`, *optional*, defaults to `"linear"`):
            alpha(t) of the forward process: 'linear', 'cosine' or 'loglinear' (MDLM). The NELBO does not
            depend on it (Prop. 3.1); it changes the variance of the estimator.
        schedule_eps (`float`, *optional*, defaults to `0.001`):
            eps of the loglinear schedule 1 - (1 - eps) t.
        time_epsilon (`float`, *optional*, defaults to `0.001`):
            t is drawn from U(time_epsilon, 1) (MDLM's sampling_eps), which keeps the 1/t weight finite.
        low_discrepancy_sampling (`bool`, *optional*, defaults to `True`):
            Stratify t over the batch, t_i = (u_i + i) / B (App. G.2); lowers the loss variance.
        time_conditioning (`str | None`, *optional*, defaults to `None`):
            None: a time-agnostic denoiser (any masked LM). 't' or 'sigma': the model's forward takes `timesteps` and
            receives t or sigma(t) = -log alpha(t) (MDLM's time-conditioned backbone).
        mask_token_id (`int | None`, *optional*, defaults to `None`):
            The mask token; defaults to the processing_class's mask_token_id.
    """

    masking_schedule: str = field(
        default="linear",
        metadata={"help": "alpha(t) of the forward process: 'linear', 'cosine' or 'loglinear' (MDLM). The NELBO "
                  "does not depend on it (Prop. 3.1); it changes the variance of the estimator."},
    )
    schedule_eps: float = field(default=1e-3, metadata={"help": "eps of the loglinear schedule 1 - (1 - eps) t."})
    time_epsilon: float = field(
        default=1e-3,
        metadata={"help": "t is drawn from U(time_epsilon, 1) (MDLM's sampling_eps), which keeps the 1/t weight finite."},
    )
    low_discrepancy_sampling: bool = field(
        default=True,
        metadata={"help": "Stratify t over the batch, t_i = (u_i + i) / B (App. G.2); lowers the loss variance."},
    )
    time_conditioning: str | None = field(
        default=None,
        metadata={"help": "None: a time-agnostic denoiser (any masked LM; the optimum does not depend on t, Prop. 3.2). "
                  "'t' or 'sigma': the model's forward takes `timesteps` and receives t or sigma(t) = -log alpha(t) "
                  "(MDLM's time-conditioned backbone); sample with the same `time_input` in MaskedDiffusionPipeline."},
    )
    mask_token_id: int | None = field(
        default=None, metadata={"help": "The mask token; defaults to the processing_class's mask_token_id."}
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate (App. H.3)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (App. H.3)."})

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        MASKED_DIFFUSION_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        if self.masking_schedule not in MASKING_SCHEDULES:
            raise ValueError(f"`masking_schedule` must be one of {MASKING_SCHEDULES}, got {self.masking_schedule!r}.")
        if not 0 < self.schedule_eps < 1:
            raise ValueError(f"`schedule_eps` must lie in (0, 1), got {self.schedule_eps!r}.")
        if not 0 < self.time_epsilon < 1:
            raise ValueError(f"`time_epsilon` must lie in (0, 1), got {self.time_epsilon!r}.")
        if self.time_conditioning not in (None, "t", "sigma"):
            raise ValueError(f"`time_conditioning` must be None, 't' or 'sigma', got {self.time_conditioning!r}.")
        if self.mask_token_id is not None and self.mask_token_id < 0:
            raise ValueError(f"`mask_token_id` must be a non-negative token id, got {self.mask_token_id!r}.")
        super().__post_init__()
