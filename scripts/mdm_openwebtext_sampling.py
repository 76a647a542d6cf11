"""The FHS paper's sampling experiment on a converted MDLM / SEDD-absorb OpenWebText checkpoint (GPU).

arXiv 2409.02908, Sec. 5-6 (Table 2, Figs. 9/14): generative perplexity under a GPT-2 judge and per-sample
unigram entropy against the number of sampling steps, for the first-hitting sampler (exact, N = L network
calls; and first-order parallel FHS with L/N tokens per call) and MDLM's T-step ancestral sampler, each with
the categorical draw in float64 and in float32.

Metrics as MDLM computes them (kuleshov-group/mdlm @ c112c526, ``diffusion.py``,
``compute_generative_perplexity``): samples are decoded, re-tokenised by the judge's tokenizer (truncated to
the sample length), split into judge-context chunks; the NLL of every token after the first counts, except
EOS tokens after the first one. Entropy is ``-sum_k p_k log p_k`` of each sample's token frequencies,
averaged over samples (App. H.1). Sampling does not forbid EOS (MDLM's samples contain it): only the mask
token is excluded.

Paper-scale run (after ``hfgen convert mdlm <mdlm-owt checkpoint> mdlm-owt-hfgen``)::

    python scripts/mdm_openwebtext_sampling.py --model mdlm-owt-hfgen --tokenizer gpt2 --judge gpt2-large \\
        --num-samples 64 --batch-size 16 --steps 128 256 512 1024 2048 --output results/mdm_owt.json

``--tokenizer`` / ``--judge`` are local folders (or Hub ids when online). N < L is first-order parallel FHS
unless ``--parallel-solver`` picks a second-order one: ``extrapolation`` (Alg. 3), ``predictor_corrector``
(Alg. 4) or ``paper`` (the paper's choice, Sec. 6.1 / App. J.2.1: extrapolation for N <= 128, the
predictor-corrector for N >= 256; N in between, which the paper does not use, gets extrapolation). Both are
hfgen's reconstructions of the paper's text (see ``FirstHittingScheduler``); the predictor-corrector reads the
denoiser's outputs at already decoded positions, which an MDLM backbone is never trained on, so on MDLM it is
not a reproduction of the paper's Alg. 4.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch


def unigram_entropy(samples: torch.Tensor) -> float:
    """Mean over samples of the entropy (nats) of the sample's token frequencies."""
    values = []
    for row in samples:
        counts = torch.unique(row, return_counts=True)[1].double()
        p = counts / counts.sum()
        values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values)


@torch.no_grad()
def generative_perplexity(texts: list[str], judge, judge_tokenizer, max_length: int, batch_size: int = 8) -> float:
    """MDLM's gen-PPL: re-tokenise, chunk to the judge's context, mask EOS tokens after the first."""
    if judge_tokenizer.pad_token is None:
        judge_tokenizer.pad_token = judge_tokenizer.eos_token
    context = getattr(judge.config, "n_positions", None) or getattr(judge.config, "max_position_embeddings", 1024)
    eos = judge_tokenizer.eos_token_id
    device = next(judge.parameters()).device
    total_nll, total = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = judge_tokenizer(texts[i:i + batch_size], return_tensors="pt", return_token_type_ids=False, truncation=True,
                              padding=True, max_length=max_length)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        for chunk, chunk_mask in zip(ids.split(context, dim=-1), mask.split(context, dim=-1)):
            logits = judge(chunk, attention_mask=chunk_mask).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), chunk[:, 1:], reduction="none")
            first_eos = (chunk == eos).cumsum(-1) == 1
            keep = (first_eos | (chunk != eos))[:, 1:]
            total_nll += float((nll * keep).sum())
            total += int(keep.sum())
    return math.exp(total_nll / max(total, 1))


def time_agnostic(model):
    """Let the pipeline cache a time-agnostic denoiser (MDLM: sigma = 0 always) by hiding its time argument."""
    if getattr(model.config, "time_conditioning", True):
        return model
    forward = type(model).forward
    model.forward = lambda input_ids, **kwargs: forward(model, input_ids=input_ids, **kwargs)
    return model


def sample(pipe, scheduler, num_samples, batch_size, seq_len, mask_token_id, steps, seed, device):
    pipe.scheduler = scheduler
    rows, nfe = [], 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for b, first in enumerate(range(0, num_samples, batch_size)):
        n = min(batch_size, num_samples - first)
        # a generator on the model's device: the samplers draw on the generator's device (Diffusers' convention),
        # and a CPU one would make the ancestral sampler draw its B x L x V uniforms on the CPU
        generator = torch.Generator(device).manual_seed(seed + b)
        out = pipe(input_ids=torch.full((seq_len,), mask_token_id, device=device), num_samples=n, mask_token_id=mask_token_id,
                   num_inference_steps=steps, generator=generator, output_type="pt")
        rows.append(out.sequences.cpu())
        nfe += out.nfe
    if device.type == "cuda":
        torch.cuda.synchronize()
    return torch.cat(rows), nfe, time.perf_counter() - start


