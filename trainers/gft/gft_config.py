"""Configuration of guidance-free training (GFT, arXiv 2501.15420)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
NOISE_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
GFT_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(refused={
    "remove_unused_columns": "it must stay False: the trainer reads the data set's columns (`pixel_values`, `labels`, `encoder_hidden_states`, `input_ids`)",
})


@dataclass
class GFTConfig(TrainingArguments):
    r"""Arguments of [`GFTTrainer`], on top of [`~transformers.TrainingArguments`].

    GFT draws a temperature β per example and trains the β-conditioned network through the implicit
    conditional model β·f_θ(x | c, β) + (1 − β)·sg[f_θ(x | ∅, 1)] with the ordinary conditional loss (MSE on
    the diffusion target, cross-entropy on the next token). Defaults follow the official code (thu-ml/GFT):
    β ~ U(0, 1), condition dropout 0.1, ε-prediction on a 1000-step linear DDPM schedule.
    ``beta_min = beta_max = 1`` is ordinary conditional training with condition dropout, i.e. CFG training.

    Parameters:
        cond_drop_prob (`float`, *optional*, defaults to `0.1`):
            Probability of replacing an example's condition by the null condition (its β input is then 1, as
            in the official code). 0.1 for DiT/LlamaGen; 0.0 works too because GFT evaluates the null branch
            explicitly (the official SD1.5 recipe).
        beta_min (`float`, *optional*, defaults to `0.0`):
            Lower end of the training distribution β ~ U(beta_min, beta_max).
        beta_max (`float`, *optional*, defaults to `1.0`):
            Upper end of β ~ U(beta_min, beta_max); at most 1.
        beta_power (`float`, *optional*, defaults to `1.0`):
            Shape of the β distribution: β = beta_min + (beta_max − beta_min)·u^beta_power, u ~ U(0, 1) (the official
            SD1.5 `--pho`; 1 = uniform, > 1 puts more mass near beta_min).
        null_branch_beta (`str`, *optional*, defaults to `"one"`):
            β input of the stop-gradient unconditional branch: 'one' (β = 1, as the official DiT and LlamaGen code)
            or 'none' (no β input, as the official SD1.5 code; equal to 'one' while the β projection is zero).
        ema_decay (`float | None`, *optional*, defaults to `None`):
            Keep an EMA of the weights (`trainer.ema_model`), updated after each optimizer step and checkpointed; the
            official recipes use 0.9999. None = off.
        prediction_type (`str | None`, *optional*, defaults to `None`):
            Diffusion target, one of ('epsilon', 'v_prediction', 'sample'); None uses the noise scheduler's
            own. The GFT interpolation is linear in whichever output space the loss uses.
        num_train_timesteps (`int`, *optional*, defaults to `1000`):
            Timesteps of the default DDPMScheduler.
        noise_schedule (`str`, *optional*, defaults to `"linear"`):
            `beta_schedule` of the default DDPMScheduler (the *noise* schedule; unrelated to the GFT
            temperature β), one of ('linear', 'scaled_linear', 'squaredcos_cap_v2').
        null_class_label (`int | None`, *optional*, defaults to `None`):
            Null label of a class-conditional unet; None means the last class embedding (`num_class_embeds -
            1`), the convention GuidanceFreePipeline samples with.
        null_condition_token_id (`int | None`, *optional*, defaults to `None`):
            Autoregressive models: the token that replaces the condition token (position 0) for the
            unconditional branch; None uses `model.config.null_condition_token_id`.
    """

    cond_drop_prob: float = field(
        default=0.1,
        metadata={"help": "Probability of replacing an example's condition by the null condition (its β input is then "
                          "1, as in the official code). 0.1 for DiT/LlamaGen; 0.0 works too because GFT evaluates the "
                          "null branch explicitly (the official SD1.5 recipe)."},
    )
    beta_min: float = field(default=0.0, metadata={"help": "Lower end of the training distribution β ~ U(beta_min, beta_max)."})
    beta_max: float = field(default=1.0, metadata={"help": "Upper end of β ~ U(beta_min, beta_max); at most 1."})
    beta_power: float = field(
        default=1.0,
        metadata={"help": "Shape of the β distribution: β = beta_min + (beta_max − beta_min)·u^beta_power, u ~ U(0, 1) "
                          "(the official SD1.5 `--pho`; 1 = uniform, > 1 puts more mass near beta_min)."},
    )
    null_branch_beta: str = field(
        default="one",
        metadata={"help": "β input of the stop-gradient unconditional branch: 'one' (β = 1, as the official DiT and "
                          "LlamaGen code, and the β dropped rows are trained with) or 'none' (no β input, "
                          "`timestep_cond=None`, as the official SD1.5 code; equal to 'one' while the β projection is "
                          "zero, i.e. at the start of fine-tuning).",
                  "choices": ["one", "none"]},
    )
    ema_decay: float | None = field(
        default=None,
        metadata={"help": "Keep an EMA θ_ema ← d·θ_ema + (1 − d)·θ of the weights (`trainer.ema_model`), updated after "
                          "each optimizer step and checkpointed; the official recipes use 0.9999. None = off."},
    )
    prediction_type: str | None = field(
        default=None,
        metadata={"help": f"Diffusion target, one of {PREDICTION_TYPES}; None uses the noise scheduler's own. The "
                          "GFT interpolation is linear in whichever output space the loss uses."},
    )
    num_train_timesteps: int = field(default=1000, metadata={"help": "Timesteps of the default DDPMScheduler."})
    noise_schedule: str = field(
        default="linear",
        metadata={"help": f"`beta_schedule` of the default DDPMScheduler (the *noise* schedule; unrelated to the GFT "
                          f"temperature β), one of {NOISE_SCHEDULES}."},
    )
    null_class_label: int | None = field(
        default=None,
        metadata={"help": "Null label of a class-conditional unet; None means the last class embedding "
                          "(`num_class_embeds - 1`), the convention GuidanceFreePipeline samples with."},
    )
    null_condition_token_id: int | None = field(
        default=None,
        metadata={"help": "Autoregressive models: the token that replaces the condition token (position 0) for the "
                          "unconditional branch; None uses `model.config.null_condition_token_id`."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep the data set's columns (`pixel_values`, `labels`, `encoder_hidden_states`, `input_ids`)."},
    )

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        GFT_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        if not self.beta_power > 0:
            raise ValueError(f"`beta_power` must be > 0, got {self.beta_power!r}.")
        if self.null_branch_beta not in ("one", "none"):
            raise ValueError(f"`null_branch_beta` must be 'one' or 'none', got {self.null_branch_beta!r}.")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"`ema_decay` must lie in [0, 1] or be None, got {self.ema_decay!r}.")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"`cond_drop_prob` must lie in [0, 1), got {self.cond_drop_prob!r}.")
        if not 0.0 <= self.beta_min <= self.beta_max <= 1.0 or self.beta_max == 0.0:
            raise ValueError(
                f"`beta_min` and `beta_max` must satisfy 0 <= beta_min <= beta_max <= 1 with beta_max > 0, got "
                f"beta_min={self.beta_min!r}, beta_max={self.beta_max!r}."
            )
        if self.prediction_type is not None and self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES} or None, got {self.prediction_type!r}.")
        if self.noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"`noise_schedule` must be one of {NOISE_SCHEDULES}, got {self.noise_schedule!r}.")
        if self.num_train_timesteps < 2:
            raise ValueError(f"`num_train_timesteps` must be >= 2, got {self.num_train_timesteps!r}.")
        super().__post_init__()

    @property
    def guidance_free(self) -> bool:
        """False for ``beta_min = beta_max = 1``: plain conditional (CFG) training, no null branch needed."""
        return self.beta_min < 1.0
