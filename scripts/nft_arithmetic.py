"""NFT vs RFT vs GRPO on held-out arithmetic, from the same warm start, over several seeds.

For each seed: one SFT warm start of a tiny Qwen2 (0.1 M parameters) on ``a+b=`` problems, then NFT
(``NFTTrainer``), RFT (``NFTTrainer(neg_weight=0)``) and GRPO (TRL's GRPO loss and defaults) each train a copy of
that checkpoint with the same seed, the same 8 answers per question, the same batch, learning rate and number of
steps, and the same dynamic sampling (the batch refilled with mixed questions, up to 29 extra rounds): equal
chances. Each rollout is reused for ``steps_per_generation`` optimizer steps, as the paper does (16 there), so the
runs are off-policy where NFT and GRPO differ.

Writes a raw record ``docs/results/raw/nft/arithmetic.json`` (per-seed final/best held-out accuracy, pass@8,
optimizer steps, refill rounds, seconds; the curves) and the curve ``docs/figures/nft_arithmetic.png``; then
``python scripts/collect_results.py`` renders ``docs/results/nft.md``.

    OMP_NUM_THREADS=1 python scripts/nft_arithmetic.py            # 3 seeds x 3 methods, a few minutes
    python scripts/nft_arithmetic.py --seeds 0 --max-steps 10 --raw-dir /tmp/raw --out-fig /tmp/nft.png
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from hfgen.demos.nft import METHODS, plot_curves, train_arm, warm_start  # noqa: E402
from hfgen.results import write_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(seeds=(0, 1, 2), max_steps: int = 200, eval_every: int = 25, sft_steps: int = 150,
         steps_per_generation: int = 4, out_fig: str | Path = ROOT / "docs/figures/nft_arithmetic.png",
         raw_dir: str | Path | None = None) -> Path:
    """Train every arm on every seed; write the figure and the raw record (returns the record's path)."""
    started = time.time()
    curves = {m: [] for m in METHODS}
    for seed in seeds:
        data, tokenizer, base = warm_start(seed, steps=sft_steps)
        for method in METHODS:
            run = train_arm(method, base, tokenizer, data, seed=seed, max_steps=max_steps, eval_every=eval_every,
                            steps_per_generation=steps_per_generation)
            run.pop("log_history")
            curves[method].append(run)
            print(f"seed {seed} {method:4s}: held-out accuracy {run['accuracy'][0]:.3f} -> {run['accuracy'][-1]:.3f}, "
                  f"pass@8 {run['pass_at_8']:.3f}, {run['optimizer_steps']} steps ({run['seconds']:.0f}s)", flush=True)
    out_fig = Path(out_fig)
    out_fig.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, out_fig, f"a+b held-out accuracy, {len(seeds)} seeds (mean, min-max band)")
    metrics = {
        method: {
            "final_accuracy": [run["accuracy"][-1] for run in runs],
            "best_accuracy": [max(run["accuracy"]) for run in runs],
            "pass_at_8": [run["pass_at_8"] for run in runs],
            "warm_start_accuracy": [run["accuracy"][0] for run in runs],
            "optimizer_steps": [run["optimizer_steps"] for run in runs],
            "mean_refill_rounds": [run["mean_refill_rounds"] for run in runs],
            "seconds": [run["seconds"] for run in runs],
            "curve_steps": [run["steps"] for run in runs],
            "curve_accuracy": [run["accuracy"] for run in runs],
        }
        for method, runs in curves.items()
    }
    budget = (f"{max_steps} optimizer steps, Adam lr 5e-4 constant (one value, no grid, the same for every arm), "
              "batch 64 = 8 questions x 8 answers, dynamic sampling with up to 29 refill rounds")
    settings = {
        "task": "a+b, a, b in [0, 20): 320 train / 80 held-out problems (split seed 0)",
        "model": "tiny Qwen2 (hidden 64, 2 layers, 124k parameters), SFT warm start per seed",
        "sft_steps": sft_steps, "max_steps": max_steps, "eval_every": eval_every,
        "steps_per_generation": steps_per_generation, "temperature": 1.0, "max_completion_length": 3,
        "nft_rft": "NFTConfig defaults (question_weight='one_minus_rq', negative_clamp=1.0, rq_clip=[0.02, 0.98], "
                   "loss_type='dr_grpo'); RFT = neg_weight=0",
        "grpo": "TRL GRPO loss, GRPOConfig defaults (loss_type='dapo', scale_rewards='group', epsilon=0.2, beta=0)",
        "budget": {m: budget for m in METHODS},
        "baseline": "rft",
        "higher_is_better": {"final_accuracy": True, "best_accuracy": True, "pass_at_8": True},
        "claim": {"text": "learning from negatives (NFT) improves on positive-only RFT (paper: +3.4 avg. at 7B)",
                  "arm": "nft", "baseline": "rft", "metric": "final_accuracy", "higher_is_better": True},
    }
    path = write_record("nft", "arithmetic", seeds=seeds, metrics=metrics, settings=settings, started=started,
                        raw_dir=raw_dir, figures=[out_fig])
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--steps-per-generation", type=int, default=4)
    parser.add_argument("--out-fig", default=ROOT / "docs/figures/nft_arithmetic.png")
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    a = parser.parse_args()
    main(tuple(a.seeds), a.max_steps, a.eval_every, a.sft_steps, a.steps_per_generation, a.out_fig, a.raw_dir)
