"""Experiment: a small masked diffusion LM on pydoc text, sampled by FHS and by the ancestral sampler.

Trains a character-level BERT-like denoiser (MaskedDiffusionTrainer) and a character-level causal
judge on the pydoc topics, then samples with FHS and with MDLM's ancestral sampler at several T,
each in float64 and float32, and reports generative perplexity under the judge, unigram entropy,
network calls and wall time (the paper's Fig./Table 2 setting, scaled down to two CPU cores).

    OMP_NUM_THREADS=1 python scripts/mdm_text.py [--train-steps 1500] [--steps 100 1000 10000]

Writes the raw record ``docs/results/raw/masked_diffusion/text.json`` and the figure.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from hfgen.data.text import char_tokenizer, pydoc_dataset
from hfgen.demos.masked_diffusion import evaluate_sampler, train_denoiser, train_judge
from hfgen.metrics.perplexity import generative_perplexity, unigram_entropy
from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline
from hfgen.results import write_record

FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "masked_diffusion_text.png"


def main(train_steps=1500, judge_steps=600, seq_len=64, num_samples=32, steps=(100, 1000, 10000), seed=0,
         work_dir="/tmp/masked_diffusion_text", figure=FIGURE, raw_dir=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    started = time.time()
    torch.manual_seed(seed)
    tokenizer = char_tokenizer()
    data = pydoc_dataset(tokenizer, seq_len=seq_len)
    start = time.perf_counter()
    denoiser, nelbo = train_denoiser(tokenizer, data["train"], Path(work_dir) / "mdm", train_steps, seed)
    judge = train_judge(tokenizer, data["train"], Path(work_dir) / "judge", judge_steps, seed)
    train_seconds = time.perf_counter() - start
    pipe = MaskedDiffusionPipeline(denoiser=denoiser, tokenizer=tokenizer, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(leave=False)

    held_out = data["test"]["input_ids"][:num_samples]
    rows = {"held-out text": {"gen_ppl": generative_perplexity(held_out, judge, tokenizer),
                              "entropy": unigram_entropy(held_out), "nfe": "", "seconds": float("nan"), "text": ""}}
    for dtype in ("float64", "float32"):
        rows[f"FHS, {dtype}"] = evaluate_sampler(pipe, FirstHittingScheduler(sampling_dtype=dtype), judge, tokenizer,
                                                 num_samples, seq_len, seed=seed)
        for t in steps:
            rows[f"ancestral T={t}, {dtype}"] = evaluate_sampler(
                pipe, AncestralMaskedScheduler(sampling_dtype=dtype), judge, tokenizer, num_samples, seq_len, t, seed=seed)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, r in rows.items():
        marker = "*" if name.startswith("held") else "o" if name.startswith("FHS") else "s"
        color = "gray" if name.startswith("held") else "C0" if "float64" in name else "C3"
        ax.scatter(r["entropy"], r["gen_ppl"], marker=marker, color=color, s=50)
        ax.annotate(name.replace("ancestral ", ""), (r["entropy"], r["gen_ppl"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("unigram entropy per sample (nats)")
    ax.set_ylabel("generative perplexity (char judge)")
    ax.set_title("pydoc char MDM: blue float64, red float32", fontsize=9)
    fig.tight_layout()
    Path(figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=90)
    plt.close(fig)

    lines = [
        f"Setting: character-level pydoc text (`hfgen.data.text`), L = {seq_len}, V = {len(tokenizer)}, "
        f"{num_samples} samples per sampler, seed {seed}; denoiser BERT 2 x 128 trained {train_steps} steps "
        f"(final NELBO {nelbo:.3f} nats/char), judge Llama 2 x 128 trained {judge_steps} steps; "
        f"training took {train_seconds:.0f} s. CPU ({platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Figure: `docs/figures/{Path(figure).name}`.",
        "",
        "| sampler | NFE | seconds | gen. PPL | entropy (nats) |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['nfe']} | {r['seconds']:.2f} | {r['gen_ppl']:.2f} | {r['entropy']:.3f} |")
    lines += ["", "One FHS float64 sample: `" + rows["FHS, float64"]["text"].replace("\n", " ").replace("`", "'") + "`"]
    report = "\n".join(lines)
    print(report)
    metrics = {name: {"gen_ppl": [r["gen_ppl"]], "entropy": [r["entropy"]],
                      **({"seconds": [r["seconds"]], "network_calls": [r["nfe"]]} if r["nfe"] != "" else {})}
               for name, r in rows.items()}
    path = write_record("masked_diffusion", "text", seeds=[seed], metrics=metrics, started=started, raw_dir=raw_dir,
                        figures=[figure],
                        settings={"seq_len": seq_len, "vocab": len(tokenizer), "num_samples": num_samples,
                                  "train_steps": train_steps, "judge_steps": judge_steps,
                                  "denoiser_nelbo": nelbo, "train_seconds": train_seconds,
                                  "higher_is_better": {"gen_ppl": False, "seconds": False}, "digits": 2})
    return rows, report, path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--judge-steps", type=int, default=600)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    cli = parser.parse_args()
    main(cli.train_steps, cli.judge_steps, cli.seq_len, cli.num_samples, tuple(cli.steps), cli.seed,
         raw_dir=cli.raw_dir)
