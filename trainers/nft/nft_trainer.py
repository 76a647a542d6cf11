"""Negative-aware Fine-Tuning (NFT, arXiv 2505.18116) as a subclass of TRL's ``GRPOTrainer``.

NFT learns from a binary verifier by supervised learning only. For a question q with G sampled
answers, r_q is the fraction that is correct. The old policy splits as
``pi_old = r_q pi^+ + (1 - r_q) pi^-`` (Eq. 7), so the *implicit negative policy*
``pi^-_theta = (pi_old - r_q pi_theta) / (1 - r_q)`` is built from the model itself: fitting the wrong
answers under ``pi^-_theta`` by maximum likelihood pushes ``pi_theta`` towards ``pi^+`` (Theorem 3.1).
The practical loss, per token, with ``R_t = pi_theta / pi_old`` (Eq. 10)::

    l_t = omega(q) * [ c_a * (-log R_t) + neg_weight * (1 - c_a) * (-log max_v((1 - r_q R_t) / (1 - r_q), eps)) ]

``max_v`` clamps the forward value at ``eps`` but keeps the gradient of its argument (Algorithm 1).
At strict on-policy (``R_t = 1``) and ``eps <= 1`` its gradient is GRPO's with
``omega = sqrt((1 - r_q) / r_q)`` and Dr. GRPO's with ``omega = 1 - r_q`` (Prop. 4.2).

Equation and proposition numbers refer to arXiv v3 and were not re-checked against the paper body; the
formulas themselves match the official code (NVlabs/NFT).

Only the scoring and the loss change; generation (transformers, vLLM), reward functions, logging
and distributed training are ``GRPOTrainer``'s. The hooks, for subclasses:

- [`NFTTrainer._score_questions`]: rewards -> correctness ``c_a``, correct rate ``r_q``, weight ``omega(q)``;
- [`NFTTrainer._compute_loss`]: the NFT loss (TRL's loss hook), built on [`nft_per_token_loss`].
"""

from __future__ import annotations

import json
import os

import torch
from transformers.utils import logging
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id, nanmax, nanmin

from ..base import HfgenTrainerMixin, check_args
from ..checkpointing import make_epochs_resumable
from .nft_config import NFTConfig

logger = logging.get_logger(__name__)


def clamp_preserve_grad(x: torch.Tensor, min: float) -> torch.Tensor:
    """``max_v(x, min) = x + sg[max(x, min) - x]``: the value is clamped, the gradient is that of ``x``."""
    return x + (x.clamp(min=min) - x).detach()


def question_weights(r_q: torch.Tensor, kind: str, rq_clip=(0.02, 0.98), dynamic_sampling: bool = True) -> torch.Tensor:
    """omega(q) from the raw correct rate ``r_q``; questions with ``r_q`` in {0, 1} get 0 under dynamic sampling."""
    r = r_q.clamp(*rq_clip)
    if kind == "none":
        omega = torch.ones_like(r)
    elif kind == "one_minus_rq":  # matches Dr. GRPO (A = r - r_q) at strict on-policy
        omega = 1 - r
    elif kind == "grpo":  # matches GRPO (A = (r - r_q) / std_q, population std) at strict on-policy
        omega = torch.sqrt((1 - r) / r)
    else:
        raise ValueError(f"`question_weight` must be 'none', 'one_minus_rq' or 'grpo', got {kind!r}.")
    if dynamic_sampling:
        omega = omega * ((r_q > 0) & (r_q < 1))
    return omega


