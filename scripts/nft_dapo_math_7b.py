"""Paper-scale recipe: NFT on Qwen2.5-Math-7B with DAPO-Math-17k (arXiv 2505.18116, Sec. 5.1 / App. C).

This needs GPUs, vLLM and the Hub; it cannot run on the CPU machine where hfgen's tests run, but its
config is built and validated by ``tests/test_nft_scripts.py``. The hyper-parameters are those of the
official ``train_7B.sh`` (NVlabs/NFT):

- 512 questions x 16 answers per rollout, temperature 1.0, top_p 1.0; max response 3584 tokens;
- 32 questions (512 answers) per optimizer step, so 16 optimizer steps per rollout (off-policy reuse);
- AdamW, lr 1e-6, weight decay 0.1, 10 warm-up steps then constant, grad-norm clip 1.0; no KL, no entropy bonus;
- NFT: neg_weight 1.0 (0.0 for the RFT baseline), omega = 1 - r_q, epsilon = 1.0, r_q clipped to
  [0.02, 0.98], token-level ratio, all-correct and all-wrong questions dropped.

Launch on 4 nodes x 8 GPUs (the official setting) with ``accelerate launch`` / ``torchrun``; the batch
arithmetic below assumes ``WORLD_SIZE`` = 32 (per device 4 answers x 4 accumulation x 32 = 512)::

    accelerate launch --num_machines 4 --num_processes 32 scripts/nft_dapo_math_7b.py --output-dir Qwen2.5-Math-7B-NFT
    accelerate launch ... scripts/nft_dapo_math_7b.py --neg-weight 0.0 --output-dir Qwen2.5-Math-7B-RFT
    accelerate launch ... scripts/nft_dapo_math_7b.py --model <any causal LM id or path> [--lora-r 64]

The reward needs ``pip install math-verify`` (TRL's ``accuracy_reward``); without it the script falls
back to exact string match of the last ``Answer:`` line or ``\\boxed{}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re

MODEL = "Qwen/Qwen2.5-Math-7B"
DATASET = "BytedTsinghua-SIA/DAPO-Math-17k"


def build_config(output_dir: str = "Qwen2.5-Math-7B-NFT", neg_weight: float = 1.0, world_size: int = 32, **overrides):
    """The paper's NFTConfig for 7B. ``world_size`` only sets the per-device split of the 512-answer step."""
    from hfgen.trainers import NFTConfig

    per_device, accumulation = 4, 512 // (4 * world_size)
    if accumulation < 1 or per_device * accumulation * world_size != 512:
        raise ValueError(f"`world_size` must divide 128 (512 answers per step, 4 per device), got {world_size}.")
    config = dict(
        output_dir=output_dir,
        # NFT (train_7B.sh)
        neg_weight=neg_weight,
        question_weight="one_minus_rq",
        negative_clamp=1.0,
        rq_clip=[0.02, 0.98],
        ratio_type="token",
        dynamic_sampling=True,
        loss_type="dr_grpo",  # a constant normaliser, like the official sum / 1000
        # rollouts: 512 questions x 16 answers; 16 optimizer steps of 32 questions each
        num_generations=16,
        temperature=1.0,
        top_p=1.0,
        max_completion_length=3584,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=16 * accumulation,
        num_iterations=1,
        # optimisation
        learning_rate=1e-6,
        weight_decay=0.1,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=10,
        max_grad_norm=1.0,
        beta=0.0,
        max_steps=5000,  # 320 rollout steps x 16 ("about 5,000 gradient steps")
        # systems
        bf16=True,
        gradient_checkpointing=True,
        use_vllm=True,
        vllm_mode="colocate",
        logging_steps=1,
        save_steps=200,
        report_to="none",
    )
    config.update(overrides)
    return NFTConfig(**config)


def _last_answer(text: str) -> str | None:
    boxed = re.findall(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}", text)
    if boxed:
        return boxed[-1].strip()
    lines = re.findall(r"Answer:\s*(.+)", text)
    return lines[-1].strip().strip("$ ") if lines else None


def dapo_math_reward(completions, solution, **kwargs):
    """Binary verifier for DAPO-Math-17k: math-verify when installed, else exact match of the final answer."""
    if importlib.util.find_spec("math_verify") is not None:
        from trl.rewards import accuracy_reward

        return accuracy_reward(completions, solution, **kwargs)
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(_last_answer(t) == str(s).strip()) for t, s in zip(texts, solution)]


def load_dapo_math():
    """DAPO-Math-17k as a TRL prompt dataset: chat ``prompt`` plus the ground truth as ``solution``."""
    from datasets import load_dataset

    data = load_dataset(DATASET, split="train")
    return data.map(lambda row: {"solution": row["reward_model"]["ground_truth"]},
                    remove_columns=[c for c in data.column_names if c != "prompt"])


def main(output_dir: str, neg_weight: float, world_size: int, model: str = MODEL, lora_r: int = 0):
    """``model``: any ``AutoModelForCausalLM`` Hub id or local path (tested offline with a tiny Qwen2 in
    ``tests/test_convert_nft_hub_model.py``); ``lora_r > 0`` trains a LoRA adapter (PEFT) instead of all weights."""
    from hfgen.trainers import NFTTrainer

    peft_config = None
    if lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = NFTTrainer(model=model, reward_funcs=dapo_math_reward, train_dataset=load_dapo_math(),
                         args=build_config(output_dir, neg_weight, world_size), peft_config=peft_config)
    trainer.train()
    trainer.save_model()  # safetensors + the hfgen NFT model card


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="Qwen2.5-Math-7B-NFT")
    parser.add_argument("--neg-weight", type=float, default=1.0, help="1.0 = NFT, 0.0 = RFT")
    parser.add_argument("--world-size", type=int, default=32)
    parser.add_argument("--model", default=MODEL, help=f"a causal LM Hub id or local path (default {MODEL})")
    parser.add_argument("--lora-r", type=int, default=0, help="LoRA rank; 0 (default) trains all weights, as the paper")
    a = parser.parse_args()
    main(a.output_dir, a.neg_weight, a.world_size, model=a.model, lora_r=a.lora_r)
