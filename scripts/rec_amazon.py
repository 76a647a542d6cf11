"""IISAN on real data: Amazon "Musical Instruments" (the IISAN papers' Instrument set), titles only.

    python scripts/rec_amazon.py --data ../shared/data/amazon-instruments

Text backbone: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384-d; all 7 hidden states kept,
masked-mean pooling, as the sentence model was trained). Methods, all with the same SASRec
recommender, in-batch loss, data and evaluation (leave-one-out, full ranking, history masked):

- IISAN (cached): the side network on hidden states computed once per item;
- frozen features: a projection of the frozen last-layer feature (same cache, last layer only);
- SASRec (ID): the classic ID-embedding SASRec;
- IISAN (uncached), LoRA (r=8 on query/value), full fine-tuning: time and memory per step are
  measured in this run; training them to convergence with MiniLM on 2 shared CPU cores is out of
  reach, so their quality is not reported (IISAN uncached equals IISAN cached in eval mode, which
  ``tests/test_iisan.py`` proves).

Quality: the test HR@10 / NDCG@10 at the epoch with the best validation HR@10 (the official protocol),
mean and spread over seeds. Writes ``docs/results/iisan.md`` and ``docs/figures/iisan_amazon.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModel, TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from hfgen.trainers.sequential_rec import (  # noqa: E402
    SequentialRecCollator,
    SequentialRecConfig,
    SequentialRecommender,
    SequentialRecTrainer,
)
from iisan_common import measure_training_step, minilm_path, tokenize_titles  # noqa: E402

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, IISANConfig, IISANModel  # noqa: E402
from hfgen.data.recommendation import load_recommendation_data  # noqa: E402
from hfgen.metrics.ranking import tpme  # noqa: E402
from hfgen.models import SASRecConfig, SASRecModel  # noqa: E402


class EpochTimer(TrainerCallback):
    """Training seconds per epoch (evaluation excluded) and the metrics of every evaluation."""

    def __init__(self):
        self.epoch_seconds, self.evals = [], []

    def on_epoch_begin(self, args, state, control, **kw):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kw):
        self.epoch_seconds.append(time.perf_counter() - self._start)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self.evals.append(dict(metrics))


def train_and_test(item_encoder, splits, popularity, num_items, seed, a) -> dict:
    torch.manual_seed(seed)
    rec = SASRecModel(SASRecConfig(max_seq_len=a.max_seq_len, num_items=0 if item_encoder else num_items))
    timer = EpochTimer()
    args = SequentialRecConfig(output_dir=tempfile.mkdtemp(), num_train_epochs=a.epochs, seed=seed,
                               per_device_train_batch_size=a.batch_size, learning_rate=a.lr,
                               adapter_learning_rate=a.lr, max_seq_len=a.max_seq_len, eval_strategy="epoch",
                               save_strategy="no", logging_strategy="no", disable_tqdm=True)
    trainer = SequentialRecTrainer(rec, item_encoder, args, splits["train"],
                                   {"valid": splits["validation"], "test": splits["test"]},
                                   item_popularity=popularity, callbacks=[timer])
    trainer.train()
    best = max(timer.evals, key=lambda m: m["eval_valid_hr@10"])
    params = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {"hr@10": best["eval_test_hr@10"], "ndcg@10": best["eval_test_ndcg@10"],
            "epoch_seconds": statistics.median(timer.epoch_seconds), "trainable_params": params}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="Folder with items.tsv and users.tsv.")
    p.add_argument("--users", type=int, default=1000, help="Random subset of users (0: all).")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-seq-len", type=int, default=10)
    p.add_argument("--title-len", type=int, default=20, help="Title tokens (the papers use 30).")
    p.add_argument("--timing-steps", type=int, default=2, help="Timed steps (after one warm-up) per method.")
    p.add_argument("--timing-batch-size", type=int, default=8, help="Users per timed step (all methods alike).")
    p.add_argument("--backbone", default=None, help="Text encoder folder (default: the local MiniLM).")
    p.add_argument("--out-md", default="docs/results/iisan.md")
    p.add_argument("--out-fig", default="docs/figures/iisan_amazon.png")
    a = p.parse_args(argv)
    t0 = time.perf_counter()

    data = load_recommendation_data(a.data)
    if a.users:
        data = data.subset(a.users, seed=0)
    splits = data.leave_one_out(a.max_seq_len)
    popularity = data.popularity()
    path = a.backbone or minilm_path()
    text = tokenize_titles(data.titles, path, a.title_len)
    backbone = AutoModel.from_pretrained(path)
    print(f"{len(data.sequences)} users, {data.num_items - 1} items, skipped {data.num_skipped_interactions} "
          f"interactions of unknown items and {data.num_skipped_users} short users", flush=True)

    iisan_cfg = IISANConfig(modalities=["text"], layers="all", pooling="mean")
    proto = IISANModel(copy.deepcopy(iisan_cfg), {"text": backbone})
    proto.set_item_inputs({"text": text})
    start = time.perf_counter()
    cache = proto.cache_hidden_states(batch_size=128)
    cache_seconds = time.perf_counter() - start
    print(f"cached {data.num_items} items in {cache_seconds:.0f}s", flush=True)

    def cached_iisan():  # built without the backbone: the trained part never needs it
        model = IISANModel(copy.deepcopy(proto.config))
        model.cache = cache
        return model

    def frozen_features():
        cfg = BackboneItemEncoderConfig(modalities=["text"], layers="last", pooling="mean", tuning="frozen",
                                        hidden_sizes=dict(proto.config.hidden_sizes),
                                        num_hidden_layers=dict(proto.config.num_hidden_layers),
                                        encoder_fingerprints=dict(proto.config.encoder_fingerprints))
        model = BackboneItemEncoder(cfg)
        model.cache = {"text": cache["text"][:, -1:]}  # the last kept layer of "all" is the last layer
        return model

    quality = {"IISAN (cached)": cached_iisan, "Frozen features": frozen_features, "SASRec (ID)": lambda: None}
    results = {}
    for name, build in quality.items():
        runs = [train_and_test(build(), splits, popularity, data.num_items, s, a) for s in a.seeds]
        results[name] = {k: [r[k] for r in runs] for k in runs[0]}
        print(name, json.dumps({k: [round(x, 4) for x in v] for k, v in results[name].items()}), flush=True)

    # ---- time and memory per training step, every method on the same batches
    collate = SequentialRecCollator()
    batches = [collate([splits["train"][i] for i in range(j * a.timing_batch_size, (j + 1) * a.timing_batch_size)])
               for j in range(a.timing_steps + 1)]

    def with_backbone(tuning):
        bb = AutoModel.from_pretrained(path)
        if tuning == "iisan":
            enc = IISANModel(copy.deepcopy(iisan_cfg), {"text": bb})
        else:
            enc = BackboneItemEncoder(BackboneItemEncoderConfig(modalities=["text"], layers="last", pooling="mean",
                                                                tuning=tuning), {"text": bb})
        enc.set_item_inputs({"text": text})
        return enc

    timed = {"IISAN (cached)": cached_iisan, "IISAN (uncached)": lambda: with_backbone("iisan"),
             "Frozen features": frozen_features, "LoRA": lambda: with_backbone("lora"),
             "Full fine-tuning": lambda: with_backbone("full")}
    steps_per_epoch = -(-len(splits["train"]) // a.batch_size)
    cost = {}
    for name, build in timed.items():
        torch.manual_seed(0)
        model = SequentialRecommender(SASRecModel(SASRecConfig(max_seq_len=a.max_seq_len)), build())
        m = measure_training_step(model, batches)
        # an epoch at the quality runs' batch size: step time scales with the items per step
        m["epoch_seconds_est"] = m["step_seconds"] * steps_per_epoch * a.batch_size / a.timing_batch_size
        cost[name] = m
        print(name, json.dumps({k: round(v, 4) for k, v in m.items()}), flush=True)
    scores = tpme([cost[n]["epoch_seconds_est"] for n in timed], [cost[n]["trainable_params"] for n in timed],
                  [cost[n]["memory_bytes"] for n in timed])
    for n, s in zip(timed, scores):
        cost[n]["tpme"] = s

    settings = {k: v for k, v in vars(a).items() if k not in ("out_md", "out_fig")}
    settings.update(users_kept=len(data.sequences), items=data.num_items - 1, cache_seconds=round(cache_seconds, 1),
                    cache_mb=round(sum(t.numel() * t.element_size() for t in cache.values()) / 2**20, 1),
                    steps_per_epoch=steps_per_epoch, total_seconds=round(time.perf_counter() - t0))
    write_report(a, results, cost, settings)
    return {"quality": results, "cost": cost, "settings": settings}


def _ms(xs) -> str:
    return f"{100 * statistics.mean(xs):.2f} ± {100 * (statistics.stdev(xs) if len(xs) > 1 else 0):.2f}"


def write_report(a, results, cost, settings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = cost["Full fine-tuning"]
    lines = [
        "## IISAN on Amazon Musical Instruments (titles, MiniLM-L6 text backbone)",
        "",
        "Produced by `python scripts/rec_amazon.py --data ../shared/data/amazon-instruments` "
        f"(settings: `{json.dumps(settings)}`). Leave-one-out, full ranking over all items with the history "
        "masked; test metrics at the epoch of best validation HR@10; mean ± std over seeds "
        f"{a.seeds}; metrics ×100.",
        "",
        "| method | HR@10 | NDCG@10 | trainable params | s / epoch (training) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {_ms(r['hr@10'])} | {_ms(r['ndcg@10'])} | {r['trainable_params'][0]:,} | "
                     f"{statistics.mean(r['epoch_seconds']):.2f} |")
    lines += [
        "",
        f"Cost of one training step on the same {a.timing_batch_size}-user batches (median of {a.timing_steps} "
        "steps after a warm-up), extrapolated to an epoch of the runs above; memory = weights held + gradients and "
        "Adam moments of trainable weights + activations saved for backward (device-independent). TPME: paper "
        "Eq. 6-10, α = (0.45, 0.1, 0.45), lower is better.",
        "",
        "| method | s / step | est. s / epoch | time vs FFT | memory (MB) | memory vs FFT | trainable params | TPME |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in cost.items():
        lines.append(f"| {name} | {c['step_seconds']:.3f} | {c['epoch_seconds_est']:.1f} | "
                     f"{ref['step_seconds'] / c['step_seconds']:.1f}× faster | {c['memory_bytes'] / 2**20:.1f} | "
                     f"{c['memory_bytes'] / ref['memory_bytes']:.3f} | {c['trainable_params']:,} | {c['tpme']:.3f} |")
    Path(a.out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out_md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    names = list(results)
    ax[0].bar(names, [100 * statistics.mean(results[n]["hr@10"]) for n in names],
              yerr=[100 * (statistics.stdev(results[n]["hr@10"]) if len(a.seeds) > 1 else 0) for n in names])
    ax[0].set_ylabel("test HR@10 (×100)")
    cn = list(cost)
    ax[1].bar(cn, [cost[n]["epoch_seconds_est"] for n in cn])
    ax[1].set_yscale("log")
    ax[1].set_ylabel("est. training s / epoch")
    ax[2].bar(cn, [cost[n]["memory_bytes"] / 2**20 for n in cn])
    ax[2].set_yscale("log")
    ax[2].set_ylabel("training memory (MB)")
    for x in ax:
        x.tick_params(axis="x", rotation=30, labelsize=7)
    fig.suptitle("IISAN vs baselines, Amazon Instruments, MiniLM-L6 (CPU)")
    fig.tight_layout()
    Path(a.out_fig).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out_fig, dpi=80)


if __name__ == "__main__":
    main()
