"""IISAN on real data: Amazon "Musical Instruments" (the IISAN papers' Instrument set), titles only.

    python scripts/rec_amazon.py --data ../shared/data/amazon-instruments                # CPU: cheap methods
    python scripts/rec_amazon.py --data DIR --device cuda --methods all --backbone DIR   # every method (GPU)

Protocol (issue 20): the official IISAN preprocessing (``--preset iisan``: users with >= 5
interactions, the last 13 items; 10,000 users, 19,246 items, 75,022 interactions), leave-one-out,
full ranking over all items with **every** history item removed from the candidates (a repeated
target is a miss; the label never changes the candidates), the official training recipe
(``SequentialRecConfig(recipe="iisan")``: constant-LR Adam, no clipping, one candidate per batch slot
with logQ, early stopping after ``--patience`` epochs without a gain in validation HR@10), the test
metrics of the epoch with the best validation HR@10, and a bootstrap 95% interval over seeds × users.

Text backbone: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384-d; all 7 hidden states kept,
masked-mean pooling, as the sentence model was trained). Methods, all with the same SASRec
recommender, in-batch loss, data and evaluation:

- ``iisan``: IISAN (cached), the side network on hidden states computed once per item;
- ``iisan-uncached``: the same side network with the backbone run (without gradients) every step;
- ``frozen``: a projection of the frozen last-layer feature (same cache, last layer only);
- ``lora``: LoRA (r=8 on query/value, official lr 4e-4) on the backbone, last-layer feature;
- ``fft``: full fine-tuning of the backbone (official text lr 5e-5), last-layer feature;
- ``id``: the classic ID-embedding SASRec;
- ``popularity``: every user gets the training popularity ranking (no training; same masking).

Cost (``--timing-steps N``, off by default): time per training step of every method on the same
batches, and the device-independent training memory (weights + gradients and Adam moments + saved
activations). Results are written as JSON after every run (``--json-out``), so a run cut short keeps
what it finished; ``--report-from`` writes ``docs/results/iisan_amazon.md``-style tables from them.
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
from iisan_common import MINILM_HUB_ID, measure_training_step, minilm_path, tokenize_titles  # noqa: E402

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, IISANConfig, IISANModel  # noqa: E402
from hfgen.data.recommendation import load_recommendation_data  # noqa: E402
from hfgen.metrics.ranking import bootstrap_ci, mask_history, per_user_metric, target_ranks, tpme  # noqa: E402
from hfgen.models import SASRecConfig, SASRecModel  # noqa: E402
from hfgen.trainers.sequential_rec import (  # noqa: E402
    SequentialRecCollator,
    SequentialRecConfig,
    SequentialRecommender,
    SequentialRecTrainer,
)

METHODS = {"iisan": "IISAN (cached)", "iisan-uncached": "IISAN (uncached)", "frozen": "Frozen features",
           "lora": "LoRA", "fft": "Full fine-tuning", "id": "SASRec (ID)", "popularity": "Popularity"}
CHEAP = ["iisan", "frozen", "id", "popularity"]


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class EpochTimer(TrainerCallback):
    """Training seconds per epoch (evaluation excluded) and the metrics of every evaluation."""

    def __init__(self):
        self.epoch_seconds, self.evals, self.test_ranks = [], [], []
        self.trainer = None

    def on_epoch_begin(self, args, state, control, **kw):
        _sync()
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kw):
        _sync()
        self.epoch_seconds.append(time.perf_counter() - self._start)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        """Validation every epoch; the test set only when validation HR@10 improves (the reported epoch)."""
        metrics = dict(metrics)
        if not self.evals or metrics["eval_valid_hr@10"] > max(e["eval_valid_hr@10"] for e in self.evals):
            metrics.update(self.trainer._full_ranking_metrics(self.test_set, "eval_test"))
            self.test_ranks.append(self.trainer.eval_ranks["eval_test"].tolist())
        else:
            self.test_ranks.append(None)
        self.evals.append(metrics)


def train_and_test(item_encoder, splits, popularity, num_items, seed, a, backbone_lr=None) -> dict:
    torch.manual_seed(seed)
    rec = SASRecModel(SASRecConfig(max_seq_len=a.max_seq_len, num_items=0 if item_encoder else num_items))
    timer = EpochTimer()
    args = SequentialRecConfig(output_dir=tempfile.mkdtemp(), recipe=a.recipe, num_train_epochs=a.epochs, seed=seed,
                               per_device_train_batch_size=a.batch_size, learning_rate=a.lr,
                               adapter_learning_rate=a.lr, backbone_learning_rate=backbone_lr,
                               early_stopping_patience=a.patience, max_seq_len=a.max_seq_len, eval_strategy="epoch",
                               save_strategy="no", logging_strategy="no", disable_tqdm=True,
                               use_cpu=a.device == "cpu", report_to="none")
    trainer = SequentialRecTrainer(rec, item_encoder, args, splits["train"], {"valid": splits["validation"]},
                                   item_popularity=popularity, callbacks=[timer])
    timer.trainer, timer.test_set = trainer, splits["test"]
    if torch.cuda.is_available() and a.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    best = max(range(len(timer.evals)), key=lambda i: timer.evals[i]["eval_valid_hr@10"])  # first best epoch
    params = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and a.device != "cpu" else None
    return {"hr@10": timer.evals[best]["eval_test_hr@10"], "ndcg@10": timer.evals[best]["eval_test_ndcg@10"],
            "valid_hr@10": timer.evals[best]["eval_valid_hr@10"], "best_epoch": 1 + best,
            "epochs_run": len(timer.evals), "epoch_seconds": statistics.median(timer.epoch_seconds),
            "trainable_params": params, "peak_gpu_bytes": peak, "test_ranks": timer.test_ranks[best]}


def popularity_ranks(splits, popularity, exclude_history=True) -> list[int]:
    """Test ranks of the popularity ranking (training counts), the same candidates as every model."""
    collate = SequentialRecCollator()
    batch = collate(list(splits["test"]))
    scores = popularity.double().expand(len(batch["labels"]), -1)
    history = batch["history"] if exclude_history else batch["history"][:, :0]
    return target_ranks(mask_history(scores, history), batch["labels"]).tolist()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="Folder with items.tsv and users.tsv (required unless --report-from).")
    p.add_argument("--users", type=int, default=0, help="Random subset of users (0: all).")
    p.add_argument("--preset", default="iisan", choices=["iisan", "none"],
                   help="Preprocessing preset of load_recommendation_data ('iisan': official).")
    p.add_argument("--recipe", default="iisan", choices=["iisan", "hfgen"], help="SequentialRecConfig recipe.")
    p.add_argument("--patience", type=int, default=10, help="Early stopping: epochs without a validation gain.")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (recorded).")
    p.add_argument("--cache-file", default=None, help="Save / reuse the MiniLM hidden-state cache here.")
    p.add_argument("--bootstrap", type=int, default=10_000, help="Bootstrap resamples of the intervals.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=CHEAP, choices=[*METHODS, "all"],
                   help="Methods trained to convergence for the quality table ('all': every method).")
    p.add_argument("--epochs", type=int, default=50, help="Most epochs (early stopping usually ends sooner).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Recommender and side-adapter/projection learning rate.")
    p.add_argument("--fft-lr", type=float, default=5e-5, help="Backbone learning rate of full fine-tuning (official).")
    p.add_argument("--lora-lr", type=float, default=4e-4, help="LoRA weights' learning rate (official).")
    p.add_argument("--max-seq-len", type=int, default=10)
    p.add_argument("--title-len", type=int, default=20, help="Title tokens (the papers use 30).")
    p.add_argument("--timing-steps", type=int, default=0, help="Timed steps (after one warm-up) per method; 0: none.")
    p.add_argument("--timing-batch-size", type=int, default=8, help="Users per timed step (all methods alike).")
    p.add_argument("--backbone", default=None, help="Text encoder folder (default: the local MiniLM).")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json-out", default=None, help="Write the results so far here after every run.")
    p.add_argument("--report-from", nargs="+", default=None,
                   help="Only write the report, from --json-out files (quality runs of later files are appended, "
                        "e.g. more seeds; the cost table is the first file's).")
    p.add_argument("--out-md", default=None, help="Also write the report (markdown) here.")
    p.add_argument("--out-fig", default="docs/figures/iisan_amazon.png")
    a = p.parse_args(argv)
    if a.report_from:
        record, *more = [json.loads(Path(f).read_text()) for f in a.report_from]
        for extra in more:
            for name, runs in extra["quality"].items():
                for k, v in runs.items():
                    record["quality"].setdefault(name, {}).setdefault(k, []).extend(v)
            record["settings"]["seeds"] = sorted(set(record["settings"]["seeds"]) | set(extra["settings"]["seeds"]))
        for k in ("seeds", "timing_steps", "timing_batch_size", "bootstrap"):
            setattr(a, k, record["settings"].get(k, getattr(a, k)))
        write_report(a, record)
        return record
    methods = list(METHODS) if "all" in a.methods else a.methods
    if not a.data:
        raise ValueError("`--data` is required (a folder with items.tsv and users.tsv).")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`--device cuda` was given but CUDA is not available.")
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()

    data = load_recommendation_data(a.data, preset=None if a.preset == "none" else a.preset)
    if a.users:
        data = data.subset(a.users, seed=0)
    splits = data.leave_one_out(a.max_seq_len)
    popularity = data.popularity()
    path = a.backbone or minilm_path()
    text = tokenize_titles(data.titles, path, a.title_len)

    def load_backbone():  # float32 whatever the stored dtype
        return AutoModel.from_pretrained(path, dtype=torch.float32).to(a.device)

    print(f"{len(data.sequences)} users, {data.num_items - 1} items, {data.num_interactions} interactions; skipped "
          f"{data.num_skipped_interactions} interactions of unknown items and {data.num_skipped_users} short users",
          flush=True)

    hub_names = {"text": MINILM_HUB_ID} if a.backbone is None else None  # a Hub id, not the site-packages path
    iisan_cfg = IISANConfig(modalities=["text"], layers="all", pooling="mean", backbone_names=hub_names)
    proto = IISANModel(copy.deepcopy(iisan_cfg), {"text": load_backbone()})
    proto.set_item_inputs({"text": text})
    _sync()
    start = time.perf_counter()
    if a.cache_file and Path(a.cache_file).is_file():
        proto.load_hidden_state_cache(a.cache_file)  # refused if built with another encoder or layers
        cache = proto.cache
        if cache["text"].shape[0] != data.num_items:
            raise ValueError(f"--cache-file {a.cache_file} has {cache['text'].shape[0]} items, the data {data.num_items}.")
    else:
        cache = proto.cache_hidden_states(batch_size=128, progress_bar=False, path=a.cache_file)
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
                                        encoder_fingerprints=dict(built.encoder_fingerprints),
                                        backbone_names=dict(built.backbone_names))
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
                                                                tuning=tuning, backbone_names=hub_names), {"text": bb})
        enc.set_item_inputs({"text": text})
        return enc

    builders = {"iisan": cached_iisan, "iisan-uncached": lambda seed=0: with_backbone("iisan", seed),
                "frozen": frozen_features, "lora": lambda seed=0: with_backbone("lora", seed),
                "fft": lambda seed=0: with_backbone("full", seed), "id": lambda seed=0: None, "popularity": None}
    backbone_lrs = {"lora": a.lora_lr, "fft": a.fft_lr}
    settings = {k: v for k, v in vars(a).items() if k not in ("out_md", "out_fig", "json_out", "data")}
    steps_per_epoch = -(-len(splits["train"]) // a.batch_size)
    settings.update(device_name=torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
                    threads=torch.get_num_threads(), interactions=data.num_interactions,
                    users_kept=len(data.sequences), items=data.num_items - 1, cache_seconds=round(cache_seconds, 1),
                    cache_mb=round(sum(t.numel() * t.element_size() for t in cache.values()) / 2**20, 1),
                    steps_per_epoch=steps_per_epoch)
    record = {"settings": settings, "quality": {}, "cost": {}}
    if "popularity" in methods:  # deterministic: one "seed"
        ranks = popularity_ranks(splits, popularity)
        record["quality"][METHODS["popularity"]] = {"test_ranks": [ranks], "trainable_params": [0]}
        print("Popularity", {"hr@10": statistics.mean(r <= 10 for r in ranks)}, flush=True)

    def checkpoint():
        record["settings"]["total_seconds"] = round(time.perf_counter() - t0)
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(record, indent=1))

    # ---- time and memory per training step, every method on the same batches (cheap: first)
    collate = SequentialRecCollator()
    batches = [collate([splits["train"][i] for i in range(j * a.timing_batch_size, (j + 1) * a.timing_batch_size)])
               for j in range(a.timing_steps + 1)]
    timed = ["iisan", "iisan-uncached", "frozen", "lora", "fft"] if a.timing_steps else []
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
    scores = [] if not names else tpme([record["cost"][n]["epoch_seconds_est"] for n in names],
                  [record["cost"][n]["trainable_params"] for n in names],
                  [record["cost"][n]["memory_bytes"] for n in names])
    for n, s in zip(names, scores):
        record["cost"][n]["tpme"] = s
    checkpoint()

    # ---- quality: seed-major, so that a run cut short has every method at the first seeds
    for seed in a.seeds:
        for key in [m for m in methods if m != "popularity"]:
            run = train_and_test(builders[key](seed), splits, popularity, data.num_items, seed, a, backbone_lrs.get(key))
            runs = record["quality"].setdefault(METHODS[key], {})
            for k, v in run.items():
                runs.setdefault(k, []).append(v)
            print(METHODS[key], f"seed {seed}", json.dumps({k: v for k, v in run.items() if k != "test_ranks"}),
                  flush=True)
            checkpoint()
    write_report(a, record)
    return record


def interval(runs: dict, metric: str, k: int = 10, resamples: int = 10_000, minus: dict | None = None):
    """``(mean, low, high)`` ×100 of a metric over seeds × users (hierarchical bootstrap: seeds, then users); with ``minus``, of the
    paired per-user difference to another method (the seeds both have)."""
    values = torch.stack([per_user_metric(torch.tensor(r), metric, k) for r in runs["test_ranks"]])
    if minus is not None:
        other = torch.stack([per_user_metric(torch.tensor(r), metric, k) for r in minus["test_ranks"]])
        if "best_epoch" not in minus:  # an untrained, deterministic baseline: the same ranks for every seed
            other = other[:1].expand(len(values), -1)
        n = min(len(values), len(other))
        values = values[:n] - other[:n]
    return tuple(100 * v for v in bootstrap_ci(values, num_resamples=resamples, hierarchical=True))


def _fmt(ci) -> str:
    return f"{ci[0]:.2f} [{ci[1]:.2f}, {ci[2]:.2f}]"


def write_report(a, record) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, cost, settings = record["quality"], record["cost"], record["settings"]
    device = settings["device_name"]
    gpu = settings["device"] == "cuda"
    R = settings.get("bootstrap", 10_000)
    ref_name = "IISAN (cached)" if "IISAN (cached)" in results else None
    command = "python scripts/rec_amazon.py --data ../shared/data/amazon-instruments"
    if gpu:
        command += " --device cuda"
    command += " --methods " + " ".join(settings["methods"])
    lines = [
        "## IISAN on Amazon Musical Instruments (titles, MiniLM-L6 text backbone)",
        "",
        f"Produced by `{command}` on {device}, {settings.get('threads')} thread(s) (settings: `{json.dumps(settings)}`). "
        "Official preprocessing (preset `iisan`), leave-one-out, full ranking over all items with every history item "
        "removed from the candidates (a repeated target is a miss), test metrics at the epoch of best validation "
        f"HR@10; mean over seeds × users with a bootstrap 95% interval over users ({R} resamples, the same user draw "
        "for every seed); metrics ×100. Chance HR@10 ≈ "
        f"{100 * 10 / max(1, settings.get('items', 1)):.3f}.",
        "",
        "| method | seeds | HR@10 [95% CI] | NDCG@10 [95% CI] | best epoch | epochs run | trainable params | s / epoch |"
        + (" peak GPU memory (MB) |" if gpu else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""),
    ]
    for name, r in results.items():
        trained = "best_epoch" in r
        row = (f"| {name} | {len(r['test_ranks']) if trained else '—'} | {_fmt(interval(r, 'hr', resamples=R))} | "
               f"{_fmt(interval(r, 'ndcg', resamples=R))} | "
               + (f"{', '.join(map(str, r['best_epoch']))} | {', '.join(map(str, r['epochs_run']))} | "
                  f"{r['trainable_params'][0]:,} | {statistics.mean(r['epoch_seconds']):.1f} |" if trained
                  else "— | — | 0 | — |"))
        if gpu:
            row += f" {max(r['peak_gpu_bytes']) / 2**20:.0f} |" if trained else " — |"
        lines.append(row)
    if ref_name:
        lines += ["", f"Paired differences {ref_name} − method (same users and seeds; bootstrap 95% CI over users, ×100); "
                  "the seeds both methods have (all, against popularity); an interval containing 0 is no difference:", "",
                  "| method | Δ HR@10 [95% CI] | Δ NDCG@10 [95% CI] |", "|---|---|---|"]
        for name, r in results.items():
            if name != ref_name:
                lines.append(f"| {name} | {_fmt(interval(results[ref_name], 'hr', resamples=R, minus=r))} | "
                             f"{_fmt(interval(results[ref_name], 'ndcg', resamples=R, minus=r))} |")
    if cost:
        ref = cost["Full fine-tuning"]
        lines += [
            "",
            f"Cost of one training step on the same {a.timing_batch_size}-user batches (median of {a.timing_steps} "
            "steps after a warm-up), extrapolated to an epoch; memory = weights held + gradients and Adam moments of "
            "trainable weights + activations saved for backward (device-independent). TPME: paper Eq. 6-10, "
            "α = (0.45, 0.1, 0.45), lower is better.",
            "",
            "| method | s / step | est. s / epoch | time vs FFT | memory (MB) | memory vs FFT | trainable params | TPME |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, c in cost.items():
            lines.append(f"| {name} | {c['step_seconds']:.4f} | {c['epoch_seconds_est']:.2f} | "
                         f"{ref['step_seconds'] / c['step_seconds']:.1f}× faster | {c['memory_bytes'] / 2**20:.1f} | "
                         f"{c['memory_bytes'] / ref['memory_bytes']:.3f} | {c['trainable_params']:,} | {c['tpme']:.3f} |")
    if a.out_md:
        Path(a.out_md).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out_md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(results)
    for axis, metric in zip(ax, ("hr", "ndcg")):
        cis = [interval(results[n], metric, resamples=R) for n in names]
        axis.bar(names, [c[0] for c in cis], yerr=[[c[0] - c[1] for c in cis], [c[2] - c[0] for c in cis]], capsize=3)
        axis.set_ylabel(f"test {metric.upper()}@10 (×100), 95% CI")
        axis.tick_params(axis="x", rotation=30, labelsize=7)
    fig.suptitle(f"Amazon Instruments, official protocol, MiniLM-L6 ({device})")
    fig.tight_layout()
    Path(a.out_fig).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out_fig, dpi=80)


if __name__ == "__main__":
    main()
