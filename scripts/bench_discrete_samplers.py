"""Benchmark: FHS (exact and parallel), MDLM's ancestral sampler and Diffusers' ``BlockRefinementScheduler`` (LLaDA's
commit-by-confidence sampler, mask-token mode) on one masked diffusion model whose law is enumerable, at equal
network calls, in one process.

The model is a time-agnostic table denoiser over ``L`` positions and ``V`` tokens whose conditionals depend on the
visible context (``logits[l, v] = W[l, v] + sum_{j visible} U[l, j, x_j, v]``), so the decoding order matters. Its
law is the law of the exact continuous-time reverse process, which FHS simulates: a uniformly random order, one
token at a time (Prop. 4.1 of arXiv 2409.02908). That law is enumerated exactly here; each sampler's distance to it
is the total variation between its empirical law (``--samples`` sequences a seed) and the exact one. Exact FHS
itself shows the Monte-Carlo floor of that distance. The entropy of each sampler's law is reported beside it, since
a sampler can move away from the model's law by concentrating it (commit-by-confidence does).

hfgen's samplers run through ``MaskedDiffusionPipeline`` with the no-change cache off; Diffusers' scheduler (which
``MaskedDiffusionPipeline`` does not take) through a thin loop that steps it as ``LLaDA2Pipeline`` does (step indices
0, 1, ..., one block holding the whole sequence, the mask token never drawn). A budget of ``N`` calls is
``num_inference_steps=N`` for all of them (a loop ends early when no mask is left; the calls made are recorded).

    OMP_NUM_THREADS=1 python scripts/bench_discrete_samplers.py [--length 5] [--vocab 3] [--samples 20000]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch
from diffusers import BlockRefinementScheduler
from transformers.modeling_outputs import MaskedLMOutput

from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline
from hfgen.results import interval, write_record


class ContextTableDenoiser(torch.nn.Module):
    """A masked LM given by tables: ``logits[l, v] = W[l, v] + sum_{j visible} U[l, j, x_j, v]`` (token ``V`` is the
    mask, never predicted)."""

    def __init__(self, vocab: int, length: int, seed: int = 0, scale: float = 1.5):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.vocab = vocab
        self.W = torch.nn.Parameter(scale * torch.randn(length, vocab, generator=g, dtype=torch.float64))
        U = scale * torch.randn(length, length, vocab, vocab, generator=g, dtype=torch.float64)
        U[torch.arange(length), torch.arange(length)] = 0  # a position does not read its own token
        self.U = torch.nn.Parameter(U)

    @property
    def device(self):
        return self.W.device

    @property
    def dtype(self):
        return self.W.dtype

    def forward(self, input_ids):
        visible = torch.nn.functional.one_hot(input_ids, self.vocab + 1)[..., : self.vocab].to(self.W.dtype)
        logits = self.W + torch.einsum("bjc,ljcv->blv", visible, self.U)
        return MaskedLMOutput(logits=torch.cat([logits, torch.full_like(logits[..., :1], -1e9)], dim=-1))

    @torch.no_grad()
    def exact_law(self) -> np.ndarray:
        """The law of exact FHS over all ``V^L`` sequences (lexicographic order): the mean over decoding orders of
        the product of the conditionals along the order."""
        length, vocab = self.W.shape
        outcomes = np.array(list(itertools.product(range(vocab), repeat=length)))
        cache = {}

        def conditional(state):
            if state not in cache:
                ids = torch.tensor([[vocab if s is None else s for s in state]])
                cache[state] = torch.softmax(self.forward(ids).logits[0, :, :vocab], -1).numpy()
            return cache[state]

        law = np.zeros(len(outcomes))
        orders = list(itertools.permutations(range(length)))
        for order in orders:
            for i, x in enumerate(outcomes):
                state, p = [None] * length, 1.0
                for pos in order:
                    p *= conditional(tuple(state))[pos, x[pos]]
                    state[pos] = int(x[pos])
                law[i] += p / len(orders)
        return law


@torch.no_grad()
def block_refinement_sample(model, scheduler: BlockRefinementScheduler, num_samples: int, length: int, calls: int,
                            mask_token_id: int, generator: torch.Generator):
    """Diffusers' ``BlockRefinementScheduler`` in mask-token mode, one block holding the whole sequence, stepped as
    ``LLaDA2Pipeline`` steps it (step indices 0, 1, ...; the mask token gets no probability). Returns the sequences
    and the network calls made."""
    sample = torch.full((num_samples, length), mask_token_id)
    scheduler.set_timesteps(calls, block_length=length)
    nfe = 0
    for step_index in range(calls):
        if not (sample == mask_token_id).any():
            break
        logits = model(sample).logits.clone()
        logits[..., mask_token_id] = -math.inf
        nfe += 1
        sample = scheduler.step(logits, step_index, sample, mask_token_id=mask_token_id, temperature=1.0,
                                sampling_method="multinomial", generator=generator).prev_sample
    return sample, nfe


def samplers(length: int, calls: int) -> dict:
    """The samplers compared at ``calls`` network calls: name -> scheduler."""
    found = {}
    if calls == length:
        found["FHS exact"] = FirstHittingScheduler()
    else:
        found["FHS parallel, first order"] = FirstHittingScheduler()
        found["FHS parallel, extrapolation"] = FirstHittingScheduler(parallel_solver="extrapolation")
    found["ancestral (MDLM)"] = AncestralMaskedScheduler()
    # threshold 1.0: commit exactly the scheduled number of tokens a step (never more), so the calls are equal
    found["BlockRefinementScheduler (Diffusers)"] = BlockRefinementScheduler(block_length=length,
                                                                             num_inference_steps=calls, threshold=1.0)
    return found


def law_of(sequences: torch.Tensor, vocab: int) -> np.ndarray:
    weights = vocab ** torch.arange(sequences.shape[1] - 1, -1, -1)
    index = (sequences * weights).sum(1)
    return np.bincount(index.numpy(), minlength=vocab ** sequences.shape[1]) / len(index)


def entropy(law: np.ndarray) -> float:
    law = law[law > 0]
    return float(-(law * np.log(law)).sum())


def run(length=5, vocab=3, samples=20000, seeds=(0, 1, 2, 3, 4), budgets=None, model_seed=0, write=True,
        raw_dir=None):
    started = time.time()
    torch.manual_seed(model_seed)
    model = ContextTableDenoiser(vocab, length, seed=model_seed).eval()
    exact = model.exact_law()
    # the budgets at which FHS's k tokens per call make exactly N calls (N = ceil(L / k)), one call excepted
    budgets = budgets or sorted({math.ceil(length / k) for k in range(1, length)} | {length})
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=None, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    template = torch.full((length,), vocab)
    metrics, arms = {}, {}
    for calls in budgets:
        for name, scheduler in samplers(length, calls).items():
            arm = f"{name} @ {calls} calls"
            arms[arm] = {"sampler": name, "calls": calls}
            values = metrics.setdefault(arm, {"tv_to_exact": [], "entropy": [], "nfe": [], "wall_s": [],
                                              "ms_per_token": []})
            for seed in seeds:
                generator = torch.Generator().manual_seed(seed)
                begin = time.perf_counter()
                if isinstance(scheduler, BlockRefinementScheduler):
                    sequences, nfe = block_refinement_sample(model, scheduler, samples, length, calls, vocab, generator)
                else:
                    pipe.scheduler = scheduler
                    out = pipe(input_ids=template, num_samples=samples, mask_token_id=vocab, output_type="pt",
                               num_inference_steps=calls, use_cache=False, generator=generator)
                    sequences, nfe = out.sequences, out.nfe
                wall = time.perf_counter() - begin
                law = law_of(sequences, vocab)
                values["tv_to_exact"].append(0.5 * float(np.abs(law - exact).sum()))
                values["entropy"].append(entropy(law))
                values["nfe"].append(nfe)
                values["wall_s"].append(wall)
                values["ms_per_token"].append(1000 * wall / (samples * length))
            print(f"{arm:55s} TV {interval(values['tv_to_exact']).format(3)}  "
                  f"H {interval(values['entropy']).format(3)}", flush=True)
    settings = {"length": length, "vocab": vocab, "samples_per_seed": samples, "budgets": budgets,
                "model": f"ContextTableDenoiser(vocab={vocab}, length={length}, seed={model_seed}, scale=1.5)",
                "exact_entropy": entropy(exact), "arms": arms, "use_cache": False,
                "block_refinement": {"threshold": 1.0, "sampling_method": "multinomial", "temperature": 1.0,
                                     "block_length": length}}
    if write:
        path = write_record("masked_diffusion", "bench_discrete_samplers", seeds=list(seeds), metrics=metrics,
                            settings=settings, started=started, raw_dir=raw_dir)
        print(f"wrote {path}")
    return metrics, settings


def table(record: dict) -> str:
    """The Markdown table of a record this script wrote (what ``docs/results/masked_diffusion.md`` shows)."""
    settings = record["settings"]
    lines = [f"| sampler | network calls | TV to the exact law | entropy (nats; exact {settings['exact_entropy']:.3f}) "
             "| calls made | ms per token |", "|---|---|---|---|---|---|"]
    for arm, values in record["metrics"].items():
        info = settings["arms"][arm]
        lines.append(f"| {info['sampler']} | {info['calls']} | {interval(values['tv_to_exact']).format(3)} | "
                     f"{interval(values['entropy']).format(3)} | {np.mean(values['nfe']):g} | "
                     f"{interval(values['ms_per_token']).format(4)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20000, help="sequences per seed and sampler")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=int, nargs="+", default=None, help="network calls compared")
    parser.add_argument("--render", metavar="RECORD", help="print the Markdown table of a record instead of running")
    args = parser.parse_args()
    if args.render:
        from hfgen.results import read_record

        print(table(read_record(args.render)))
        return
    run(args.length, args.vocab, args.samples, tuple(args.seeds), args.budgets)


if __name__ == "__main__":
    main()
