"""Benchmark: the first-hitting sampler against MDLM's ancestral sampler, same model, same run.

L = 128 tokens, a vocabulary of 32,768 (>= 30k, as GPT-2-sized vocabularies), a tiny BERT denoiser
(random weights: both samplers draw the same distribution, which the identity tests prove, so only
cost is measured here), batch 1. The ancestral sampler runs MDLM's default T = 1000 with the
no-change cache. Time is split into the network (forward hooks) and everything else (sampling). Writes the raw
record ``docs/results/raw/masked_diffusion/bench_fhs.json`` (``--raw-dir`` elsewhere).

    OMP_NUM_THREADS=1 python scripts/bench_fhs.py [--steps 1000] [--vocab 32768] [--length 128] [--dtypes float64]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from transformers import BertConfig, BertForMaskedLM

from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline
from hfgen.results import write_record


class NetworkTimer:
    """Accumulates wall time spent inside ``module.forward`` through forward hooks."""

    def __init__(self, module):
        self.seconds, self._start = 0.0, None
        module.register_forward_pre_hook(lambda *_: setattr(self, "_start", time.perf_counter()))
        module.register_forward_hook(lambda *_: setattr(self, "seconds", self.seconds + time.perf_counter() - self._start))


def time_sampler(pipe, timer, scheduler, length, mask_id, num_inference_steps=None, seed=0):
    pipe.scheduler = scheduler
    timer.seconds = 0.0
    start = time.perf_counter()
    out = pipe(input_ids=torch.full((length,), mask_id), mask_token_id=mask_id, output_type="pt",
               num_inference_steps=num_inference_steps, generator=torch.Generator().manual_seed(seed))
    total = time.perf_counter() - start
    return {"total": total, "network": timer.seconds, "sampling": total - timer.seconds, "nfe": out.nfe}


def main(steps=1000, vocab=32768, length=128, hidden=128, layers=2, dtypes=("float64", "float32"), seed=0,
         raw_dir=None):
    started = time.time()
    torch.manual_seed(seed)
    denoiser = BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                          num_attention_heads=4, intermediate_size=4 * hidden,
                                          max_position_embeddings=length)).eval()
    mask_id = vocab - 1
    pipe = MaskedDiffusionPipeline(denoiser=denoiser, tokenizer=None, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    timer = NetworkTimer(denoiser)
    time_sampler(pipe, timer, FirstHittingScheduler(), 8, mask_id)  # warm-up
    rows = {}
    for dtype in dtypes:
        rows[f"FHS ({dtype})"] = time_sampler(pipe, timer, FirstHittingScheduler(sampling_dtype=dtype), length, mask_id)
        print(f"FHS ({dtype})", rows[f"FHS ({dtype})"], flush=True)
        rows[f"ancestral T={steps}, cached ({dtype})"] = time_sampler(
            pipe, timer, AncestralMaskedScheduler(sampling_dtype=dtype), length, mask_id, steps)
        print(f"ancestral ({dtype})", rows[f"ancestral T={steps}, cached ({dtype})"], flush=True)
    lines = [
        f"Device: CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; L = {length}, V = {vocab}, batch 1, denoiser BERT "
        f"{layers} x {hidden} (random weights), seed {seed}.",
        "",
        "| sampler | NFE | total (s) | network (s) | sampling (s) | total / network |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['nfe']} | {r['total']:.2f} | {r['network']:.2f} | {r['sampling']:.2f} | "
                     f"{r['total'] / r['network']:.2f} |")
    lines.append("")
    for dtype in dtypes:
        fhs, anc = rows[f"FHS ({dtype})"], rows[f"ancestral T={steps}, cached ({dtype})"]
        lines.append(f"- {dtype}: total speed-up {anc['total'] / fhs['total']:.1f}x, sampling-side speed-up "
                     f"{anc['sampling'] / fhs['sampling']:.1f}x, FHS total = {fhs['total'] / fhs['network']:.2f} x its "
                     f"{fhs['nfe']} network calls.")
    report = "\n".join(lines)
    print(report)
    metrics = {name: {"total_seconds": [r["total"]], "network_seconds": [r["network"]],
                      "sampling_seconds": [r["sampling"]], "network_calls": [r["nfe"]]} for name, r in rows.items()}
    path = write_record("masked_diffusion", "bench_fhs", seeds=[seed], metrics=metrics, started=started,
                        raw_dir=raw_dir,
                        settings={"length": length, "vocab": vocab, "ancestral_steps": steps, "batch": 1,
                                  "denoiser": f"BERT {layers} x {hidden}, random weights (cost only)",
                                  "higher_is_better": {"total_seconds": False, "sampling_seconds": False},
                                  "digits": {"total_seconds": 2, "network_seconds": 2, "sampling_seconds": 2,
                                             "network_calls": 0},
                                  "baseline": f"ancestral T={steps}, cached ({dtypes[0]})"})
    return rows, report, path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    cli = parser.parse_args()
    main(cli.steps, cli.vocab, cli.length, dtypes=tuple(cli.dtypes), seed=cli.seed, raw_dir=cli.raw_dir)
