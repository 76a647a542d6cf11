"""NFT demo: NFT vs RFT (``neg_weight=0``) from the same warm-started tiny LM on held-out arithmetic.

A 0.1 M-parameter Qwen2 is warm-started by a short SFT on ``a+b=`` problems, so that sampled groups
of answers are mixed. NFT and RFT then train from that same checkpoint with the same seed, the same
generations per question and the same off-policy reuse of each rollout (as the paper does), and
held-out greedy accuracy is tracked. [`train_arm`] is shared with ``scripts/nft_arithmetic.py``,
which adds TRL's GRPO and several seeds.

At this scale the single-answer task makes RFT plain SFT on the ground truth, so NFT's negative term
mostly adds variance: do not expect the paper's gap here (see ``docs/results/nft.md``).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch

from hfgen.demos import DemoResult, verbose

METHODS = ("nft", "rft", "grpo")


def _args(method: str, output_dir: str, seed: int, max_steps: int, show_progress: bool, **overrides):
    from hfgen.trainers import NFTConfig

    common = dict(
        output_dir=output_dir, bf16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=max(1, max_steps // 10), disable_tqdm=not show_progress, seed=seed,
        max_steps=max_steps, per_device_train_batch_size=64, num_generations=8, steps_per_generation=4,
        max_completion_length=3, temperature=1.0, learning_rate=5e-4, lr_scheduler_type="constant",
        max_grad_norm=1.0,
    )
    common.update(overrides)
    if method == "grpo":
        # TRL's GRPO defaults (token-level DAPO aggregation, group std, clip 0.2, beta 0) with the same dynamic
        # sampling / batch refill as NFT and RFT: equal chances, every arm trains on mixed questions only
        return NFTConfig(loss_type="dapo", **common)  # trl.GRPOConfig's loss_type
    return NFTConfig(neg_weight=1.0 if method == "nft" else 0.0, **common)


def _grpo_trainer_cls():
    """TRL's GRPO loss on the batches NFT's dynamic sampling refills (DAPO's dynamic sampling for GRPO)."""
    from trl import GRPOTrainer

    from hfgen.trainers import NFTTrainer

    class DynamicSamplingGRPOTrainer(NFTTrainer):
        def _compute_loss(self, model, inputs):
            return GRPOTrainer._compute_loss(self, model, inputs)

    return DynamicSamplingGRPOTrainer


def train_arm(method: str, base_model, tokenizer, data, *, seed: int = 0, max_steps: int = 120, eval_every: int = 20,
              show_progress: bool = False, **overrides) -> dict:
    """Train a copy of ``base_model`` with ``method`` in {"nft", "rft", "grpo"}; held-out accuracy along the way.

    Returns ``{"steps": [...], "accuracy": [...], "pass_at_8": float, "seconds": float, "log_history": [...]}``
    (held-out greedy accuracy at step 0, every ``eval_every`` steps and at the end).
    """
    from transformers import PrinterCallback, TrainerCallback

    from hfgen.data.arithmetic import arithmetic_accuracy, arithmetic_reward
    from hfgen.trainers import NFTTrainer

    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    model = copy.deepcopy(base_model).train()
    curve = {"steps": [0], "accuracy": [arithmetic_accuracy(model, tokenizer, data["test"])]}

    class HeldOutAccuracy(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % eval_every == 0 or state.global_step == state.max_steps:
                curve["steps"].append(state.global_step)
                curve["accuracy"].append(arithmetic_accuracy(model, tokenizer, data["test"]))

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer_cls = _grpo_trainer_cls() if method == "grpo" else NFTTrainer
        trainer = trainer_cls(model=model, reward_funcs=arithmetic_reward, train_dataset=data["train"],
                              processing_class=tokenizer, callbacks=[HeldOutAccuracy()],
                              args=_args(method, tmp, seed, max_steps, show_progress, **overrides))
        if not show_progress:
            trainer.remove_callback(PrinterCallback)
        trainer.train()
    curve["seconds"] = time.perf_counter() - start
    curve["pass_at_8"] = arithmetic_accuracy(model, tokenizer, data["test"], num_samples=8, seed=seed)
    curve["log_history"] = trainer.state.log_history
    curve["optimizer_steps"] = trainer.state.global_step
    refills = [log["nft/refill_rounds"] for log in trainer.state.log_history if "nft/refill_rounds" in log]
    curve["mean_refill_rounds"] = sum(refills) / len(refills) if refills else 0.0
    return curve


def warm_start(seed: int, steps: int = 150, progress_bar: bool = False):
    """The shared starting point: the arithmetic data, its tokenizer and an SFT-warmed tiny Qwen2."""
    from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_tokenizer, sft_warm_start
    from hfgen.testing.tiny_models import tiny_qwen2_lm

    data = arithmetic_dataset(max_operand=20, seed=0)  # 320 train / 80 held-out problems
    tokenizer = arithmetic_tokenizer()
    model = tiny_qwen2_lm(tokenizer, seed=seed)
    sft_warm_start(model, tokenizer, data["train"], steps=steps, seed=seed, progress_bar=progress_bar)
    return data, tokenizer, model


def plot_curves(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    """Held-out accuracy vs step, mean and min-max band over seeds, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for method, runs in curves.items():
        steps = runs[0]["steps"]
        acc = np.array([run["accuracy"] for run in runs])
        ax.plot(steps, acc.mean(0), marker="o", ms=3, label=f"{method.upper()} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(steps, acc.min(0), acc.max(0), alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(output_dir, seed: int = 0) -> DemoResult:
    """NFT vs RFT, same warm start and seed, ~1 minute on two CPU cores."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data, tokenizer, base = warm_start(seed, progress_bar=verbose())
    curves = {m: [train_arm(m, base, tokenizer, data, seed=seed, max_steps=100, eval_every=20, show_progress=verbose())]
              for m in ("nft", "rft")}
    figure = output_dir / "nft_vs_rft_accuracy.png"
    plot_curves(curves, figure, f"NFT vs RFT on held-out a+b (seed {seed})")
    nft, rft = curves["nft"][0], curves["rft"][0]
    return DemoResult(
        method="nft",
        claim="paper: learning from negatives (NFT) improves on positive-only RFT (+3.4 avg. at 7B)",
        metric="held-out greedy accuracy (higher is better)",
        baseline_name="rft",
        baseline_value=rft["accuracy"][-1],
        method_value=nft["accuracy"][-1],
        higher_is_better=True,
        figures=[str(figure)],
        details={
            "warm_start_accuracy": nft["accuracy"][0],
            "pass_at_8": {"nft": nft["pass_at_8"], "rft": rft["pass_at_8"]},
            "curves": {m: {"steps": c[0]["steps"], "accuracy": c[0]["accuracy"]} for m, c in curves.items()},
            "note": "one seed, 100 steps of a 0.1M-parameter model: the two may not separate at this scale; "
            "scripts/nft_arithmetic.py reports 3 seeds with GRPO.",
        },
    )
