"""Configuration of [`~hfgen.trainers.NFTTrainer`] (Negative-aware Fine-Tuning, arXiv 2505.18116)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS, field_notes

QUESTION_WEIGHTS = ("none", "one_minus_rq", "grpo")
RATIO_TYPES = ("token", "sequence")
# TRL's aggregations of a per-token loss; the other GRPO loss types are different objectives, not aggregations.
LOSS_AGGREGATIONS = ("grpo", "bnpo", "dr_grpo", "dapo")

_NO_PPO_CLIP = ("NFT has no PPO ratio clip: its implicit negative ratio is clamped by `negative_clamp` and log R is "
                "capped by `max_log_ratio`")
_GRPO_LOSS = "it belongs to a GRPO loss NFT does not compute; choose NFT's aggregation with `loss_type`"
_ENTROPY = "NFT's loss has no entropy term (the paper and its official recipe use none)"

# Every GRPOConfig field (TrainingArguments' included), classified: see hfgen/trainers/options.py.
NFT_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(
    parent=GRPOConfig,
    honoured={
        **field_notes("GRPOTrainer's model set-up", "model_init_kwargs router_aux_loss_coef disable_dropout "
                      "cast_lm_head_to_fp32"),
        **field_notes("GRPOTrainer wires Liger's layer kernels (deprecated there); not run here (needs a GPU)",
                      "use_liger_kernel liger_kernel_config"),
        **field_notes("GRPOTrainer's generation and batching (NFT only rescores and changes the loss)",
                      "num_generations num_generations_eval max_completion_length ds3_gather_for_generation "
                      "shuffle_dataset pad_to_multiple_of generation_batch_size steps_per_generation temperature top_p "
                      "top_k min_p generation_kwargs chat_template_kwargs repetition_penalty cache_implementation "
                      "max_tool_calling_iterations use_transformers_continuous_batching "
                      "transformers_continuous_batching_config use_transformers_paged"),
        **field_notes("GRPOTrainer's vLLM generation (server and colocate), as GRPOTrainer wires it; not run here "
                      "(vLLM needs a GPU)", "use_vllm vllm_mode vllm_model_impl vllm_enable_sleep_mode "
                      "vllm_structured_outputs_regex vllm_server_base_url vllm_server_host vllm_server_port "
                      "vllm_server_timeout vllm_group_port vllm_gpu_memory_utilization vllm_max_model_length "
                      "vllm_tensor_parallel_size"),
        **field_notes("GRPOTrainer's truncated-importance-sampling ratio, multiplied into NFT's per-token loss",
                      "vllm_importance_sampling_correction vllm_importance_sampling_mode "
                      "vllm_importance_sampling_clip_max vllm_importance_sampling_clip_min "
                      "vllm_importance_sampling_cap"),
        **field_notes("the k3 KL to the reference model added to NFT's loss as in GRPO (logged as `kl`)",
                      "beta use_bias_correction_kl"),
        **field_notes("GRPOTrainer's reference-model synchronisation (with beta > 0)", "sync_ref_model "
                      "ref_model_mixup_alpha ref_model_sync_steps"),
        "num_iterations": "GRPOTrainer reuses each generation batch for this many passes (pi_old is then recomputed)",
        "reward_weights": "weights of the reward functions in the sum that `correct_threshold` compares",
        "loss_type": "NFT's aggregation of its per-token loss, with TRL's meaning (one of dr_grpo, dapo, bnpo, grpo)",
        "mask_truncated_completions": "GRPOTrainer zeroes the completion mask of truncated answers, so they leave "
                                      "NFT's loss",
        **field_notes("GRPOTrainer's completion logging", "log_completions log_multimodal num_completions_to_print "
                      "log_unique_prompts log_completions_hub_repo"),
    },
    refused={
        "trust_remote_code": "hfgen never runs code from the Hub; load a model transformers supports natively",
        **field_notes(_NO_PPO_CLIP, "epsilon epsilon_high delta"),
        **field_notes(_GRPO_LOSS, "sapo_temperature_neg sapo_temperature_pos vespo_k_pos vespo_lambda_pos "
                      "vespo_k_neg vespo_lambda_neg"),
        "importance_sampling_level": "set NFT's `ratio_type` ('token' or 'sequence') instead",
        "scale_rewards": "NFT uses no advantages; the per-question weight is `question_weight`",
        "multi_objective_aggregation": "NFT sums the weighted rewards (`reward_weights`) and compares the sum with "
                                       "`correct_threshold`",
        "top_entropy_quantile": _ENTROPY,
        "off_policy_mask_threshold": "NFT has no off-policy sequence mask; off-policy answers are weighted by "
                                     "their ratio R in NFT's loss",
        **field_notes(_ENTROPY, "entropy_coef use_adaptive_entropy entropy_coef_min entropy_coef_max "
                      "entropy_coef_delta entropy_target"),
    },
)


@dataclass
class NFTConfig(GRPOConfig):
    r"""
    Configuration class for [`NFTTrainer`]: every [`trl.GRPOConfig`] parameter (generation, vLLM, reward
    functions, logging, batch sizes) plus the few that Negative-aware Fine-Tuning adds.

    NFT fits the positive answers of each question by maximum likelihood under the policy
    $\pi_\theta$ and the negative answers under the *implicit negative policy*
    $\pi^-_\theta = (\pi_\text{old} - r_q\,\pi_\theta) / (1 - r_q)$, where $r_q$ is the fraction of
    correct answers among the group sampled for question $q$ (paper, Eq. 10):

    $$\mathcal{L} = -\sum_{q,a} \omega(q) \sum_t \Big[ c_a \log R_t
        + \lambda_- (1 - c_a) \log \max\nolimits_v\Big(\frac{1 - \hat r_q R_t}{1 - \hat r_q}, \epsilon\Big)\Big],
    \qquad R_t = \frac{\pi_\theta(a_t \mid q, a_{<t})}{\pi_\text{old}(a_t \mid q, a_{<t})}.$$

    Inherited fields: each is honoured, refused with an error naming what NFT uses instead (PPO clipping
    `epsilon`/`epsilon_high`/`delta`, `scale_rewards`, `multi_objective_aggregation`, the entropy and SAPO/VESPO
    fields, `importance_sampling_level`, `label_smoothing_factor`, `neftune_noise_alpha`, `trust_remote_code`) or not
    applicable, as listed in `NFT_OPTIONS` (module `hfgen.trainers.nft.nft_config`). vLLM generation and Liger
    kernels are wired as `GRPOTrainer` wires them and have not been run by hfgen's tests (they need a GPU).

    Parameters:
        neg_weight (`float`, *optional*, defaults to `1.0`):
            Weight $\lambda_-$ of the negative-answer term. `1.0` is NFT; `0.0` is RFT (rejection-sampling
            fine-tuning: likelihood of the correct answers only).
        question_weight (`str`, *optional*, defaults to `"one_minus_rq"`):
            Per-question weight $\omega(q)$: `"none"` ($1$), `"one_minus_rq"` ($1 - \hat r_q$, the official
            default, which matches Dr. GRPO at strict on-policy) or `"grpo"` ($\sqrt{(1-\hat r_q)/\hat r_q}$,
            which matches std-normalised GRPO at strict on-policy).
        negative_clamp (`float`, *optional*, defaults to `1.0`):
            $\epsilon$ of the clamp $\max_v(x, \epsilon) = x + \mathrm{sg}[\max(x, \epsilon) - x]$ of the
            implicit negative ratio: the forward value is clamped, the gradient is that of $x$. With
            $\epsilon \le 1$ the clamp never acts at strict on-policy.
        rq_clip (`list[float]`, *optional*, defaults to `[0.02, 0.98]`):
            Clip range of the correct rate $\hat r_q$ before it enters the loss and $\omega(q)$.
        max_log_ratio (`float`, *optional*, defaults to `10.0`):
            Upper cap on $\log R$ (token- or sequence-level) before it is exponentiated.
        ratio_type (`str`, *optional*, defaults to `"token"`):
            `"token"`: one ratio $R_t$ per token. `"sequence"`: one ratio per answer,
            $R = \exp(\sum_t \log R_t)$ (a *sum*, unlike GSPO's mean) and one loss per answer, whatever its
            length: every `loss_type` then takes the mean over the answers of the batch, i.e. the official
            $\sum_\text{answers} \ell$ divided by the batch size.
        correct_threshold (`float`, *optional*, defaults to `0.5`):
            An answer is correct when its (weighted, summed) reward is above this value; `0.5` fits both
            $\{0, 1\}$ and $\pm 1$ verifiers.
        dynamic_sampling (`bool`, *optional*, defaults to `True`):
            Drop questions whose answers are all correct or all wrong ($\hat r_q \in \{0, 1\}$) from the loss,
            as the official code does (NFT assumes $0 < r_q < 1$). They get zero weight: with a constant
            normaliser (`loss_type="dr_grpo"`) this is exactly dropping them. The batch is then refilled, see
            `max_refill_rounds`.
        max_refill_rounds (`int`, *optional*, defaults to `29`):
            DAPO dynamic sampling, as the official NFT trainer does it: while the generation batch holds fewer
            mixed questions ($0 < \hat r_q < 1$) than it has questions, generate answers for that many more
            questions drawn at random from the training set (at most this many extra generation rounds) and keep
            the mixed ones, in order. If the cap is reached, the free slots keep degenerate questions at zero
            weight (the official trainer raises instead). The default is the official recipe's budget: at most
            `max_num_gen_batches=10` generation batches of 3x the train batch's questions, i.e. 30 batches' worth
            of questions; here each round draws one batch's worth, so 1 + 29 rounds. `0` disables the refill. Needs
            `dynamic_sampling=True`; logged as `nft/refill_rounds`.
        loss_type (`str`, *optional*, defaults to `"dr_grpo"`):
            How the per-token loss is aggregated, with TRL's meaning: `"dr_grpo"` (sum over tokens / (batch *
            `max_completion_length`), a constant normaliser as in the official code), `"dapo"`, `"bnpo"` or
            `"grpo"`.
    """

    neg_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the negative-answer (implicit negative policy) term: 1.0 is NFT, 0.0 is RFT."},
    )
    question_weight: str = field(
        default="one_minus_rq",
        metadata={
            "help": "Per-question weight omega(q): 'none' (1), 'one_minus_rq' (1 - r_q, official default; matches "
            "Dr. GRPO on-policy) or 'grpo' (sqrt((1 - r_q) / r_q); matches GRPO on-policy).",
            "choices": list(QUESTION_WEIGHTS),
        },
    )
    negative_clamp: float = field(
        default=1.0,
        metadata={
            "help": "epsilon of the forward-clamped, gradient-preserving clamp max(x, epsilon) of the implicit "
            "negative ratio (1 - r_q R) / (1 - r_q). Must be > 0."
        },
    )
    rq_clip: list[float] = field(
        default_factory=lambda: [0.02, 0.98],
        metadata={"help": "Clip range [low, high] of the per-question correct rate r_q, with 0 < low < high < 1."},
    )
    max_log_ratio: float = field(
        default=10.0,
        metadata={"help": "Upper cap on the log-ratio log(pi_theta / pi_old) before exponentiation."},
    )
    ratio_type: str = field(
        default="token",
        metadata={
            "help": "'token' (one ratio per token) or 'sequence' (one ratio per answer: exp of the summed token "
            "log-ratios).",
            "choices": list(RATIO_TYPES),
        },
    )
    correct_threshold: float = field(
        default=0.5,
        metadata={"help": "An answer whose summed (weighted) reward is above this value counts as correct."},
    )
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Drop questions whose answers are all correct or all wrong (r_q in {0, 1}) from the loss."},
    )
    max_refill_rounds: int = field(
        default=29,
        metadata={
            "help": "Extra generation rounds (DAPO dynamic sampling) used to refill the batch with mixed questions "
            "after all-correct / all-wrong ones are dropped; 29 = the official budget (10 generation batches of 3x "
            "the train batch), 0 = off."
        },
    )
    loss_type: str = field(
        default="dr_grpo",
        metadata={
            "help": "Aggregation of the per-token loss, as in TRL: 'dr_grpo' (constant normaliser, as the official "
            "code), 'dapo', 'bnpo' or 'grpo'.",
            "choices": list(LOSS_AGGREGATIONS),
        },
    )

    def __post_init__(self):
        check_numeric_fields(self, GRPOConfig)  # wrong types and NaN, naming the field
        NFT_OPTIONS.check(self)  # inherited fields NFT does not honour, named (see `NFT_OPTIONS`)
        # NFT's own fields are checked first, before TrainingArguments does any work.
        if self.neg_weight < 0:
            raise ValueError(f"`neg_weight` must be >= 0 (1.0 = NFT, 0.0 = RFT), got {self.neg_weight}.")
        if self.question_weight not in QUESTION_WEIGHTS:
            raise ValueError(f"`question_weight` must be one of {QUESTION_WEIGHTS}, got {self.question_weight!r}.")
        if not self.negative_clamp > 0:
            raise ValueError(f"`negative_clamp` (epsilon) must be > 0, got {self.negative_clamp}.")
        if len(self.rq_clip) != 2 or not 0.0 < self.rq_clip[0] < self.rq_clip[1] < 1.0:
            raise ValueError(f"`rq_clip` must be [low, high] with 0 < low < high < 1, got {self.rq_clip}.")
        self.rq_clip = [float(x) for x in self.rq_clip]
        if not self.max_log_ratio > 0:
            raise ValueError(f"`max_log_ratio` must be > 0, got {self.max_log_ratio}.")
        if self.ratio_type not in RATIO_TYPES:
            raise ValueError(f"`ratio_type` must be one of {RATIO_TYPES}, got {self.ratio_type!r}.")
        if not isinstance(self.max_refill_rounds, int) or self.max_refill_rounds < 0:
            raise ValueError(f"`max_refill_rounds` must be an integer >= 0, got {self.max_refill_rounds!r}.")
        if (
            self.ratio_type == "sequence"
            and self.use_vllm
            and self.vllm_importance_sampling_correction
            and not self.vllm_importance_sampling_mode.startswith("sequence")
        ):
            raise ValueError(
                "`ratio_type='sequence'` gives one loss per answer, so `vllm_importance_sampling_mode` must be a "
                f"sequence-level mode ('sequence_mask' or 'sequence_truncate'), got {self.vllm_importance_sampling_mode!r}."
            )
        if self.loss_type not in LOSS_AGGREGATIONS:
            raise ValueError(
                f"`loss_type` must be one of {LOSS_AGGREGATIONS} (how NFT's per-token loss is aggregated), got "
                f"{self.loss_type!r}."
            )
        if self.num_generations is None or self.num_generations < 2:
            raise ValueError(
                f"`num_generations` must be >= 2: NFT needs several answers per question to estimate r_q, got "
                f"{self.num_generations}."
            )
        super().__post_init__()