PARALLEL_SOLVERS = ("first_order", "extrapolation", "predictor_corrector", "paper")


def parallel_solver_for(choice: str, steps: int) -> str:
    """The scheduler's ``parallel_solver`` for ``steps`` network calls; ``"paper"``: extrapolation for N <= 128,
    the predictor-corrector for N >= 256 (arXiv 2409.02908, Sec. 6.1, App. J.2.1)."""
    if choice == "paper":
        return "predictor_corrector" if steps >= 256 else "extrapolation"
    return choice


def main(model, tokenizer, judge, judge_tokenizer=None, *, seq_len=1024, num_samples=64, batch_size=16,
         steps=(128, 256, 512, 1024, 2048), dtypes=("float64", "float32"), seed=0, device=None, output=None,
         parallel_solver="first_order"):
    """Run the grid; ``model`` / ``tokenizer`` / ``judge`` are loaded objects or paths. Returns the result rows."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    import hfgen  # noqa: F401  (registers hfgen_mdlm_dit with the Auto classes)
    from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model_name = model if isinstance(model, (str, Path)) else type(model).__name__
    if isinstance(model, (str, Path)):
        model = AutoModelForMaskedLM.from_pretrained(model, torch_dtype=torch.float32)
    if isinstance(tokenizer, (str, Path)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    if isinstance(judge, (str, Path)):
        judge_tokenizer = judge_tokenizer or AutoTokenizer.from_pretrained(judge)
        judge = AutoModelForCausalLM.from_pretrained(judge, torch_dtype=torch.float32)
    judge_tokenizer = judge_tokenizer or tokenizer
    model, judge = time_agnostic(model.to(device).eval()), judge.to(device).eval()
    mask_token_id = getattr(model.config, "mask_token_id", None)
    mask_token_id = tokenizer.mask_token_id if mask_token_id is None else mask_token_id
    if mask_token_id is None:
        raise ValueError("The model's config and the tokenizer define no mask token.")
    if parallel_solver not in PARALLEL_SOLVERS:
        raise ValueError(f"`parallel_solver` must be one of {PARALLEL_SOLVERS}, got {parallel_solver!r}.")
    bad = [s for s in steps if not isinstance(s, int) or s < 1]
    if bad or seq_len < 1 or num_samples < 1 or batch_size < 1:
        raise ValueError(f"`steps`, `seq_len`, `num_samples`, `batch_size` must be positive integers (bad steps: {bad}).")

    # tokenizer=None: only the mask is excluded from sampling (MDLM samples may contain EOS)
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=None, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    grid = []
    for dtype in dtypes:
        grid.append((f"FHS (exact, N=L), {dtype}", FirstHittingScheduler(sampling_dtype=dtype), None))
        for n in (n for n in steps if n < seq_len):
            solver = parallel_solver_for(parallel_solver, n)
            label = "" if solver == "first_order" else f" ({solver})"
            grid.append((f"FHS parallel N={n}{label}, {dtype}",
                         FirstHittingScheduler(sampling_dtype=dtype, parallel_solver=solver), n))
        grid += [(f"ancestral T={n}, {dtype}", AncestralMaskedScheduler(sampling_dtype=dtype), n) for n in steps]
    results = []
    for name, scheduler, n in grid:
        samples, nfe, seconds = sample(pipe, scheduler, num_samples, batch_size, seq_len, mask_token_id, n, seed, device)
        texts = tokenizer.batch_decode(samples)
        row = {"sampler": name, "steps": n or seq_len, "nfe": nfe, "seconds": seconds,
               "gen_ppl": generative_perplexity(texts, judge, judge_tokenizer, max_length=seq_len),
               "entropy": unigram_entropy(samples), "sample": texts[0][:200]}
        results.append(row)
        print(f"{name:<36} NFE {nfe:>7}  {seconds:8.1f} s  gen-PPL {row['gen_ppl']:9.2f}  entropy {row['entropy']:.3f}", flush=True)
    setting = {"model": str(model_name), "seq_len": seq_len, "num_samples": num_samples, "batch_size": batch_size,
               "seed": seed, "parallel_solver": parallel_solver, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
               "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps({"setting": setting, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a converted MDLM / SEDD-absorb folder (or any masked LM)")
    parser.add_argument("--tokenizer", default="gpt2", help="the model's tokenizer (GPT-2 for MDLM)")
    parser.add_argument("--judge", default="gpt2-large", help="the causal LM judge (the paper: GPT-2 Large)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--output", default="mdm_openwebtext_sampling.json")
    parser.add_argument("--parallel-solver", default="first_order", choices=PARALLEL_SOLVERS,
                        help="parallel FHS for N < L: first order, a second-order reconstruction, or the paper's choice")
    a = parser.parse_args()
    main(a.model, a.tokenizer, a.judge, seq_len=a.seq_len, num_samples=a.num_samples, batch_size=a.batch_size,
         steps=tuple(a.steps), dtypes=tuple(a.dtypes), seed=a.seed, device=a.device, output=a.output,
         parallel_solver=a.parallel_solver)
