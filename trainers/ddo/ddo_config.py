"""Configuration of [`~hfgen.trainers.DDOTrainer`] (Direct Discriminative Optimization)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
DDO_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(refused={
    "remove_unused_columns": "it must stay False: DDO batches hold nested 'real' and 'fake' examples",
})


@dataclass
class DDOConfig(TrainingArguments):
    r"""Arguments of [`DDOTrainer`], on top of [`~transformers.TrainingArguments`]: Direct Discriminative Optimization
    (Zheng et al., ICML 2025, arXiv 2503.01103).

    The fine-tuned model ``p_θ`` and a frozen copy ``p_ref`` of the pretrained model define the implicit
    discriminator ``σ(β·r)`` with ``r = log p_θ − log p_ref``, trained with (Eq. 13)

        L(θ) = − E_{x∼p_data} log σ(β r(x)) − α · E_{x∼p_ref} log σ(−β r(x)).

    For causal LMs ``r`` is exact (a sum of token log-probability differences); for diffusion models it is the
    one-draw ELBO proxy of Eqs. 14-16: ``Δ = −Σ_dims w · (err_θ² − err_ref²)`` at a noise level and noise shared by
    all four forward passes. ``α`` and ``β`` refer to this *summed* (not averaged) ``Δ``.

    Parameters:
        alpha (`float`, *optional*, defaults to `1.0`):
            Weight α ≥ 0 of the push-down term on reference samples.
        beta (`float`, *optional*, defaults to `0.02`):
            Scale β > 0 of the log-ratio inside the sigmoid; the paper's typical range is [0.01, 0.1] for summed Δ.
        normalize_by_max_alpha (`bool`, *optional*, defaults to `False`):
            Divide the loss by ``max(α, 1)`` (the official VAR trainer's normalisation).
        disable_dropout (`bool`, *optional*, defaults to `True`):
            Set every dropout probability of the model to 0, so θ and the reference see the same network (with
            dropout the two passes use different masks and ``r ≠ 0`` at ``θ = θ_ref``).
        p_mean (`float`, *optional*, defaults to `-0.4`):
            Mean of the log-normal noise level ``ln σ ∼ N(p_mean, p_std²)`` of EDM denoisers (EDM2 / the paper's
            App. D default).
        p_std (`float`, *optional*, defaults to `1.0`):
            Standard deviation of ``ln σ`` for EDM denoisers.
        snr_gamma (`float | None`, *optional*, defaults to `None`):
            Min-SNR-γ weighting for DDPM-style schedulers (use it iff the model was pretrained with it); None means
            the plain summed MSE (w = 1).
        uncertainty_weighting (`bool`, *optional*, defaults to `False`):
            For EDM2-style denoisers (learned uncertainty u(σ), output field ``logvar``): the likelihood proxy of each
            model is its EDM2 pretraining loss ``Σ [λ(σ)/e^u (D − x)² + u]`` (θ with its own u, the reference with its
            frozen u). The paper's EDM2 appendix was not readable; this follows its rule that the proxy is the
            model's own pretraining loss, with EDM2's ``EDM2Loss``. False: the EDM loss ``Σ λ(σ) (D − x)²``.
        num_rounds (`int`, *optional*, defaults to `1`):
            Self-play rounds; each one takes the best model as the next reference (see
            [`~hfgen.trainers.ddo.ddo_self_play`]).
        num_reference_samples (`int`, *optional*, defaults to `1024`):
            Samples generated from the reference at the start of each self-play round.
        self_play_eval_steps (`int`, *optional*, defaults to `50`):
            Evaluate the user metric every this many steps of a self-play round.
        cond_drop_prob (`float`, *optional*, defaults to `0.0`):
            Probability of replacing a row's condition by the null condition, for classifier-free-guidance-
            compatible fine-tuning of a conditional model; 0 disables it. The paper keeps random label dropout
            during DDO and sets α = 0 for the unconditional part (NVlabs/DDO issue #3): a row whose condition is
            dropped is evaluated with the null condition by θ and by the reference alike; a dropped real row keeps
            the data term, a dropped reference sample gets weight 0.
        null_class_label (`int | None`, *optional*, defaults to `None`):
            Null label of a class-conditional denoiser; None means the last class embedding (`num_class_embeds − 1`).
        null_condition_token_id (`int | None`, *optional*, defaults to `None`):
            Causal LMs: the token that replaces the condition (class) token at position 0 of a dropped row; None uses
            `model.config.null_condition_token_id`.
        ema_decay (`float | None`, *optional*, defaults to `None`):
            Keep an exponential moving average ``θ_ema ← d·θ_ema + (1 − d)·θ`` of the weights (`trainer.ema_model`),
            updated after every optimizer step, saved in checkpoints; self-play then evaluates and keeps the EMA,
            which becomes the next reference. From an EDM-style half-life ``H`` in images and a total batch size
            ``B``: ``d = 0.5 ** (B / H)``. None: no EMA.
        remove_unused_columns (`bool`, *optional*, defaults to `False`):
            Keep all columns: DDO batches are ``{"real": ..., "fake": ...}`` pairs.
        logging_steps (`float`, *optional*, defaults to `10`):
            Log every X update steps.
    """

    alpha: float = field(default=1.0, metadata={"help": "Weight α ≥ 0 of the term on reference samples (Eq. 13)."})
    beta: float = field(
        default=0.02,
        metadata={"help": "Scale β > 0 of the log-ratio inside the sigmoid (Eq. 13), for the summed log-ratio."},
    )
    normalize_by_max_alpha: bool = field(
        default=False, metadata={"help": "Divide the loss by max(α, 1), as the official VAR trainer does."}
    )
    disable_dropout: bool = field(
        default=True, metadata={"help": "Set dropout to 0 in the model so that θ and the reference agree at init."}
    )
    p_mean: float = field(
        default=-0.4, metadata={"help": "Mean of ln σ for EDM denoisers (EDM2 / the paper's App. D default)."}
    )
    p_std: float = field(default=1.0, metadata={"help": "Standard deviation of ln σ for EDM denoisers."})
    snr_gamma: float | None = field(
        default=None,
        metadata={"help": "Min-SNR-γ weighting for DDPM-style schedulers; None means the plain summed MSE (w = 1)."},
    )
    uncertainty_weighting: bool = field(
        default=False,
        metadata={"help": "EDM denoisers trained with EDM2's learned uncertainty u(σ): use each model's EDM2 "
                          "pretraining loss Σ [λ(σ)/e^u (D − x)² + u] as its log-likelihood proxy (the model's output "
                          "must carry `logvar`). False: the EDM loss Σ λ(σ) (D − x)² (the paper's App. D)."},
    )
    num_rounds: int = field(default=1, metadata={"help": "Self-play rounds; each one takes the best model as reference."})
    num_reference_samples: int = field(
        default=1024, metadata={"help": "Number of samples generated from the reference at the start of each round."}
    )
    self_play_eval_steps: int = field(
        default=50, metadata={"help": "Evaluate the user metric every this many steps of a self-play round."}
    )
    cond_drop_prob: float = field(
        default=0.0,
        metadata={"help": "Probability of replacing a row's condition by the null condition (CFG-compatible "
                          "fine-tuning); reference samples whose condition is dropped get α = 0. 0 disables it."},
    )
    null_class_label: int | None = field(
        default=None,
        metadata={"help": "Null label of a class-conditional denoiser; None means the last class embedding "
                          "(`num_class_embeds − 1`)."},
    )
    null_condition_token_id: int | None = field(
        default=None,
        metadata={"help": "Causal LMs: the token that replaces the condition (class) token at position 0 of a "
                          "dropped row; None uses `model.config.null_condition_token_id`."},
    )
    ema_decay: float | None = field(
        default=None,
        metadata={"help": "Decay in [0, 1] of an EMA of the weights, updated after each optimizer step, saved in "
                          "checkpoints and used by self-play as the evaluated/next-reference model. None: no EMA."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep all columns: DDO batches are {'real': ..., 'fake': ...} pairs."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        DDO_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        # Validate DDO's own arguments before TrainingArguments does any (possibly expensive) setup.
        if not self.alpha >= 0:
            raise ValueError(f"`alpha` must be >= 0, got {self.alpha}.")
        if not self.beta > 0:
            raise ValueError(f"`beta` must be > 0, got {self.beta}.")
        if not self.p_std > 0:
            raise ValueError(f"`p_std` must be > 0, got {self.p_std}.")
        if self.snr_gamma is not None and not self.snr_gamma > 0:
            raise ValueError(f"`snr_gamma` must be > 0 or None, got {self.snr_gamma}.")
        if self.num_rounds < 1:
            raise ValueError(f"`num_rounds` must be >= 1, got {self.num_rounds}.")
        if self.num_reference_samples < 1:
            raise ValueError(f"`num_reference_samples` must be >= 1, got {self.num_reference_samples}.")
        if self.self_play_eval_steps < 1:
            raise ValueError(f"`self_play_eval_steps` must be >= 1, got {self.self_play_eval_steps}.")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"`cond_drop_prob` must lie in [0, 1), got {self.cond_drop_prob}.")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"`ema_decay` must lie in [0, 1] or be None, got {self.ema_decay}.")
        super().__post_init__()