def nft_per_token_loss(
    log_ratio: torch.Tensor,
    correct: torch.Tensor,
    r_q: torch.Tensor,
    neg_weight: float = 1.0,
    negative_clamp: float = 1.0,
    rq_clip=(0.02, 0.98),
    max_log_ratio: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The NFT loss of Eq. 10 before the question weight and the aggregation.

    Args:
        log_ratio: ``log pi_theta - log pi_old``, shape (B, T) per token or (B, 1) per answer.
        correct: ``c_a`` in {0, 1}, shape (B, 1).
        r_q: correct rate of each answer's question, shape (B, 1); clipped to ``rq_clip`` here.

    Returns:
        ``(loss, proxy)``: the per-token loss and the implicit negative ratio
        ``pi^-_theta / pi^-_old = (1 - r_q R) / (1 - r_q)`` (before its clamp), both shaped like ``log_ratio``.
    """
    r_q = r_q.clamp(*rq_clip)
    ratio = torch.exp(log_ratio.clamp(max=max_log_ratio))  # R
    positive_loss = -torch.log(ratio)  # maximum likelihood of pi_theta on correct answers
    proxy = (1 - r_q * ratio) / (1 - r_q)
    negative_loss = -torch.log(clamp_preserve_grad(proxy, negative_clamp))  # ... of pi^-_theta on wrong ones
    loss = correct * positive_loss + neg_weight * (1 - correct) * negative_loss
    return loss, proxy


class NFTTrainer(HfgenTrainerMixin, GRPOTrainer):
    """Trainer for Negative-aware Fine-Tuning (NFT); ``NFTConfig(neg_weight=0.0)`` gives RFT.

    Takes the arguments of [`trl.GRPOTrainer`]. ``reward_funcs`` score each answer; an answer is
    correct when its weighted reward sum exceeds ``args.correct_threshold``.

    Example::

        from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_reward
        from hfgen.trainers import NFTConfig, NFTTrainer

        trainer = NFTTrainer(
            model="Qwen/Qwen2.5-Math-7B",
            reward_funcs=arithmetic_reward,
            args=NFTConfig(output_dir="nft-arithmetic", num_generations=16, use_vllm=True),
            train_dataset=arithmetic_dataset()["train"],
        )
        trainer.train()

    Logged metrics (``"eval_"``-prefixed in evaluation). Under TRL's ``GRPOTrainer`` names, with its meaning:
    ``num_tokens``, ``completions/{mean,min,max}_length``, ``completions/{mean,min,max}_terminated_length``,
    ``completions/clipped_ratio``, ``rewards/<reward function>/{mean,std}``, ``reward``, ``reward_std``,
    ``frac_reward_zero_std``, ``entropy``, ``kl`` (when ``beta > 0``), ``aux_loss`` (MoE routers),
    ``sampling/*`` (vLLM importance sampling) and ``clip_ratio/{low_mean,high_mean,region_mean,low_min,high_max}``,
    which for NFT count its own two clips: *low* is the clamp of a wrong answer's negative ratio at
    ``negative_clamp``, *high* the cap of ``log R`` at ``max_log_ratio`` (NFT has no PPO clip). NFT's own:
    ``nft/correct_rate`` (mean r_q), ``nft/frac_questions_mixed`` (0 < r_q < 1), ``nft/positive_loss``,
    ``nft/negative_loss``, ``nft/negative_clamp_frac``, ``nft/ratio/{positive,negative}_mean`` and, with dynamic
    sampling, ``nft/refill_rounds`` and ``nft/frac_questions_mixed_after_refill``.
    """

    _tag_names = ["trl", "nft", "hfgen"]
    method_name = "nft"

    def __init__(self, model, reward_funcs=None, args: NFTConfig | None = None, **kwargs):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = NFTConfig(f"{model_name.split('/')[-1]}-NFT")
        args = check_args(args, NFTConfig)
        if reward_funcs is None or (isinstance(reward_funcs, (list, tuple)) and len(reward_funcs) == 0):
            raise ValueError("`reward_funcs` must give at least one reward function or model: NFT learns from rewards.")
        super().__init__(model, reward_funcs, args=args, **kwargs)

    # ------------------------------------------------------------------------------------- scoring

    def _get_train_sampler(self, dataset=None):
        # exact resume after the first epoch (TRL's sampler would reshuffle later epochs differently)
        return make_epochs_resumable(super()._get_train_sampler(dataset))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Keep the gathered (all processes) rewards: NFT scores questions from them, not from advantages.
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # NaN marks a function that returned None for an answer; an answer no function scored, or an infinite
        # reward, would silently train on garbage
        if bool(torch.isinf(rewards).any()) or bool(torch.isnan(rewards).all(dim=1).any()):
            raise ValueError("`reward_funcs` gave a non-finite reward (NaN for every function, or +-inf) for some "
                             f"answers at step {self.state.global_step + 1}; rewards must be finite numbers.")
        self._nft_rewards_per_func = rewards
        return self._nft_rewards_per_func

    def _score_questions(self, rewards_per_func: torch.Tensor, num_generations: int):
        """Correctness ``c_a``, correct rate ``r_q`` and question weight ``omega(q)`` of every answer.

        Args:
            rewards_per_func: (N, num_reward_funcs) rewards of the whole generation batch, gathered over
                processes, grouped by question in runs of ``num_generations`` (NaN where a function gave None).

        Returns:
            Three (N,) float tensors. Unscorable answers (every function returned None) are neither
            counted in ``r_q`` nor trained on.
        """
        scored = ~torch.isnan(rewards_per_func).all(dim=1)
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
        correct = ((rewards > self.args.correct_threshold) & scored).float()
        group_correct = correct.view(-1, num_generations).sum(1)
        group_scored = scored.float().view(-1, num_generations).sum(1)
        r_q = (group_correct / group_scored.clamp(min=1)).repeat_interleave(num_generations)
        omega = question_weights(r_q, self.args.question_weight, self.args.rq_clip, self.args.dynamic_sampling)
        return correct, r_q, omega * scored

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        output = super()._generate_and_score_completions(inputs)
        correct, r_q, omega = self._score_questions(self._nft_rewards_per_func, num_generations)

        local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
        group_rq = r_q[::num_generations]
        self._metrics[mode]["nft/correct_rate"].append(group_rq.mean().item())
        self._metrics[mode]["nft/frac_questions_mixed"].append(((group_rq > 0) & (group_rq < 1)).float().mean().item())
        scores = (correct[local], r_q[local], omega[local])
        if mode == "train" and self._can_refill(inputs, output, num_generations):
            output, scores = self._refill(inputs, output, scores, r_q, num_generations)
        elif mode == "train":
            self._warn_if_nothing_mixed(int(((group_rq > 0) & (group_rq < 1)).sum()))
        output["nft_correct"], output["nft_rq"], output["nft_weight"] = scores
        return output

    # --------------------------------------------------------------------- dynamic sampling (refill)

    def _can_refill(self, inputs, output, num_generations) -> bool:
        if not (self.args.dynamic_sampling and self.args.max_refill_rounds > 0):
            return False
        reason = None
        if len(inputs) % num_generations:
            reason = "each process's generation batch must hold whole groups of `num_generations` answers"
        elif not hasattr(self.train_dataset, "__getitem__") or isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            reason = "refilling draws questions by index from a map-style `train_dataset`"
        elif any(torch.is_tensor(v) and v.dim() > 2 or isinstance(v, list) for v in output.values()):
            reason = "multimodal batches are not refilled"
        if reason is not None and not getattr(self, "_nft_refill_warned", False):
            logger.warning(f"NFT dynamic sampling: the batch is not refilled ({reason}).")
            self._nft_refill_warned = True
        return reason is None

    def _refill_inputs(self, num_questions: int, num_generations: int, round_index: int):
        """``num_questions`` training questions drawn at random, each repeated ``num_generations`` times."""
        generator = torch.Generator().manual_seed(
            hash((self.args.seed, self.state.global_step, self._step, round_index, self.accelerator.process_index))
            % (2**63)
        )
        indices = torch.randint(len(self.train_dataset), (num_questions,), generator=generator).tolist()
        return [dict(self.train_dataset[i]) for i in indices for _ in range(num_generations)]

    def _refill(self, inputs, output, scores, global_rq, num_generations):
        """DAPO dynamic sampling (official NFT trainer): generate for more questions until every process has as
        many mixed questions (0 < r_q < 1) as its batch holds questions, at most ``max_refill_rounds`` times; keep
        the mixed questions in order, and degenerate ones (weight 0) only in the slots left when the cap is hit."""
        n_questions = len(inputs) // num_generations
        num_processes = self.accelerator.num_processes

        def mixed_per_process(rq):  # (num_processes, n_questions) from the gathered correct rates
            group_rq = rq[::num_generations].view(num_processes, n_questions)
            return (group_rq > 0) & (group_rq < 1)

        pieces = [(output, scores)]
        mixed = [mixed_per_process(global_rq)[self.accelerator.process_index]]
        count = mixed_per_process(global_rq).sum(1)
        rounds = 0
        while count.min().item() < n_questions and rounds < self.args.max_refill_rounds:
            rounds += 1
            extra = super()._generate_and_score_completions(self._refill_inputs(n_questions, num_generations, rounds))
            correct, r_q, omega = self._score_questions(self._nft_rewards_per_func, num_generations)
            local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
            pieces.append((extra, (correct[local], r_q[local], omega[local])))
            mixed.append(mixed_per_process(r_q)[self.accelerator.process_index])
            count = count + mixed_per_process(r_q).sum(1)
        mode = "train"
        self._metrics[mode]["nft/refill_rounds"].append(float(rounds))
        self._warn_if_nothing_mixed(int(sum(int(m.sum()) for m in mixed)), rounds)
        if rounds == 0:
            return output, scores
        # Groups to keep, as (piece, group): mixed ones in generation order, then degenerate ones of the first batch.
        chosen = [(k, g) for k, m in enumerate(mixed) for g in m.nonzero().flatten().tolist()][:n_questions]
        chosen += [(0, g) for g in (~mixed[0]).nonzero().flatten().tolist()][: n_questions - len(chosen)]
        kept_mixed = min(sum(int(m.sum()) for m in mixed), n_questions) / n_questions
        device = self.accelerator.device
        self._metrics[mode]["nft/frac_questions_mixed_after_refill"].append(
            self.accelerator.gather(torch.tensor([kept_mixed], device=device)).mean().item()
        )
        rows = [[] for _ in pieces]
        for k, g in chosen:
            rows[k].extend(range(g * num_generations, (g + 1) * num_generations))
        return self._concat_rows([p[0] for p in pieces], rows), tuple(
            torch.cat([p[1][i][r] for p, r in zip(pieces, rows)]) for i in range(3)
        )

    def _warn_if_nothing_mixed(self, num_mixed: int, refill_rounds: int = 0) -> None:
        """Warn (once) when a step found no prompt whose answers are mixed: NFT then learns nothing (a cold start)."""
        if num_mixed > 0 or getattr(self, "_nft_unmixed_warned", False):
            return
        self._nft_unmixed_warned = True
        logger.warning(
            f"NFT step {self.state.global_step + 1}: no prompt had both right and wrong answers (after "
            f"{refill_rounds} refill rounds), so this step learns nothing (loss 0). The model is "
            "probably cold-started: warm-start it first, e.g. hfgen.data.warm_start.sft_warm_start(model, tokenizer, "
            "train_dataset, completion_column=<your answer column>), or start from a model that already solves part "
            "of the task (see docs/guides/nft.md).")

    def _concat_rows(self, outputs, rows):
        """Concatenate the selected rows of several generation outputs, padding prompts on the left and the
        per-token tensors of completions on the right, and recount ``num_items_in_batch``."""
        pad_id = self._tokenizer.pad_token_id
        merged = {}
        for key, value in outputs[0].items():
            if key == "num_items_in_batch" or not torch.is_tensor(value) or value.dim() == 0:
                continue
            parts = [out[key][r] for out, r in zip(outputs, rows) if r]
            if value.dim() == 2:
                width = max(p.size(1) for p in parts)
                fill = pad_id if key in ("prompt_ids", "completion_ids") else 0
                left = key.startswith("prompt")
                parts = [
                    torch.nn.functional.pad(p, (width - p.size(1), 0) if left else (0, width - p.size(1)), value=fill)
                    for p in parts
                ]
            merged[key] = torch.cat(parts)
        loss_mask = merged["completion_mask"] if "tool_mask" not in merged else merged["completion_mask"] * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return merged

    # ---------------------------------------------------------------------------------------- loss

    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]

        per_token_logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            num_images=inputs.get("num_images"),
            pixel_attention_mask=inputs.get("pixel_attention_mask"),
            spatial_shapes=inputs.get("spatial_shapes"),
            num_tiles=inputs.get("num_tiles"),
            image_sizes=inputs.get("image_sizes"),
            token_type_ids=inputs.get("token_type_ids"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
            image_position_ids=inputs.get("image_position_ids"),
        )
        # pi_old: recomputed after generation when off-policy, else the current policy (strict on-policy).
        old_per_token_logps = inputs.get("old_per_token_logps")
        old_per_token_logps = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps
        log_ratio = per_token_logps - old_per_token_logps
        if self.args.ratio_type == "sequence":  # one ratio per answer: the product of the token ratios
            log_ratio = (log_ratio * mask).sum(-1, keepdim=True)

        correct, r_q = inputs["nft_correct"].unsqueeze(1), inputs["nft_rq"].unsqueeze(1)
        per_token_loss, proxy = nft_per_token_loss(
            log_ratio,
            correct,
            r_q,
            neg_weight=self.args.neg_weight,
            negative_clamp=self.args.negative_clamp,
            rq_clip=self.args.rq_clip,
            max_log_ratio=self.args.max_log_ratio,
        )
        per_token_loss = per_token_loss * inputs["nft_weight"].unsqueeze(1)  # omega(q)

        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
        mode = "train" if self.model.training else "eval"
        if self.args.ratio_type == "sequence":  # one loss per answer (B, 1), not one per token
            loss = self._aggregate_answer_loss(per_token_loss, mode)
        per_token_kl = None
        if self.beta != 0.0:  # optional KL to a reference model, as in GRPO (k3 estimator)
            ref = inputs["ref_per_token_logps"]
            per_token_kl = torch.exp(ref - per_token_logps) - (ref - per_token_logps) - 1
            if self.args.use_bias_correction_kl:
                per_token_kl = per_token_kl * torch.exp(log_ratio.clamp(max=self.args.max_log_ratio))
            if self.args.ratio_type == "sequence":  # the KL stays a per-token term
                loss = loss + self._aggregate_loss(self.beta * per_token_kl, mask, inputs, mode)
            else:
                per_token_loss = per_token_loss + self.beta * per_token_kl

        if self.args.ratio_type == "token":
            loss = self._aggregate_loss(per_token_loss, mask, inputs, mode)
        if self.aux_loss_enabled:
            normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            loss = loss + self.router_aux_loss_coef * aux_loss / normalizer
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

        self._log_nft_metrics(mode, mask, entropies, log_ratio, proxy, correct, per_token_kl)
        return loss

    def _aggregate_answer_loss(self, per_answer_loss, mode):
        """Reduce a per-answer loss (``ratio_type="sequence"``), shape (B, 1): each answer counts once.

        The official code sums one loss per answer (``Σ_a ℓ_a``, NVlabs/NFT ``dp_actor.py``); every
        ``loss_type`` becomes the mean over the B answers of the batch (the official sum / B, a constant), scaled
        for gradient accumulation. A token aggregation here would weight each answer by its length.
        """
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        return per_answer_loss.sum() / per_answer_loss.size(0) / accumulation

    def _aggregate_loss(self, per_token_loss, mask, inputs, mode):
        """Reduce the per-token loss exactly as ``GRPOTrainer`` does for ``loss_type`` (scaled for GA)."""
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        if self.loss_type == "grpo":
            return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / accumulation
        if self.loss_type == "bnpo":
            return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0) / accumulation
        if self.loss_type == "dr_grpo":
            return (per_token_loss * mask).sum() / (per_token_loss.size(0) * self.max_completion_length) / accumulation
        if self.loss_type == "dapo":
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            return (per_token_loss * mask).sum() / normalizer
        raise ValueError(f"Unknown loss type for NFT: {self.loss_type}")

    @torch.no_grad()
    def _log_nft_metrics(self, mode, mask, entropies, log_ratio, proxy, correct, per_token_kl=None):
        def global_mean(x, where):
            where = where.expand_as(mask) * mask
            x = x.expand_as(mask)
            totals = self.accelerator.reduce(torch.stack([(x * where).sum(), where.sum().float()]), reduction="sum")
            return (totals[0] / totals[1]).item() if totals[1] > 0 else float("nan")  # NaN: skipped by `log`

        negative = 1 - correct
        ratio = torch.exp(log_ratio.clamp(max=self.args.max_log_ratio))
        self._metrics[mode]["entropy"].append(global_mean(entropies, torch.ones_like(mask)))
        if per_token_kl is not None:
            self._metrics[mode]["kl"].append(global_mean(per_token_kl, torch.ones_like(mask)))
        self._metrics[mode]["nft/positive_loss"].append(global_mean(-torch.log(ratio), correct))
        self._metrics[mode]["nft/negative_loss"].append(
            global_mean(-torch.log(proxy.clamp(min=self.args.negative_clamp)), negative)
        )
        self._metrics[mode]["nft/negative_clamp_frac"].append(
            global_mean((proxy < self.args.negative_clamp).float(), negative)
        )
        self._metrics[mode]["nft/ratio/positive_mean"].append(global_mean(ratio, correct))
        self._metrics[mode]["nft/ratio/negative_mean"].append(global_mean(ratio, negative))
        self._log_clip_ratios(mode, mask, log_ratio, proxy, negative, global_mean)

    def _log_clip_ratios(self, mode, mask, log_ratio, proxy, negative, global_mean):
        """TRL's ``clip_ratio/*`` metrics, for NFT's two clips: *low* is the negative-ratio clamp acting (a wrong
        answer's ``(1 - r_q R) / (1 - r_q) < negative_clamp``), *high* the cap ``log R > max_log_ratio``."""
        low = ((proxy < self.args.negative_clamp) & negative.bool()).float().expand_as(mask)
        high = (log_ratio > self.args.max_log_ratio).float().expand_as(mask)
        region = torch.maximum(low, high)
        everywhere = torch.ones_like(mask)
        for name, clipped in (("low_mean", low), ("high_mean", high), ("region_mean", region)):
            self._metrics[mode][f"clip_ratio/{name}"].append(global_mean(clipped, everywhere))
        per_answer = self.accelerator.gather(torch.stack([(x * mask).sum(-1) / mask.sum(-1) for x in (low, high)], 1))
        self._metrics[mode]["clip_ratio/low_min"].append(nanmin(per_answer[:, 0]).item())
        self._metrics[mode]["clip_ratio/high_max"].append(nanmax(per_answer[:, 1]).item())

    # ------------------------------------------------------------------------- exact resume (rollouts)

    def _rollout_files(self, folder: str) -> tuple[str, str]:
        rank = self.accelerator.process_index
        return (os.path.join(folder, f"nft_rollout_{rank}.safetensors"), os.path.join(folder, f"nft_rollout_{rank}.json"))

    def save_training_state(self, folder: str) -> None:
        """Checkpoint what ``GRPOTrainer`` keeps between optimizer steps, per process: the micro-step counter that
        decides when to generate (and seeds the refill draws), the buffered rollout that serves the remaining
        ``steps_per_generation`` steps (with its scores and old log-probabilities), and the metrics not logged yet.
        A checkpoint inside a rollout then resumes with the same batches as the unbroken run (TRL's resume would
        generate afresh from the updated model). Tensors go to safetensors, the rest to JSON."""
        from safetensors.torch import save_file

        tensors, plain = {}, []
        inside = self._step % (self.args.steps_per_generation * self.num_iterations) != 0  # else the next step generates
        for i, batch in enumerate(self._buffered_inputs if inside and self._buffered_inputs else []):
            plain.append({"keys": list(batch)})
            for key, value in batch.items():
                if torch.is_tensor(value):
                    tensors[f"{i}.{key}"] = value.detach().contiguous().clone()
                elif value is None or isinstance(value, (bool, int, float, str)):
                    plain[i][f"value.{key}"] = value
                else:  # e.g. multimodal lists: not restorable without pickle
                    logger.warning(f"NFT checkpoint {folder}: the buffered rollout holds `{key}` "
                                   f"({type(value).__name__}), which is not saved; a resume from this checkpoint "
                                   "starts a new rollout, so it is not exact.")
                    tensors, plain = {}, None
                    break
            if plain is None:
                break
        os.makedirs(folder, exist_ok=True)  # under DDP, ranks > 0 may get here before rank 0 created it
        tensor_file, state_file = self._rollout_files(folder)
        if tensors:
            save_file(tensors, tensor_file)
        metrics = {mode: {k: list(v) for k, v in values.items()} for mode, values in self._metrics.items()}
        with open(state_file, "w") as f:
            json.dump({"step": self._step, "buffered": plain if tensors else None, "metrics": metrics}, f)

    def load_training_state(self, folder: str) -> None:
        """Restore the micro-step counter, the buffered rollout and the metrics not logged yet."""
        tensor_file, state_file = self._rollout_files(folder)
        if not os.path.isfile(state_file):  # a checkpoint of an older hfgen, or another trainer's
            logger.warning(f"`resume_from_checkpoint` {folder!r} has no {os.path.basename(state_file)}: NFT "
                           "resumes with a new rollout, so the run is exact only from a checkpoint at a rollout's end.")
            return
        from safetensors.torch import load_file

        with open(state_file) as f:
            state = json.load(f)
        self._step = state["step"]
        for mode, values in state["metrics"].items():
            self._metrics[mode].update(values)
        if state["buffered"] is None:
            self._buffered_inputs = None
            return
        tensors = load_file(tensor_file)  # onto the CPU, then the trainer's device ("cpu:0" under CPU DDP is refused)
        self._buffered_inputs = [
            {key: tensors[f"{i}.{key}"].to(self.accelerator.device) if f"{i}.{key}" in tensors else plain[f"value.{key}"]
             for key in plain["keys"]}
            for i, plain in enumerate(state["buffered"])
        ]

    # --------------------------------------------------------------------------------------- cards

    def card_training_config(self) -> dict:
        args = self.args
        keys = ("neg_weight", "question_weight", "negative_clamp", "rq_clip", "ratio_type", "loss_type",
                "dynamic_sampling", "max_refill_rounds", "num_generations", "temperature", "max_completion_length",
                "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation", "beta", "seed")
        config = {key: getattr(args, key) for key in keys}
        return {**config, "rq_clip": list(args.rq_clip), "global_step": self.state.global_step}

    def card_tags(self) -> list[str]:
        return ["rft" if self.args.neg_weight == 0 else "nft"]

    def card_vars(self) -> dict:
        """What the card says about this run: the rewards, a prompt of the training data, where it is published."""
        card = {"neg_weight": self.args.neg_weight, "reward_names": list(self.reward_func_names)}
        if self.args.hub_model_id:
            card["repo_id"] = self.args.hub_model_id
        dataset = self.train_dataset
        if dataset is not None and hasattr(dataset, "__getitem__") and len(dataset) and isinstance(dataset[0].get("prompt"), str):
            card["example_prompt"] = dataset[0]["prompt"]
        return card
