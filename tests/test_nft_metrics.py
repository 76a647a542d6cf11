"""The metrics TRL users read in every GRPO-family run, logged by NFTTrainer under TRL's names, plus NFT's own."""

import math

import torch
from test_options_contract import G, _generate, _trainer, data, tokenizer  # noqa: F401 (fixtures)

from hfgen.data.arithmetic import tiny_causal_lm

TRL_METRICS = ["num_tokens", "completions/mean_length", "completions/min_length", "completions/max_length",
               "completions/clipped_ratio", "completions/mean_terminated_length", "rewards/half_right/mean",
               "rewards/half_right/std", "reward", "reward_std", "frac_reward_zero_std", "entropy", "kl",
               "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "clip_ratio/low_min",
               "clip_ratio/high_max"]
NFT_METRICS = ["nft/correct_rate", "nft/frac_questions_mixed", "nft/positive_loss", "nft/negative_loss",
               "nft/negative_clamp_frac", "nft/ratio/positive_mean", "nft/ratio/negative_mean"]


def test_a_training_run_logs_trls_grpo_metrics_and_nfts_own(tokenizer, data, tmp_path):  # noqa: F811
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    model.save_pretrained(tmp_path / "base")  # TRL loads the reference model (beta > 0) from the policy's path
    model = type(model).from_pretrained(tmp_path / "base")
    trainer = _trainer(tokenizer, data, tmp_path, model=model, beta=0.04, max_steps=2, max_refill_rounds=0)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    for key in TRL_METRICS + NFT_METRICS:
        values = [log[key] for log in logs if key in log]
        assert values and all(math.isfinite(v) for v in values), key
    assert all(log["frac_reward_zero_std"] == 0.0 for log in logs)  # every group is half right


def test_clip_ratios_count_nfts_clamp_and_cap(tokenizer, data, tmp_path):  # noqa: F811
    # on-policy R = 1, so the negative ratio (1 - r_q R) / (1 - r_q) is 1: clamped below 2.0, never below 0.5
    for negative_clamp, clamped in [(2.0, True), (0.5, False)]:
        trainer = _trainer(tokenizer, data, tmp_path, negative_clamp=negative_clamp, max_refill_rounds=0)
        batch = _generate(trainer, data)
        trainer.compute_loss(trainer.model, batch)
        mask = batch["completion_mask"].float()
        negative = 1 - batch["nft_correct"].unsqueeze(1)
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
        expected_low = ((mask * negative).sum() / mask.sum()).item() if clamped else 0.0
        assert metrics["clip_ratio/low_mean"] == expected_low
        assert metrics["clip_ratio/high_mean"] == 0.0
        assert metrics["clip_ratio/region_mean"] == expected_low
        assert metrics["clip_ratio/high_max"] == 0.0
        assert metrics["clip_ratio/low_min"] == 0.0  # the right answers are never clamped
    # a log-ratio above `max_log_ratio` counts as high-clipped
    trainer = _trainer(tokenizer, data, tmp_path, max_log_ratio=0.1, max_refill_rounds=0)
    batch = _generate(trainer, data)
    batch["old_per_token_logps"] = torch.full_like(batch["completion_mask"], -50.0, dtype=torch.float)
    trainer.compute_loss(trainer.model, batch)
    assert trainer._metrics["train"]["clip_ratio/high_mean"][-1] == 1.0
    assert trainer._metrics["train"]["clip_ratio/high_max"][-1] == 1.0
