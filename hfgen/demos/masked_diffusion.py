"""Demo: a tiny masked diffusion LM on pydoc text, sampled with FHS and with the T-step ancestral sampler.

Trains a character-level BERT-like denoiser with [`~hfgen.trainers.MaskedDiffusionTrainer`]
and a character-level causal LM judge on the same text, then samples the same model with the
first-hitting sampler (L network calls) and with MDLM's ancestral sampler at T = 1000 (with the
no-change cache), both in float64, and reports wall time, network calls, generative
perplexity under the judge and unigram entropy. The claim checked: FHS draws the same distribution
(equal quality) with far fewer network calls and far less sampling work.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from hfgen.demos import verbose

CLAIM = "paper: FHS samples the MDM exactly with L network calls, faster than T=1000 ancestral at equal quality"


def train_denoiser(tokenizer, train_dataset, output_dir, steps: int, seed: int = 0, batch_size: int = 32,
                   hidden: int = 128, layers: int = 2):
    """Masked-diffusion training of a tiny BERT; returns the model in eval mode and its last logged NELBO."""
    from hfgen.testing.tiny_models import tiny_bert_mlm
    from hfgen.trainers import MaskedDiffusionConfig, MaskedDiffusionTrainer

    model = tiny_bert_mlm(len(tokenizer), seed, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                          intermediate_size=4 * hidden, max_position_embeddings=len(train_dataset[0]["input_ids"]))
    args = MaskedDiffusionConfig(output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
                                 learning_rate=2e-3, warmup_steps=min(50, steps // 10), lr_scheduler_type="cosine",
                                 weight_decay=0.01, logging_steps=max(1, steps // 10), save_strategy="no",
                                 report_to="none", seed=seed, disable_tqdm=not verbose())
    trainer = MaskedDiffusionTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer)
    trainer.train()
    nelbo = [log["nelbo"] for log in trainer.state.log_history if "nelbo" in log]
    return model.eval(), nelbo[-1] if nelbo else float("nan")


def train_judge(tokenizer, train_dataset, output_dir, steps: int, seed: int = 0, batch_size: int = 32):
    """A tiny character-level causal LM (Llama) trained on the same text: the generative-perplexity judge."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from hfgen.testing.tiny_models import tiny_llama

    seq_len = len(train_dataset[0]["input_ids"])
    judge = tiny_llama(len(tokenizer), seed, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=seq_len + 1,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    bos = tokenizer.bos_token_id
    data = train_dataset.map(lambda row: {"input_ids": [bos, *row["input_ids"]]})
    args = TrainingArguments(output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
                             learning_rate=2e-3, warmup_steps=min(50, steps // 10), lr_scheduler_type="cosine",
                             logging_steps=max(1, steps // 10), save_strategy="no", report_to="none",
                             seed=seed)
    Trainer(model=judge, args=args, train_dataset=data,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False)).train()
    return judge.eval()


def evaluate_sampler(pipe, scheduler, judge, tokenizer, num_samples: int, seq_len: int, num_inference_steps=None,
                     seed: int = 0) -> dict:
    """Sample once with ``scheduler`` and measure wall time, network calls, gen-PPL and entropy."""
    from hfgen.metrics.perplexity import generative_perplexity, unigram_entropy

    pipe.scheduler = scheduler
    start = time.perf_counter()
    out = pipe(seq_len=seq_len, num_samples=num_samples, num_inference_steps=num_inference_steps,
               generator=torch.Generator().manual_seed(seed), output_type="pt")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "nfe": out.nfe, "gen_ppl": generative_perplexity(out.sequences.tolist(), judge, tokenizer),
            "entropy": unigram_entropy(out.sequences), "text": tokenizer.decode(out.sequences[0])}


def run(output_dir, seed: int = 0, *, train_steps: int = 300, judge_steps: int = 100, seq_len: int = 64,
        num_samples: int = 16, ancestral_steps: int = 1000):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hfgen.data.text import char_tokenizer, pydoc_dataset
    from hfgen.demos import DemoResult
    from hfgen.metrics.perplexity import generative_perplexity
    from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    start = time.perf_counter()
    tokenizer = char_tokenizer()
    data = pydoc_dataset(tokenizer, seq_len=seq_len)
    denoiser, nelbo = train_denoiser(tokenizer, data["train"], output_dir / "mdm", train_steps, seed)
    judge = train_judge(tokenizer, data["train"], output_dir / "judge", judge_steps, seed)

    pipe = MaskedDiffusionPipeline(denoiser=denoiser, tokenizer=tokenizer, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(leave=False, disable=not verbose())
    fhs_name, anc_name = "first-hitting (FHS)", f"ancestral T={ancestral_steps}"
    rows = {
        fhs_name: evaluate_sampler(pipe, FirstHittingScheduler(), judge, tokenizer, num_samples, seq_len, seed=seed),
        anc_name: evaluate_sampler(pipe, AncestralMaskedScheduler(), judge, tokenizer, num_samples, seq_len,
                                   ancestral_steps, seed=seed),
    }
    data_ppl = generative_perplexity(data["test"]["input_ids"][:num_samples], judge, tokenizer)

    fig, (ax_time, ax_quality) = plt.subplots(1, 2, figsize=(9, 3))
    names = list(rows)
    ax_time.barh(names, [rows[n]["seconds"] for n in names], color=["C0", "C1"])
    for i, n in enumerate(names):
        ax_time.text(rows[n]["seconds"], i, f" {rows[n]['nfe']} NFE", va="center", fontsize=8)
    ax_time.set_xlabel(f"seconds for {num_samples} x {seq_len} tokens")
    for n in names:
        ax_quality.scatter(rows[n]["entropy"], rows[n]["gen_ppl"], label=n, marker="o" if n == fhs_name else "s")
    ax_quality.axhline(data_ppl, color="gray", ls="--", lw=1, label="held-out text")
    ax_quality.set_xlabel("unigram entropy (nats)")
    ax_quality.set_ylabel("gen. perplexity (char judge)")
    ax_quality.legend(fontsize=7)
    fig.suptitle("Masked diffusion on pydoc text: first-hitting vs ancestral sampling", fontsize=10)
    fig.tight_layout()
    figure = output_dir / "masked_diffusion_demo.png"
    fig.savefig(figure, dpi=90)
    plt.close(fig)

    fhs, anc = rows[fhs_name], rows[anc_name]
    return DemoResult(
        method="masked_diffusion", claim=CLAIM, metric="sampling seconds (lower is better)",
        baseline_name=f"{anc_name} (cached)", baseline_value=anc["seconds"],
        method_value=fhs["seconds"], higher_is_better=False, seconds=time.perf_counter() - start,
        figures=[str(figure)],
        details={"train_nelbo_per_token": nelbo, "heldout_text_gen_ppl": data_ppl, "samplers": rows,
                 "speedup": anc["seconds"] / fhs["seconds"], "seq_len": seq_len, "num_samples": num_samples,
                 "seed": seed},
    )
