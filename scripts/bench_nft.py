"""Benchmark: NFTTrainer vs TRL's GRPOTrainer, training-step time and memory on the same setup, same run.

NFT needs no extra forward pass (pi_old is TRL's ``old_per_token_logps`` or the detached current
log-probs, exactly as GRPO), so both ratios should be about 1. Three measurements, all printed as
NFT / GRPO ratios (nothing is asserted):

1. full ``trainer.train()`` optimizer steps (generation + loss + backward + update): median of TRL's
   own ``step_time`` metric, runs in ABBA order (repeated ``rounds`` times) to cancel drift of a shared machine;
2. generation + scoring, and loss forward + backward alone on one generated batch, interleaved repeats, median;
3. memory held for the backward pass: bytes of the tensors autograd saves during the loss (parameters
   excluded), measured with ``torch.autograd.graph.saved_tensors_hooks``; and, on CUDA, the peak
   allocated memory of a training step.

    python scripts/bench_nft.py                 # ~1-2 min on 2 CPU cores
    python scripts/bench_nft.py --device cuda --hidden-size 512 --max-completion-length 64
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

from hfgen.results import write_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _trainer(kind, model, tokenizer, data, output_dir, steps, device, **common):
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from hfgen.data.arithmetic import arithmetic_reward
    from hfgen.trainers import NFTConfig, NFTTrainer

    args = dict(output_dir=output_dir, use_cpu=device == "cpu", bf16=False, gradient_checkpointing=False,
                report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1, max_steps=steps, seed=0,
                lr_scheduler_type="constant", learning_rate=5e-4, **common)
    config, cls = (GRPOConfig, GRPOTrainer) if kind == "grpo" else (NFTConfig, NFTTrainer)
    trainer = cls(model=copy.deepcopy(model), reward_funcs=arithmetic_reward, args=config(**args),
                  train_dataset=data["train"], processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1
    trainer.remove_callback(PrinterCallback)  # keep the output to the numbers
    return trainer


def _saved_bytes(model, fn):
    """Run ``fn`` (a loss) and sum the bytes of distinct non-parameter storages autograd saved for backward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    return loss, sum(seen.values())


def main(steps: int = 30, rounds: int = 2, repeats: int = 30, hidden_size: int = 64, max_completion_length: int = 3,
         batch_size: int = 64, num_generations: int = 8, sft_steps: int = 100, device: str = "cpu",
         raw_dir: str | Path | None = None) -> dict:
    """Measure both trainers; print the ratios and write the raw record ``<raw_dir>/nft/bench_train_step.json``
    (returned under ``results["record"]``)."""
    from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_tokenizer, sft_warm_start, tiny_causal_lm

    started = time.time()
    data = arithmetic_dataset(max_operand=20, seed=0)
    tokenizer = arithmetic_tokenizer()
    model = tiny_causal_lm(tokenizer, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
                           max_position_embeddings=16 + max_completion_length)
    sft_warm_start(model, tokenizer, data["train"], steps=sft_steps)  # mixed groups, so both losses do real work
    if device != "cpu":
        model.to(device)
    common = dict(per_device_train_batch_size=batch_size, num_generations=num_generations,
                  max_completion_length=max_completion_length)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # 1. full training steps, ABBA
        step_times = {"grpo": [], "nft": []}
        for kind in ("grpo", "nft", "nft", "grpo") * rounds:
            trainer = _trainer(kind, model, tokenizer, data, tmp, steps, device, **common)
            trainer.train()
            times = [log["step_time"] for log in trainer.state.log_history if "step_time" in log]
            step_times[kind] += times[2:]  # skip warm-up steps
        results["train_step_s"] = {k: statistics.median(v) for k, v in step_times.items()}
        measured_steps = {k: len(v) for k, v in step_times.items()}

        # 2. + 3. loss forward/backward on one fixed batch, interleaved
        trainers = {k: _trainer(k, model, tokenizer, data, tmp, steps, device, **common) for k in ("grpo", "nft")}
        for t in trainers.values():
            t.model.train()
        rows = [dict(data["train"][i]) for i in range(batch_size // num_generations)]
        inputs = [row for row in rows for _ in range(num_generations)]
        batches, gen_times, loss_times, saved = {}, {"grpo": [], "nft": []}, {"grpo": [], "nft": []}, {}
        for _ in range(repeats):
            for kind, t in trainers.items():
                torch.manual_seed(0)
                start = time.perf_counter()
                batches[kind] = t._generate_and_score_completions(inputs)  # generation + rewards + NFT scoring
                gen_times[kind].append(time.perf_counter() - start)
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                loss, saved[kind] = _saved_bytes(t.model, lambda t=t, b=batches[kind]: t.compute_loss(t.model, b))
                loss.backward()
                t.model.zero_grad(set_to_none=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                loss_times[kind].append(time.perf_counter() - start)
        results["generate_and_score_s"] = {k: statistics.median(v) for k, v in gen_times.items()}
        results["loss_fwd_bwd_s"] = {k: statistics.median(v) for k, v in loss_times.items()}
        results["saved_for_backward_bytes"] = saved
        if device == "cuda":
            peaks = {}
            for kind, t in trainers.items():
                torch.cuda.reset_peak_memory_stats()
                t.compute_loss(t.model, batches[kind]).backward()
                peaks[kind] = torch.cuda.max_memory_allocated()
            results["cuda_peak_bytes"] = peaks

    lines = [f"device {device}, SFT-warmed tiny Qwen2 (hidden {hidden_size}), batch {batch_size} ({num_generations} answers/question), "
             f"max_completion_length {max_completion_length}, {steps} steps x {2 * rounds} runs each (ABBA x {rounds}), "
             f"{repeats} interleaved loss repeats"]
    for key, values in results.items():
        ratio = values["nft"] / values["grpo"]
        lines.append(f"{key}: GRPO {values['grpo']:.6g}  NFT {values['nft']:.6g}  ratio NFT/GRPO {ratio:.3f}")
    print("\n".join(lines))
    metrics = {kind: {**{key: [values[kind]] for key, values in results.items()},
                      "measured_train_steps": [measured_steps[kind]]} for kind in ("nft", "grpo")}
    results["record"] = write_record(
        "nft", "bench_train_step", seeds=[0], metrics=metrics, started=started, device=device, raw_dir=raw_dir,
        settings={"model": f"SFT-warmed tiny Qwen2 (hidden {hidden_size})", "batch_size": batch_size,
                  "num_generations": num_generations, "max_completion_length": max_completion_length,
                  "steps_per_run": steps, "abba_rounds": rounds, "loss_repeats": repeats, "baseline": "grpo",
                  "digits": 4, "notes": ["Medians of one run (one seed): the train-step time over ABBA-ordered "
                                         "runs, the others over interleaved repeats; saved_for_backward_bytes is "
                                         "exact for this batch."]})
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds of full training runs")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--max-completion-length", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--sft-steps", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    a = parser.parse_args()
    main(a.steps, a.rounds, a.repeats, a.hidden_size, a.max_completion_length, a.batch_size, a.num_generations,
         a.sft_steps, a.device, a.raw_dir)
