"""Learning from negatives: NFT vs RFT vs GRPO vs Dr. GRPO on two-digit addition, 16 answers, off-policy updates.

A design where a wrong answer says something a right one does not: ``a+b=`` with ``a, b`` in [0, 100), whose
answers have up to three digits and fail in several distinct ways (a missed carry in either column, a wrong digit,
a wrong length). For each seed a tiny Qwen2 is warm-started by SFT until about a fifth of its sampled answers on
training problems are right, so most groups of 16 answers are mixed (measured: ``warm_start_*`` metrics). From that
checkpoint every arm trains a copy with the same seed, 16 answers per question, the same rollout size, the same
optimizer steps (several per rollout: after the first, the data are off-policy, where NFT's ratio acts) and the same
dynamic sampling (the batch refilled with mixed questions, as the official NFT trainer does):

- ``nft``: ``NFTTrainer`` (official defaults: omega = 1 - r_q, eps = 1, Dr. GRPO's constant normaliser);
- ``rft``: ``NFTTrainer(neg_weight=0)``, the same without the negative term;
- ``grpo``: TRL's GRPO loss with ``GRPOConfig``'s defaults (``loss_type="dapo"``, ``scale_rewards="group"``,
  clip 0.2, no KL);
- ``dr_grpo``: TRL's ``loss_type="dr_grpo"`` with ``scale_rewards="none"`` (Dr. GRPO: no length, no std
  normalisation), otherwise as ``grpo``.

Each arm gets the same learning-rate grid and keeps its own best value, chosen on the mean over seeds of the final
greedy accuracy on a VALIDATION split; the test split is only reported. (The grid, 5e-5 and 1e-4, was set from a
pilot on seed 100, outside the study's seeds, on validation accuracy: 1e-3 and 3e-3 collapsed, 3e-4 was below 1e-4
for every arm.) Per arm (at its chosen learning rate):
final held-out (test) greedy accuracy, the test accuracy at the checkpoint with the best validation accuracy,
pass@k for k = 1..16 (unbiased estimator from 16 answers per test problem at temperature 1) and the policy entropy
along training (mean token entropy of sampled answers to test problems), all with 95% t-intervals over seeds.

Writes the raw record ``docs/results/raw/nft/negatives.json`` and the figure ``docs/figures/nft_negatives.png``;
``python scripts/collect_results.py`` renders ``docs/results/nft.md``.

    OMP_NUM_THREADS=1 python scripts/nft_negatives.py     # the study: 5 seeds x 4 arms x 2 lrs, ~23 min of one core
    python scripts/nft_negatives.py --seeds 0 --max-steps 8 --eval-every 4 --raw-dir /tmp/raw --figures-dir /tmp
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

from hfgen.data.arithmetic import (  # noqa: E402
    arithmetic_reward,
    arithmetic_splits,
    arithmetic_tokenizer,
    pass_at_k,
    sample_arithmetic_answers,
        tiny_causal_lm,
)
from hfgen.results import interval, write_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("nft", "rft", "grpo", "dr_grpo")
NUM_GENERATIONS = 16
MAX_COMPLETION_LENGTH = 4  # up to three digits and <eos>


# -------------------------------------------------------------------------------------------------- warm start


def warm_start(seed: int, data, tokenizer, target: float, check_every: int, max_sft_steps: int, device: str,
               learning_rate: float = 3e-3, batch_size: int = 64):
    """Teacher-forced SFT of a fresh tiny Qwen2 on ``prompt -> answer<eos>`` (one AdamW run, as
    ``hfgen.data.warm_start.sft_warm_start``) that stops once the sampled accuracy (4 answers per problem at
    temperature 1, on 256 training problems, checked every ``check_every`` steps) reaches ``target``, or after
    ``max_sft_steps``; returns the model and its number of SFT steps."""
    model = tiny_causal_lm(tokenizer, seed=seed).to(device)
    prompts = tokenizer(list(data["train"]["prompt"]), add_special_tokens=False)["input_ids"]
    answers = tokenizer([a + tokenizer.eos_token for a in data["train"]["answer"]], add_special_tokens=False)["input_ids"]
    width = max(len(p) + len(a) for p, a in zip(prompts, answers))
    input_ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    labels = torch.full((len(prompts), width), -100)
    for row, (p, a) in enumerate(zip(prompts, answers)):  # right padding; the loss on the answer tokens only
        input_ids[row, : len(p) + len(a)] = torch.tensor(p + a)
        labels[row, len(p) : len(p) + len(a)] = torch.tensor(a)
    attention_mask = (labels != -100) | (torch.arange(width) < torch.tensor([len(p) for p in prompts])[:, None])
    probe = data["train"].select(range(256))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for step in range(1, max_sft_steps + 1):
        idx = torch.randint(len(prompts), (batch_size,), generator=generator)
        loss = model(input_ids=input_ids[idx].to(device), attention_mask=attention_mask[idx].long().to(device),
                     labels=labels[idx].to(device)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % check_every == 0:
            found = sample_arithmetic_answers(model, tokenizer, probe, num_samples=4, seed=seed)
            if sum(found["num_correct"]) / (4 * len(probe)) >= target:
                break
    return model.eval(), step


# ----------------------------------------------------------------------------------------------------- training


def build_config(arm: str, output_dir: str, *, seed: int, learning_rate: float, max_steps: int,
                 questions_per_step: int, steps_per_generation: int, max_refill_rounds: int, device: str):
    """The arm's ``NFTConfig``: everything but the loss is shared; the GRPO arms only use its generation, batching
    and dynamic sampling (their loss is TRL's)."""
    from hfgen.trainers import NFTConfig

    shared = dict(
        output_dir=output_dir, bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no",
        logging_steps=max(1, steps_per_generation), disable_tqdm=True, seed=seed, max_steps=max_steps,
        per_device_train_batch_size=questions_per_step * NUM_GENERATIONS, num_generations=NUM_GENERATIONS,
        steps_per_generation=steps_per_generation, max_completion_length=MAX_COMPLETION_LENGTH, temperature=1.0,
        learning_rate=learning_rate, lr_scheduler_type="constant", max_grad_norm=1.0,
        max_refill_rounds=max_refill_rounds, use_cpu=torch.device(device).type == "cpu",
    )
    if arm == "nft":
        return NFTConfig(neg_weight=1.0, **shared)
    if arm == "rft":
        return NFTConfig(neg_weight=0.0, **shared)
    if arm == "grpo":
        return NFTConfig(loss_type="dapo", **shared)  # trl.GRPOConfig's default loss_type
    if arm == "dr_grpo":
        return NFTConfig(loss_type="dr_grpo", **shared)
    raise ValueError(f"`arm` must be one of {ARMS}, got {arm!r}.")


def trainer_class(arm: str):
    """``NFTTrainer`` for NFT and RFT; for the GRPO arms, TRL's GRPO loss on the batches NFT's dynamic sampling
    refills (the same mixed questions), with TRL's advantages: group-std scaled (``grpo``) or not (``dr_grpo``)."""
    from trl import GRPOTrainer

    from hfgen.trainers import NFTTrainer

    if arm in ("nft", "rft"):
        return NFTTrainer

    class DynamicSamplingGRPOTrainer(NFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # NFTConfig refuses `scale_rewards` (NFT has no advantages): set GRPOTrainer's attribute directly
            self.scale_rewards = "none" if arm == "dr_grpo" else "group"

        def _compute_loss(self, model, inputs):
            return GRPOTrainer._compute_loss(self, model, inputs)

    return DynamicSamplingGRPOTrainer


def evaluate(model, tokenizer, data, entropy_probe, seed: int) -> dict:
    """Greedy accuracy on validation and test, and the mean token entropy of sampled answers to ``entropy_probe``."""
    accuracy = {split: sum(sample_arithmetic_answers(model, tokenizer, data[split], greedy=True)["num_correct"])
                / data[split].num_rows for split in ("validation", "test")}
    entropy = sample_arithmetic_answers(model, tokenizer, entropy_probe, num_samples=1, seed=seed)["entropy"]
    return {**accuracy, "entropy": entropy}


def train_arm(arm: str, base_model, tokenizer, data, *, seed: int, learning_rate: float, max_steps: int,
              eval_every: int, questions_per_step: int, steps_per_generation: int, max_refill_rounds: int,
              device: str, entropy_probe_size: int) -> dict:
    """Train a copy of ``base_model`` with ``arm``; curves (validation/test accuracy, entropy) and final pass@k."""
    from transformers import PrinterCallback, TrainerCallback

    model = copy.deepcopy(base_model).train()
    probe = data["test"].select(range(min(entropy_probe_size, data["test"].num_rows)))
    curve = {"steps": [0], **{k: [v] for k, v in evaluate(model, tokenizer, data, probe, seed).items()}}
    answers_scored = [0]

    def reward(completions, answer, **kwargs):  # counts every generated answer (refills included)
        answers_scored[0] += len(completions)
        return arithmetic_reward(completions, answer)

    class HeldOutCurves(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % eval_every == 0 or state.global_step == state.max_steps:
                curve["steps"].append(state.global_step)
                for key, value in evaluate(model, tokenizer, data, probe, seed + state.global_step).items():
                    curve[key].append(value)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        args = build_config(arm, tmp, seed=seed, learning_rate=learning_rate, max_steps=max_steps,
                            questions_per_step=questions_per_step, steps_per_generation=steps_per_generation,
                            max_refill_rounds=max_refill_rounds, device=device)
        trainer = trainer_class(arm)(model=model, reward_funcs=reward, train_dataset=data["train"],
                                     processing_class=tokenizer, callbacks=[HeldOutCurves()], args=args)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    seconds = time.perf_counter() - start
    final = sample_arithmetic_answers(model, tokenizer, data["test"], num_samples=NUM_GENERATIONS, seed=seed + 1)
    best = max(range(len(curve["steps"])), key=lambda i: (curve["validation"][i], -i))  # earliest best
    return {
        "curve": curve,
        "final_accuracy": curve["test"][-1],
        "best_accuracy": curve["test"][best],
        "best_step": curve["steps"][best],
        "final_validation_accuracy": curve["validation"][-1],
        "pass_at_k": [pass_at_k(final["num_correct"], NUM_GENERATIONS, k) for k in range(1, NUM_GENERATIONS + 1)],
        "final_entropy": final["entropy"],
        "optimizer_steps": trainer.state.global_step,
        "generated_answers": answers_scored[0],
        "seconds": seconds,
    }


# ------------------------------------------------------------------------------------------------------ figure


def plot(metrics: dict, path: Path, title: str) -> None:
    """Test accuracy and entropy against the optimizer step, pass@k against k: means with 95% t-interval bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def band(ax, xs, per_seed, label):
        stats = [interval([run[i] for run in per_seed]) for i in range(len(xs))]
        ax.plot(xs, [s.mean for s in stats], marker="o", ms=2.5, label=label)
        if len(per_seed) > 1:
            ax.fill_between(xs, [s.low for s in stats], [s.high for s in stats], alpha=0.2)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=90)
    ks = list(range(1, NUM_GENERATIONS + 1))
    for arm, values in metrics.items():
        label = f"{arm} (lr {values['learning_rate'][0]:g})"
        steps = values["curve_steps"][0]
        band(axes[0], steps, values["curve_accuracy"], label)
        band(axes[1], steps, values["curve_entropy"], label)
        band(axes[2], ks, values["pass_at_k"], label)
    axes[0].set(xlabel="optimizer step", ylabel="test greedy accuracy")
    axes[1].set(xlabel="optimizer step", ylabel="mean token entropy of sampled answers (nats)")
    axes[2].set(xlabel="k", ylabel="test pass@k (16 answers, unbiased)", xscale="log", xticks=[1, 2, 4, 8, 16],
                xticklabels=["1", "2", "4", "8", "16"])
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------------- study


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[5e-5, 1e-4],
                        help="the grid every arm gets; each arm keeps its best value on validation")
    parser.add_argument("--max-steps", type=int, default=128, help="optimizer steps per run")
    parser.add_argument("--steps-per-generation", type=int, default=4, help="optimizer steps per rollout")
    parser.add_argument("--questions-per-step", type=int, default=4, help="questions (x 16 answers) per step")
    parser.add_argument("--eval-every", type=int, default=16)
    parser.add_argument("--max-refill-rounds", type=int, default=29, help="dynamic sampling's extra generation rounds")
    parser.add_argument("--warm-start-target", type=float, default=0.2,
                        help="SFT until this fraction of sampled answers to training problems is right")
    parser.add_argument("--sft-check-every", type=int, default=25)
    parser.add_argument("--max-sft-steps", type=int, default=1500)
    parser.add_argument("--validation-size", type=int, default=500)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--entropy-probe-size", type=int, default=500)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="a subset, for pilots")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--raw-dir", type=Path, default=None, help="where the record goes (default: docs/results/raw)")
    args = parser.parse_args(argv)
    if len(args.seeds) != len(set(args.seeds)):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    started = time.time()

    data = arithmetic_splits(max_operand=100, validation_size=args.validation_size, test_fraction=args.test_fraction,
                             seed=0)
    tokenizer = arithmetic_tokenizer()
    runs = {arm: {lr: [] for lr in args.learning_rates} for arm in args.arms}
    warm = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        base, sft_steps = warm_start(seed, data, tokenizer, args.warm_start_target, args.sft_check_every,
                                     args.max_sft_steps, args.device)
        sampled = sample_arithmetic_answers(base, tokenizer, data["test"], num_samples=NUM_GENERATIONS, seed=seed)
        greedy = sample_arithmetic_answers(base, tokenizer, data["test"], greedy=True)
        mixed = [0 < c < NUM_GENERATIONS for c in sampled["num_correct"]]
        warm.append({"sft_steps": sft_steps, "greedy_accuracy": sum(greedy["num_correct"]) / len(mixed),
                     "sampled_accuracy": sum(sampled["num_correct"]) / (NUM_GENERATIONS * len(mixed)),
                     "frac_mixed": sum(mixed) / len(mixed), "seconds": time.perf_counter() - t0})
        print(f"seed {seed} warm start: {sft_steps} SFT steps, test greedy {warm[-1]['greedy_accuracy']:.3f}, "
              f"sampled {warm[-1]['sampled_accuracy']:.3f}, mixed groups of 16 {warm[-1]['frac_mixed']:.3f} "
              f"({warm[-1]['seconds']:.0f}s, {time.process_time():.0f}s CPU so far)",
              flush=True)
        for arm in args.arms:
            for lr in args.learning_rates:
                run = train_arm(arm, base, tokenizer, data, seed=seed, learning_rate=lr, max_steps=args.max_steps,
                                eval_every=args.eval_every, questions_per_step=args.questions_per_step,
                                steps_per_generation=args.steps_per_generation,
                                max_refill_rounds=args.max_refill_rounds, device=args.device,
                                entropy_probe_size=args.entropy_probe_size)
                runs[arm][lr].append(run)
                print(f"seed {seed} {arm:7s} lr {lr:g}: validation {run['curve']['validation'][0]:.3f} -> "
                      f"{run['final_validation_accuracy']:.3f}, test {run['final_accuracy']:.3f}, pass@16 "
                      f"{run['pass_at_k'][-1]:.3f}, entropy {run['curve']['entropy'][0]:.3f} -> "
                      f"{run['curve']['entropy'][-1]:.3f} ({run['seconds']:.0f}s, {time.process_time():.0f}s CPU so "
                      "far)", flush=True)

    # each arm's learning rate: the best mean final validation accuracy over seeds (ties: the smaller lr)
    grid = {arm: {lr: [r["final_validation_accuracy"] for r in by_lr[lr]] for lr in args.learning_rates}
            for arm, by_lr in runs.items()}
    chosen = {arm: max(args.learning_rates, key=lambda lr, arm=arm: (sum(grid[arm][lr]), -lr)) for arm in args.arms}
    metrics = {}
    for arm in args.arms:
        chosen_runs = runs[arm][chosen[arm]]
        per_seed = lambda key, rs=chosen_runs: [r[key] for r in rs]  # noqa: E731
        metrics[arm] = {
            "final_accuracy": per_seed("final_accuracy"),
            "best_accuracy": per_seed("best_accuracy"),
            "pass_at_1": [r["pass_at_k"][0] for r in chosen_runs],
            "pass_at_16": [r["pass_at_k"][-1] for r in chosen_runs],
            "final_entropy": per_seed("final_entropy"),
            "final_validation_accuracy": per_seed("final_validation_accuracy"),
            "best_step": per_seed("best_step"),
            "learning_rate": [chosen[arm]] * len(args.seeds),
            "optimizer_steps": per_seed("optimizer_steps"),
            "generated_answers": per_seed("generated_answers"),
            "seconds": per_seed("seconds"),
            "warm_start_sft_steps": [w["sft_steps"] for w in warm],
            "warm_start_accuracy": [w["greedy_accuracy"] for w in warm],
            "warm_start_sampled_accuracy": [w["sampled_accuracy"] for w in warm],
            "warm_start_frac_mixed": [w["frac_mixed"] for w in warm],
            **{f"grid_validation_accuracy_lr={lr:g}": grid[arm][lr] for lr in args.learning_rates},
            "pass_at_k": per_seed("pass_at_k"),
            "curve_steps": [r["curve"]["steps"] for r in chosen_runs],
            "curve_accuracy": [r["curve"]["test"] for r in chosen_runs],
            "curve_validation_accuracy": [r["curve"]["validation"] for r in chosen_runs],
            "curve_entropy": [r["curve"]["entropy"] for r in chosen_runs],
        }
    args.figures_dir.mkdir(parents=True, exist_ok=True)
    figure = args.figures_dir / "nft_negatives.png"
    plot(metrics, figure, f"a+b, a, b < 100: {len(args.seeds)} seeds, each arm at its validation-chosen lr "
                          "(mean, 95% t-interval)")
    rollouts = args.max_steps // args.steps_per_generation
    budget = (f"lr grid {[f'{lr:g}' for lr in args.learning_rates]} (best on validation), {args.max_steps} Adam steps "
              f"(constant lr, grad clip 1), {args.questions_per_step} questions x {NUM_GENERATIONS} answers per step, "
              f"{args.steps_per_generation} steps per rollout ({rollouts} rollouts of "
              f"{args.questions_per_step * args.steps_per_generation} questions), dynamic sampling with up to "
              f"{args.max_refill_rounds} refill rounds")
    settings = {
        "task": f"a+b=, a, b in [0, 100) (answers of 1-3 digits + <eos>): {data['train'].num_rows} train / "
                f"{data['validation'].num_rows} validation / {data['test'].num_rows} test problems (split seed 0)",
        "model": "tiny Qwen2 (hidden 64, 2 layers, 124k parameters), SFT warm start per seed until "
                 f"{args.warm_start_target:g} of sampled answers to 256 training problems are right (checked every "
                 f"{args.sft_check_every} steps, at most {args.max_sft_steps}; AdamW lr 3e-3, batch 64)",
        "num_generations": NUM_GENERATIONS, "temperature": 1.0, "max_completion_length": MAX_COMPLETION_LENGTH,
        "max_steps": args.max_steps, "steps_per_generation": args.steps_per_generation,
        "questions_per_step": args.questions_per_step, "eval_every": args.eval_every,
        "entropy_probe": f"1 sampled answer (temperature 1) to each of the first {args.entropy_probe_size} test "
                         "problems; the final entropy uses the 16 pass@k answers to every test problem",
        "arms": {
            "nft": "NFTTrainer, official defaults (question_weight='one_minus_rq', negative_clamp=1.0, "
                   "rq_clip=[0.02, 0.98], loss_type='dr_grpo')",
            "rft": "NFTTrainer(neg_weight=0), otherwise as nft",
            "grpo": "TRL GRPO loss, GRPOConfig defaults (loss_type='dapo', scale_rewards='group', epsilon=0.2, beta=0)",
            "dr_grpo": "TRL GRPO loss with loss_type='dr_grpo', scale_rewards='none', epsilon=0.2, beta=0",
        },
        "selection": "each arm's lr = the grid value with the best mean final validation greedy accuracy; "
                     "best_accuracy = test accuracy at the evaluation with the best validation accuracy",
        "learning_rates": list(args.learning_rates),
        "budget": {arm: budget for arm in args.arms},
        "baseline": "rft",
        "higher_is_better": {"final_accuracy": True, "best_accuracy": True, "pass_at_1": True, "pass_at_16": True,
                             "final_entropy": True},
        "claim": {"text": "learning from negatives (NFT) improves on positive-only RFT (paper: +3.4 avg. at 7B)",
                  "arm": "nft", "baseline": "rft", "metric": "final_accuracy", "higher_is_better": True},
    }
    path = write_record("nft", "negatives", seeds=args.seeds, metrics=metrics, settings=settings, started=started,
                        device=args.device, raw_dir=args.raw_dir, figures=[figure])
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
