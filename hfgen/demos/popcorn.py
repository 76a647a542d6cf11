"""LLMPopcorn demo: does prompt enhancement (retrieved popular / unpopular references + chain of thought)
raise the predicted popularity of an LLM's micro-video plans? (the paper's RQ2)

One run, all offline, on the leak-free split ([`hfgen.data.microlens.split_microlens`]): a synthetic
MicroLens-style table is split by video into a retrieval pool (the only videos the prompt enhancement may
retrieve), the popularity regressor's training set and a held-out set. The MMRA-style regressor trains with
``transformers.Trainer`` on its part only (nMSE / Spearman / MAE on the held-out videos) -> each query is
planned with the same local LM, basic vs enhanced prompt (references from the pool) -> each plan is rendered
as a prompt-following generator would ([`hfgen.data.microlens.render_plan`]) -> predicted popularity.

The local LM is [`~hfgen.testing.scripted_lm.ExtractiveLM`], a deterministic stand-in for an
instruction LLM (none can be downloaded here): it only copies words from its prompt. The demo therefore
checks the mechanism (retrieval brings popular videos' vocabulary into the context, and the regressor,
trained on real-style data, rewards it), not how well a real LLM uses it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

QUERIES = (
    "Show the best boss battle of this year's games",
    "Film a street food tour with spicy noodles",
    "Teach a puppy a new trick at home",
    "Capture a beach sunset on a road trip",
    "Show an anime opening recreated by fans",
    "Film a basketball dunk practice session",
    "Make a cake decorating video for beginners",
    "Show a minecraft build from start to finish",
)


def train_regressor(table, output_dir: Path, epochs: int = 12, num_retrieved: int = 0, seed: int = 0,
                    learning_rate: float = 2e-3, test_fraction: float = 0.2, eval_table=None):
    """Train the popularity regressor on ``table`` (title encoder: the packaged MiniLM, frozen, when installed;
    else a tiny BERT over the table's words); returns (model, tokenizer, memory, held-out metrics).

    ``eval_table``: the held-out videos (e.g. ``split_microlens(...)["popularity_eval"]``); when ``None``, a
    random ``test_fraction`` of ``table`` is held out. The MMRA memory (``num_retrieved > 0``) is the training
    set only. The metrics also hold the held-out ``predictions`` and ``labels``."""
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from hfgen.data.text import word_tokenizer
    from hfgen.pipelines.popcorn.modeling_popularity import PopularityCollator, PopularityModel, compute_metrics
    from hfgen.pipelines.popcorn.retrieval import PopularityRetriever, minilm_path
    from hfgen.testing.tiny_models import tiny_popularity_config

    if eval_table is None:
        split = table.train_test_split(test_size=max(2, int(len(table) * test_fraction)), seed=seed)
    else:
        split = {"train": table, "test": eval_table}
    train = split["train"].add_column("memory_index", list(range(len(split["train"]))))
    labels = np.asarray(train["log_popularity"])
    size = np.asarray(table[0]["cover"]).shape[0]
    torch.manual_seed(seed)
    config = tiny_popularity_config(1, image_size=size, num_frames=len(table[0]["frames"]), num_retrieved=num_retrieved,
                                    label_mean=float(labels.mean()), label_std=float(labels.std()))
    if minilm_path() is not None:  # frozen pretrained title features, as MMRA's (AnglE-BERT there)
        tok = AutoTokenizer.from_pretrained(minilm_path())
        config_kwargs = {k: getattr(config, k) for k in ("feature_dim", "num_frames", "num_retrieved", "mlp_dims",
                                                         "label_mean", "label_std")}
        model = PopularityModel.with_pretrained_text_encoder(minilm_path(), vision_config=config.vision_config.to_dict(),
                                                             **config_kwargs)
    else:
        tok = word_tokenizer(table["title_en"])
        config.text_config.vocab_size = len(tok)
        model = PopularityModel(config)
    config = model.config
    memory = PopularityRetriever(train, embedder="tfidf") if num_retrieved else None
    args = TrainingArguments(output_dir=str(output_dir / "regressor"), per_device_train_batch_size=16, num_train_epochs=epochs,
                             learning_rate=learning_rate, report_to=[], save_strategy="no", logging_strategy="epoch",
                             remove_unused_columns=False, seed=seed)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=PopularityCollator(tok, config, memory),
                      compute_metrics=compute_metrics)
    trainer.train()
    out = trainer.predict(split["test"])
    metrics = {k: out.metrics[f"test_{k}"] for k in ("nmse", "spearman", "mae")}
    metrics.update(predictions=np.asarray(out.predictions).reshape(-1), labels=np.asarray(out.label_ids).reshape(-1))
    return trainer.model.eval(), tok, memory, metrics


def plan_and_score(queries, table, model, tok, memory, enhanced: bool, num_references: int = 5, seed: int = 0,
                   embedder=None, llm=None):
    """Plan each query with ``llm`` (default: the extractive local LM), basic or RAG + CoT prompt, with references
    retrieved from ``table``; render and score the plans.
    ``embedder``: the retrieval embedder (``None``: MiniLM when installed, else TF-IDF)."""
    import torch

    from hfgen.data.microlens import render_plan
    from hfgen.pipelines.popcorn import PopcornPipeline, PopularityRetriever, TransformersLLM
    from hfgen.pipelines.popcorn.modeling_popularity import PopularityCollator
    from hfgen.testing.scripted_lm import ExtractiveLM, ExtractiveLMConfig, byte_tokenizer

    if llm is None:
        llm = TransformersLLM(ExtractiveLM(ExtractiveLMConfig()), byte_tokenizer(), do_sample=False, max_new_tokens=400)
    pipe = PopcornPipeline(llm=llm, retriever=PopularityRetriever(table, embedder=embedder))
    out = pipe(list(queries), use_retrieval=enhanced, use_chain_of_thought=enhanced, num_references=num_references)
    size = np.asarray(table[0]["cover"]).shape[0]
    rows, expected = [], []
    for i, plan in enumerate(out.plans):
        cover, frames, exp = render_plan(plan.title, plan.cover_prompt, plan.video_prompt, len(table[0]["frames"]), size, seed + i)
        rows.append({"title_en": plan.title, "caption_en": plan.video_prompt, "cover": cover, "frames": frames})
        expected.append(exp)
    with torch.no_grad():
        predicted = model(**PopularityCollator(tok, model.config, memory)(rows)).logits.numpy()
    return out.plans, rows, predicted, np.asarray(expected)


def save_examples_figure(path: Path, queries, basic_rows, enhanced_rows, basic_pred, enhanced_pred, n: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(queries))
    f = len(basic_rows[0]["frames"])
    fig, axes = plt.subplots(2 * n, 1 + f, figsize=(1.3 * (1 + f) + 0.5, 2.1 * n), squeeze=False)
    for q in range(n):
        for r, (rows, pred, name) in enumerate(((basic_rows, basic_pred, "basic"), (enhanced_rows, enhanced_pred, "RAG+CoT"))):
            ax_row = axes[2 * q + r]
            for j, im in enumerate([rows[q]["cover"], *rows[q]["frames"]]):
                ax_row[j].imshow(im)
                ax_row[j].axis("off")
            ax_row[0].set_title(f"{name}: {rows[q]['title_en'][:34]}\npredicted log2 = {pred[q]:.2f}", fontsize=6, loc="left")
    fig.suptitle("LLMPopcorn plans rendered (cover | frames)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(output_dir, seed: int = 0):
    from transformers import set_seed

    from hfgen.data.microlens import make_synthetic_microlens, split_microlens
    from hfgen.demos import DemoResult

    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    table = make_synthetic_microlens(num_videos=320, num_frames=2, image_size=16, seed=seed)
    parts = split_microlens(table, seed=seed)  # no video both retrievable and in the regressor's training set
    model, tok, memory, metrics = train_regressor(parts["popularity_train"], output_dir, epochs=12, seed=seed,
                                                  eval_table=parts["popularity_eval"])
    from hfgen.pipelines.popcorn.retrieval import default_embedder

    embedder = default_embedder()
    pool = parts["retrieval_pool"]
    basic = plan_and_score(QUERIES, pool, model, tok, memory, enhanced=False, seed=seed, embedder=embedder)
    enhanced = plan_and_score(QUERIES, pool, model, tok, memory, enhanced=True, seed=seed, embedder=embedder)
    fig = output_dir / "popcorn_examples.png"
    save_examples_figure(fig, QUERIES, basic[1], enhanced[1], basic[2], enhanced[2])
    return DemoResult(
        method="popcorn",
        claim="paper: RAG + chain-of-thought prompting raises the predicted popularity of an LLM's micro-video plans (RQ2)",
        metric="mean predicted log2(1 + comments) of the plans (higher is better)",
        baseline_name="basic prompt",
        baseline_value=float(basic[2].mean()),
        method_value=float(enhanced[2].mean()),
        higher_is_better=True,
        seconds=time.perf_counter() - start,
        figures=[str(fig)],
        details={"split_sizes": {name: len(part) for name, part in parts.items()}, "regressor_heldout": {k: metrics[k] for k in ("nmse", "spearman", "mae")}, "rule_expected_basic": float(basic[3].mean()),
                 "rule_expected_enhanced": float(enhanced[3].mean()),
                 "titles_basic": [p.title for p in basic[0]], "titles_enhanced": [p.title for p in enhanced[0]],
                 "local_lm": "ExtractiveLM (deterministic stand-in that copies words from its prompt)"},
    )
