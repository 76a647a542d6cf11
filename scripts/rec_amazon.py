"""IISAN on real data: Amazon "Musical Instruments" (the IISAN papers' Instrument set), titles only.

    python scripts/rec_amazon.py --data ../shared/data/amazon-instruments                # CPU: cheap methods
    python scripts/rec_amazon.py --data DIR --device cuda --methods all --backbone DIR   # every method (GPU)

Text backbone: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384-d; all 7 hidden states kept,
masked-mean pooling, as the sentence model was trained). Methods, all with the same SASRec
recommender, in-batch loss, data and evaluation (leave-one-out, full ranking, history masked):

- ``iisan``: IISAN (cached), the side network on hidden states computed once per item;
- ``iisan-uncached``: the same side network with the backbone run (without gradients) every step;
- ``frozen``: a projection of the frozen last-layer feature (same cache, last layer only);
- ``lora``: LoRA (r=8 on query/value, official lr 4e-4) on the backbone, last-layer feature;
- ``fft``: full fine-tuning of the backbone (official text lr 5e-5), last-layer feature;
- ``id``: the classic ID-embedding SASRec.

Quality: the test HR@10 / NDCG@10 at the epoch with the best validation HR@10 (the official protocol),
mean and spread over seeds; training seconds per epoch and (on CUDA) the peak GPU memory of each run.
Cost: time per training step of every method on the same batches, and the device-independent training
memory (weights + gradients and Adam moments + saved activations). Results are also written as JSON
after every run (``--json-out``), so a run cut short keeps what it finished. Writes
``docs/results/iisan.md`` and ``docs/figures/iisan_amazon.png``.
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
from iisan_common import measure_training_step, minilm_path, tokenize_titles  # noqa: E402

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, IISANConfig, IISANModel  # noqa: E402
from hfgen.data.recommendation import load_recommendation_data  # noqa: E402
from hfgen.metrics.ranking import tpme  # noqa: E402
from hfgen.models import SASRecConfig, SASRecModel  # noqa: E402
from hfgen.trainers.sequential_rec import (  # noqa: E402
    SequentialRecCollator,
    SequentialRecConfig,
    SequentialRecommender,
    SequentialRecTrainer,
)

METHODS = {"iisan": "IISAN (cached)", "iisan-uncached": "IISAN (uncached)", "frozen": "Frozen features",
           "lora": "LoRA", "fft": "Full fine-tuning", "id": "SASRec (ID)"}
CHEAP = ["iisan", "frozen", "id"]


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class EpochTimer(TrainerCallback):
    """Training seconds per epoch (evaluation excluded) and the metrics of every evaluation."""

    def __init__(self):
        self.epoch_seconds, self.evals = [], []

    def on_epoch_begin(self, args, state, control, **kw):
        _sync()
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kw):
        _sync()
        self.epoch_seconds.append(time.perf_counter() - self._start)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self.evals.append(dict(metrics))


def train_and_test(item_encoder, splits, popularity, num_items, seed, a, backbone_lr=None) -> dict:
    torch.manual_seed(seed)
    rec = SASRecModel(SASRecConfig(max_seq_len=a.max_seq_len, num_items=0 if item_encoder else num_items))
    timer = EpochTimer()
    args = SequentialRecConfig(output_dir=tempfile.mkdtemp(), num_train_epochs=a.epochs, seed=seed,
                               per_device_train_batch_size=a.batch_size, learning_rate=a.lr,
                               adapter_learning_rate=a.lr, backbone_learning_rate=backbone_lr,
                               max_seq_len=a.max_seq_len, eval_strategy="epoch", save_strategy="no",
                               logging_strategy="no", disable_tqdm=True, use_cpu=a.device == "cpu")
    trainer = SequentialRecTrainer(rec, item_encoder, args, splits["train"],
                                   {"valid": splits["validation"], "test": splits["test"]},
                                   item_popularity=popularity, callbacks=[timer])
    if torch.cuda.is_available() and a.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    best = max(timer.evals, key=lambda m: m["eval_valid_hr@10"])
    params = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and a.device != "cpu" else None
    return {"hr@10": best["eval_test_hr@10"], "ndcg@10": best["eval_test_ndcg@10"],
            "best_epoch": 1 + timer.evals.index(best), "epoch_seconds": statistics.median(timer.epoch_seconds),
            "trainable_params": params, "peak_gpu_bytes": peak}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="Folder with items.tsv and users.tsv (required unless --report-from).")
    p.add_argument("--users", type=int, default=1000, help="Random subset of users (0: all).")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=CHEAP, choices=[*METHODS, "all"],
                   help="Methods trained to convergence for the quality table ('all': every method).")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Recommender and side-adapter/projection learning rate.")
    p.add_argument("--fft-lr", type=float, default=5e-5, help="Backbone learning rate of full fine-tuning (official).")
    p.add_argument("--lora-lr", type=float, default=4e-4, help="LoRA weights' learning rate (official).")
    p.add_argument("--max-seq-len", type=int, default=10)
    p.add_argument("--title-len", type=int, default=20, help="Title tokens (the papers use 30).")
    p.add_argument("--timing-steps", type=int, default=2, help="Timed steps (after one warm-up) per method.")
    p.add_argument("--timing-batch-size", type=int, default=8, help="Users per timed step (all methods alike).")
    p.add_argument("--backbone", default=None, help="Text encoder folder (default: the local MiniLM).")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json-out", default=None, help="Write the results so far here after every run.")
    p.add_argument("--report-from", nargs="+", default=None,
                   help="Only write the report, from --json-out files (quality runs of later files are appended, "
                        "e.g. more seeds; the cost table is the first file's).")
    p.add_argument("--out-md", default="docs/results/iisan.md")
    p.add_argument("--out-fig", default="docs/figures/iisan_amazon.png")
    a = p.parse_args(argv)
    if a.report_from:
        record, *more = [json.loads(Path(f).read_text()) for f in a.report_from]
        for extra in more:
            for name, runs in extra["quality"].items():
                for k, v in runs.items():
                    record["quality"].setdefault(name, {}).setdefault(k, []).extend(v)
            record["settings"]["seeds"] = sorted(set(record["settings"]["seeds"]) | set(extra["settings"]["seeds"]))
        for k in ("seeds", "timing_steps", "timing_batch_size"):
            setattr(a, k, record["settings"][k])
        write_report(a, record)
        return record
    methods = list(METHODS) if "all" in a.methods else a.methods
    if not a.data:
        raise ValueError("`--data` is required (a folder with items.tsv and users.tsv).")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`--device cuda` was given but CUDA is not available.")
    t0 = time.perf_counter()

    data = load_recommendation_data(a.data)
    if a.users:
        data = data.subset(a.users, seed=0)
    splits = data.leave_one_out(a.max_seq_len)
    popularity = data.popularity()
    path = a.backbone or minilm_path()
    text = tokenize_titles(data.titles, path, a.title_len)

    def load_backbone():  # float32 whatever the stored dtype
        return AutoModel.from_pretrained(path, dtype=torch.float32).to(a.device)

    print(f"{len(data.sequences)} users, {data.num_items - 1} items, skipped {data.num_skipped_interactions} "
          f"interactions of unknown items and {data.num_skipped_users} short users", flush=True)

    iisan_cfg = IISANConfig(modalities=["text"], layers="all", pooling="mean")
    proto = IISANModel(copy.deepcopy(iisan_cfg), {"text": load_backbone()})
    proto.set_item_inputs({"text": text})
    _sync()
    start = time.perf_counter()
    cache = proto.cache_hidden_states(batch_size=128, progress_bar=False)
    _sync()
    cache_seconds = time.perf_counter() - start
    print(f"cached {data.num_items} items in {cache_seconds:.1f}s", flush=True)
    built = proto.config  # the config with the backbone's sizes and fingerprint filled in
    del proto

    def cached_iisan(seed=0):  # built without the backbone: the trained part never needs it
        torch.manual_seed(seed)
        model = IISANModel(copy.deepcopy(built))
        model.cache = cache
        return model

    def frozen_features(seed=0):
        torch.manual_seed(seed)
        cfg = BackboneItemEncoderConfig(modalities=["text"], layers="last", pooling="mean", tuning="frozen",
                                        hidden_sizes=dict(built.hidden_sizes),
                                        num_hidden_layers=dict(built.num_hidden_layers),
                                        encoder_fingerprints=dict(built.encoder_fingerprints))
        model = BackboneItemEncoder(cfg)
        model.cache = {"text": cache["text"][:, -1:]}  # the last kept layer of "all" is the last layer
        return model

    def with_backbone(tuning, seed=0):
        bb = load_backbone()
        torch.manual_seed(seed)  # after loading: the side network starts as the cached one does
        if tuning == "iisan":
            enc = IISANModel(copy.deepcopy(iisan_cfg), {"text": bb})
        else:
            enc = BackboneItemEncoder(BackboneItemEncoderConfig(modalities=["text"], layers="last", pooling="mean",
                                                                tuning=tuning), {"text": bb})
        enc.set_item_inputs({"text": text})
        return enc

    builders = {"iisan": cached_iisan, "iisan-uncached": lambda seed=0: with_backbone("iisan", seed),
                "frozen": frozen_features, "lora": lambda seed=0: with_backbone("lora", seed),
                "fft": lambda seed=0: with_backbone("full", seed), "id": lambda seed=0: None}
    backbone_lrs = {"lora": a.lora_lr, "fft": a.fft_lr}
    settings = {k: v for k, v in vars(a).items() if k not in ("out_md", "out_fig", "json_out", "data")}
    steps_per_epoch = -(-len(splits["train"]) // a.batch_size)
    settings.update(device_name=torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
                    users_kept=len(data.sequences), items=data.num_items - 1, cache_seconds=round(cache_seconds, 1),
                    cache_mb=round(sum(t.numel() * t.element_size() for t in cache.values()) / 2**20, 1),
                    steps_per_epoch=steps_per_epoch)
    record = {"settings": settings, "quality": {}, "cost": {}}

    def checkpoint():
        record["settings"]["total_seconds"] = round(time.perf_counter() - t0)
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(record, indent=1))

    # ---- time and memory per training step, every method on the same batches (cheap: first)
    collate = SequentialRecCollator()
    batches = [collate([splits["train"][i] for i in range(j * a.timing_batch_size, (j + 1) * a.timing_batch_size)])
               for j in range(a.timing_steps + 1)]
    timed = ["iisan", "iisan-uncached", "frozen", "lora", "fft"]
    for key in timed:
        torch.manual_seed(0)
        model = SequentialRecommender(SASRecModel(SASRecConfig(max_seq_len=a.max_seq_len)), builders[key]())
        m = measure_training_step(model.to(a.device), batches)
        # an epoch at the quality runs' batch size: step time scales with the items per step
        m["epoch_seconds_est"] = m["step_seconds"] * steps_per_epoch * a.batch_size / a.timing_batch_size
        record["cost"][METHODS[key]] = m
        print(METHODS[key], json.dumps({k: v if v is None else round(v, 4) for k, v in m.items()}), flush=True)
        del model
    names = [METHODS[k] for k in timed]
    scores = tpme([record["cost"][n]["epoch_seconds_est"] for n in names],
                  [record["cost"][n]["trainable_params"] for n in names],
                  [record["cost"][n]["memory_bytes"] for n in names])
    for n, s in zip(names, scores):
        record["cost"][n]["tpme"] = s
    checkpoint()

    # ---- quality: seed-major, so that a run cut short has every method at the first seeds
    for seed in a.seeds:
        for key in methods:
            run = train_and_test(builders[key](seed), splits, popularity, data.num_items, seed, a, backbone_lrs.get(key))
            runs = record["quality"].setdefault(METHODS[key], {})
            for k, v in run.items():
                runs.setdefault(k, []).append(v)
            print(METHODS[key], f"seed {seed}", json.dumps(run), flush=True)
            checkpoint()
    write_report(a, record)
    return record


def _ms(xs) -> str:
    return f"{100 * statistics.mean(xs):.2f} ± {100 * (statistics.stdev(xs) if len(xs) > 1 else 0):.2f}"


def write_report(a, record) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, cost, settings = record["quality"], record["cost"], record["settings"]
    device = settings["device_name"]
    gpu = settings["device"] == "cuda"
    ref = cost["Full fine-tuning"]
    command = "python scripts/rec_amazon.py --data ../shared/data/amazon-instruments"
    if gpu:
        command += " --device cuda"
    command += " --methods " + " ".join(settings["methods"])
    lines = [
        "## IISAN on Amazon Musical Instruments (titles, MiniLM-L6 text backbone)",
        "",
        f"Produced by `{command}` on {device} (settings: `{json.dumps(settings)}`). Leave-one-out, full ranking "
        "over all items with the history masked; test metrics at the epoch of best validation HR@10; mean ± std "
        f"over seeds {a.seeds}; metrics ×100." + (" Peak GPU memory: `torch.cuda.max_memory_allocated` over "
                                                  "training and evaluation of a run." if gpu else ""),
        "",
        "| method | HR@10 | NDCG@10 | best epoch | trainable params | s / epoch (training) |"
        + (" peak GPU memory (MB) |" if gpu else ""),
        "|---|---|---|---|---|---|" + ("---|" if gpu else ""),
    ]
    for name, r in results.items():
        row = (f"| {name} | {_ms(r['hr@10'])} | {_ms(r['ndcg@10'])} | {statistics.median(r['best_epoch']):.0f} | "
               f"{r['trainable_params'][0]:,} | {statistics.mean(r['epoch_seconds']):.2f} |")
        if gpu:
            row += f" {max(r['peak_gpu_bytes']) / 2**20:.0f} |"
        lines.append(row + (f" (seeds: {len(r['hr@10'])})" if len(r["hr@10"]) != len(a.seeds) else ""))
    lines += [
        "",
        f"Cost of one training step on the same {a.timing_batch_size}-user batches (median of {a.timing_steps} "
        "steps after a warm-up), extrapolated to an epoch of the runs above; memory = weights held + gradients and "
        "Adam moments of trainable weights + activations saved for backward (device-independent)"
        + ("; peak GPU = `max_memory_allocated` during the timed steps" if gpu else "")
        + ". TPME: paper Eq. 6-10, α = (0.45, 0.1, 0.45), lower is better.",
        "",
        "| method | s / step | est. s / epoch | time vs FFT | memory (MB) | memory vs FFT | trainable params | TPME |"
        + (" peak GPU (MB) | peak GPU vs FFT |" if gpu else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if gpu else ""),
    ]
    for name, c in cost.items():
        row = (f"| {name} | {c['step_seconds']:.4f} | {c['epoch_seconds_est']:.2f} | "
               f"{ref['step_seconds'] / c['step_seconds']:.1f}× faster | {c['memory_bytes'] / 2**20:.1f} | "
               f"{c['memory_bytes'] / ref['memory_bytes']:.3f} | {c['trainable_params']:,} | {c['tpme']:.3f} |")
        if gpu:
            row += f" {c['peak_gpu_bytes'] / 2**20:.0f} | {c['peak_gpu_bytes'] / ref['peak_gpu_bytes']:.3f} |"
        lines.append(row)
    Path(a.out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out_md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    names = list(results)
    ax[0].bar(names, [100 * statistics.mean(results[n]["hr@10"]) for n in names],
              yerr=[100 * (statistics.stdev(results[n]["hr@10"]) if len(results[n]["hr@10"]) > 1 else 0)
                    for n in names])
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
    fig.suptitle(f"IISAN vs baselines, Amazon Instruments, MiniLM-L6 ({device})")
    fig.tight_layout()
    Path(a.out_fig).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out_fig, dpi=80)


if __name__ == "__main__":
    main()
