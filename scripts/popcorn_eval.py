"""LLMPopcorn experiment: train the popularity regressor on a MicroLens-style table (nMSE / Spearman / MAE),
then compare basic vs enhanced (RAG + CoT) prompting with the same LLM on the predicted popularity of the
generated plans. Writes ``docs/results/popcorn.md`` and ``docs/figures/popcorn_examples.png``.

    python scripts/popcorn_eval.py                      # synthetic table (seeded), local extractive LM
    python scripts/popcorn_eval.py --table microlens.csv --covers-dir covers/ --frames-dir frames/

On the synthetic table the rule's expected log2 popularity of each rendered plan is reported next to the
regressor's prediction (the ground truth of that world).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(num_videos: int = 320, epochs: int = 15, num_retrieved: int = 0, seed: int = 0, num_queries: int = 8,
         table: str | None = None, covers_dir: str | None = None, frames_dir: str | None = None,
         results: Path = ROOT / "docs/results/popcorn.md", figure: Path = ROOT / "docs/figures/popcorn_examples.png",
         work_dir: Path = Path("/tmp/popcorn_eval")) -> dict:
    from transformers import set_seed

    from hfgen.data.microlens import load_microlens, make_synthetic_microlens
    from hfgen.demos.popcorn import QUERIES, plan_and_score, save_examples_figure, train_regressor
    from hfgen.pipelines.popcorn.retrieval import default_embedder

    start = time.perf_counter()
    set_seed(seed)
    if table:
        data = load_microlens(table, covers_dir=covers_dir, frames_dir=frames_dir, num_frames=4)
        name = Path(table).name
    else:
        data = make_synthetic_microlens(num_videos=num_videos, num_frames=2, image_size=16, seed=seed)
        name = f"synthetic MicroLens ({num_videos} videos, seed {seed})"
    model, tok, memory, metrics = train_regressor(data, work_dir, epochs=epochs, num_retrieved=num_retrieved, seed=seed)
    embedder = default_embedder()
    queries = QUERIES[:num_queries]
    basic = plan_and_score(queries, data, model, tok, memory, enhanced=False, seed=seed, embedder=embedder)
    enhanced = plan_and_score(queries, data, model, tok, memory, enhanced=True, seed=seed, embedder=embedder)
    figure.parent.mkdir(parents=True, exist_ok=True)
    save_examples_figure(figure, queries, basic[1], enhanced[1], basic[2], enhanced[2])
    summary = {"metrics": metrics, "basic_pred": float(basic[2].mean()), "enhanced_pred": float(enhanced[2].mean()),
               "basic_rule": float(basic[3].mean()), "enhanced_rule": float(enhanced[3].mean()),
               "wins": int((enhanced[2] > basic[2]).sum()), "n": len(queries), "seconds": time.perf_counter() - start}
    lines = [
        "# LLMPopcorn (popcorn)", "",
        f"Command: `python scripts/popcorn_eval.py` (num_videos={num_videos}, epochs={epochs}, num_retrieved={num_retrieved}, "
        f"seed={seed}, queries={len(queries)}); data: {name}; embedder: {type(embedder).__name__}; "
        f"{summary['seconds']:.0f} s on 2 shared CPU cores.", "",
        "## Popularity regressor (MMRA-style, held-out 20 %)", "",
        "| nMSE | Spearman | MAE |", "|---|---|---|",
        f"| {metrics['nmse']:.3f} | {metrics['spearman']:.3f} | {metrics['mae']:.3f} |", "",
        "## Basic vs enhanced prompting (same LLM: the local ExtractiveLM stand-in)", "",
        "| prompt | mean predicted log2(1+comments) | mean rule log2 (synthetic ground truth) |", "|---|---|---|",
        f"| basic | {summary['basic_pred']:.3f} | {summary['basic_rule']:.3f} |",
        f"| RAG + CoT | {summary['enhanced_pred']:.3f} | {summary['enhanced_rule']:.3f} |", "",
        f"Enhanced beats basic on {summary['wins']} of {len(queries)} queries (predicted). Figure: "
        "`docs/figures/popcorn_examples.png` (plans rendered as a prompt-following generator would).", "",
        "Reading: the LLM here is a deterministic extractive stand-in (no instruction LLM can be downloaded in this "
        "environment), so the comparison checks the mechanism of RQ2 (retrieval brings popular videos' vocabulary "
        "and looks into the plan; a regressor trained on the table rewards it), not a real LLM's use of the "
        "references. The regressor is imperfect (nMSE above), so predicted and rule "
        "gains differ; on the synthetic table the rule's column is the ground truth.", "",
    ]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines))
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-videos", type=int, default=320)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--num-retrieved", type=int, default=0, help="MMRA neighbours K (0: no retrieval branch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-queries", type=int, default=8)
    p.add_argument("--table", default=None, help="real MicroLens-style table (by path)")
    p.add_argument("--covers-dir", default=None)
    p.add_argument("--frames-dir", default=None)
    a = p.parse_args()
    main(a.num_videos, a.epochs, a.num_retrieved, a.seed, a.num_queries, a.table, a.covers_dir, a.frames_dir)
