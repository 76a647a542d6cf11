"""IISAN on real data: Amazon "Musical Instruments" (the IISAN papers' Instrument set), titles only, against learned
and training-free baselines.

    # the CPU study sized for this 2-core machine (defaults: 4,000 users, <= 15 epochs, patience 5, lr grid
    # 3e-4 1e-3 3e-3, seeds 0 1 2; about 22-35 min of one core, docs/results/iisan.md)
    OMP_NUM_THREADS=1 python scripts/rec_amazon.py --data ../shared/data/amazon-instruments --threads 1
    # every arm, all 10,000 users, the official epochs and patience (GPU; record iisan/amazon_full)
    python scripts/rec_amazon.py --data ../shared/data/amazon-instruments --device cuda --users 0 --arms all \
        --epochs 50 --patience 10 --name amazon_full

Protocol (issue 20): the official IISAN preprocessing (``--preset iisan``: users with >= 5 interactions, the last 13
items; 10,000 users, 19,246 items, 75,022 interactions), leave-one-out, full ranking over **all** items of the
preprocessed data with every history item removed from the candidates (a repeated target is a miss; the label never
changes the candidates), the official training recipe (``SequentialRecConfig(recipe="iisan")``: constant-LR Adam,
no clipping, one candidate per batch slot with logQ, early stopping after ``--patience`` epochs without a gain in
validation HR@10), and the test metrics of the epoch with the best validation HR@10.

``--users N`` evaluates (and trains on) a random subset of N users drawn with ``--subset-seed``, which is independent
of the method seeds; the item table stays the full one, so the candidates do not depend on which users (and which
test items) the subset holds.

Text backbone: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384-d; all 7 hidden states kept, masked-mean
pooling, as the sentence model was trained). Arms, all evaluated on the same users, candidates and masking:

- ``iisan``: IISAN (cached), the side network on hidden states computed once per item;
- ``iisan-uncached``: the same side network with the backbone run (without gradients) every step;
- ``frozen``: a projection of the frozen last-layer feature (same cache, last layer only);
- ``lora``: LoRA (r=8 on query/value, official lr 4e-4) on the backbone, last-layer feature;
- ``fft``: full fine-tuning of the backbone (official text lr 5e-5), last-layer feature;
- ``id``: the classic ID-embedding SASRec;
- ``popularity``: every user gets the training popularity ranking (no training);
- ``last-item``: cosine between the frozen MiniLM embedding of the user's last history item and every item's (the
  frozen arm's masked-mean pooled last-layer feature; no training);
- ``item-knn``: item-item cosine of co-occurrence in the training parts (``seq[:-2]``) of the users' sequences,
  summed over the user's input items, training popularity breaking ties (no training).

The learned arms share one tuning budget: each runs the learning rates of ``--lr-grid`` (recommender and
adapter/projection; FFT and LoRA keep their official backbone rates) at the first seed, keeps the one with the best
validation HR@10, and runs the other seeds at it. The raw record ``docs/results/raw/iisan/amazon.json`` holds every
seed's per-user test ranks (top 10, one character a user), the per-seed metrics, the settings and the budget; it is
rewritten after every run, so a run cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from iisan_common import (  # noqa: E402
    MINILM_HUB_ID,
    amazon_intervals,
    amazon_table,
    encode_top10,
    minilm_path,
    tokenize_titles,
)

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, IISANConfig, IISANModel  # noqa: E402
from hfgen.data.recommendation import load_recommendation_data  # noqa: E402
from hfgen.metrics.ranking import hit_rate_at_k, mask_history, ndcg_at_k, target_ranks  # noqa: E402
from hfgen.models import SASRecConfig, SASRecModel  # noqa: E402
from hfgen.results import write_record  # noqa: E402
from hfgen.trainers.sequential_rec import SequentialRecCollator, SequentialRecConfig, SequentialRecTrainer  # noqa: E402

ARMS = {"iisan": "IISAN (cached)", "iisan-uncached": "IISAN (uncached)", "frozen": "Frozen features",
        "lora": "LoRA", "fft": "Full fine-tuning", "id": "SASRec (ID)", "popularity": "Popularity",
        "last-item": "Last-item content similarity", "item-knn": "Item-kNN (co-occurrence)"}
LEARNED = ("iisan", "iisan-uncached", "frozen", "lora", "fft", "id")
TRAINING_FREE = ("popularity", "last-item", "item-knn")
CPU_ARMS = ["iisan", "frozen", "id", "popularity", "last-item", "item-knn"]
NEEDS_CACHE = ("iisan", "frozen", "last-item")


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ data


def user_subset(data, num_users: int, seed: int):
    """``num_users`` users drawn with ``seed`` (0: all), the item table unchanged (every item stays a candidate)."""
    if num_users < 0:
        raise ValueError(f"`--users` must be >= 0, got {num_users}.")
    if not num_users or num_users >= len(data.sequences):
        return data
    keep = sorted(random.Random(seed).sample(range(len(data.sequences)), num_users))
    return replace(data, sequences=[data.sequences[u] for u in keep], user_ids=[data.user_ids[u] for u in keep])


def evaluation_batch(dataset) -> dict[str, torch.Tensor]:
    """Every user of a validation or test split as one batch: ``item_ids`` (input window), ``history``, ``labels``."""
    return SequentialRecCollator()(list(dataset))


def ranks_of(scores: torch.Tensor, batch: dict) -> torch.Tensor:
    """Target ranks with every history item masked (the candidates never depend on the label)."""
    return target_ranks(mask_history(scores.double(), batch["history"]), batch["labels"])


def scorer_ranks(scorer, batch: dict, users_per_chunk: int = 1000) -> torch.Tensor:
    """[`ranks_of`] the scores ``scorer(batch)`` of a training-free arm, a chunk of users at a time."""
    chunks = ({k: v[i:i + users_per_chunk] for k, v in batch.items()}
              for i in range(0, len(batch["labels"]), users_per_chunk))
    return torch.cat([ranks_of(scorer(chunk), chunk) for chunk in chunks])


# ---------------------------------------------------------------------------------- training-free arms


def popularity_scores(popularity: torch.Tensor, batch: dict) -> torch.Tensor:
    return popularity.double().expand(len(batch["labels"]), -1)


def last_item_scores(item_vectors: torch.Tensor, batch: dict) -> torch.Tensor:
    """Cosine between each user's last input item (the most recent, right end of the left-padded window) and every
    item."""
    unit = torch.nn.functional.normalize(item_vectors.double(), dim=-1)
    return unit[batch["item_ids"][:, -1]] @ unit.T


def item_knn_similarity(train_parts: list[list[int]], num_items: int):
    """Item-item cosine of co-occurrence: ``|U_i ∩ U_j| / sqrt(|U_i| |U_j|)`` over the training parts (users as sets),
    zero diagonal, as a ``scipy.sparse`` CSR matrix ``[n_items, n_items]``."""
    from scipy import sparse

    rows = [u for u, items in enumerate(train_parts) for _ in set(items)]
    cols = [i for items in train_parts for i in set(items)]
    users = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(train_parts), num_items))
    together = (users.T @ users).tocsr()
    count = np.asarray(together.diagonal(), dtype=np.float64)
    scale = sparse.diags(1.0 / np.sqrt(np.maximum(count, 1.0)))
    similarity = (scale @ together @ scale).tocsr()
    similarity.setdiag(0.0)
    similarity.eliminate_zeros()
    return similarity


def item_knn_scores(similarity, popularity: torch.Tensor, batch: dict) -> torch.Tensor:
    """Sum of the similarities of each user's input items (as a set) to every item, plus ``1e-9`` x normalised
    training popularity, which orders only the items the similarities tie."""
    from scipy import sparse

    ids = batch["item_ids"]
    users, positions = torch.nonzero(ids, as_tuple=True)
    inputs = sparse.csr_matrix((np.ones(len(users)), (users.numpy(), ids[users, positions].numpy())),
                               shape=(ids.shape[0], similarity.shape[0]))
    inputs.data[:] = 1.0  # a repeated input item counts once
    scores = torch.from_numpy((inputs @ similarity).toarray())
    return scores + 1e-9 * popularity.double() / popularity.max().clamp_min(1.0)


def title_repeat_groups(data) -> dict[str, str]:
    """Users whose test item has the title of one of their history items (another id: a variant of an item they
    had) and the others, one ``"1"``/``"0"`` per user: an analysis split of the test users only (it reads the test
    label, so it never shapes candidates, scores or training)."""
    title = [t.strip().lower() for t in data.titles]
    repeat = "".join("1" if title[s[-1]] in {title[i] for i in s[:-1]} else "0" for s in data.sequences)
    return {"repeated title": repeat, "other users": "".join("0" if c == "1" else "1" for c in repeat)}


# -------------------------------------------------------------------------------------- learned arms


class BestEpoch(TrainerCallback):
    """Training seconds per epoch (wall and process CPU; evaluation excluded); validation every epoch, the test set only when validation
    HR@10 improves (so the kept test ranks are the best-validation epoch's)."""

    def __init__(self, test_set):
        self.epoch_seconds, self.epoch_cpu_seconds, self.valid_hr, self.test_ranks, self.best = [], [], [], None, None
        self.test_set, self.trainer = test_set, None

    def on_epoch_begin(self, args, state, control, **kw):
        _sync()
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, args, state, control, **kw):
        _sync()
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self.epoch_cpu_seconds.append(time.process_time() - self._cpu_start)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        hr = metrics["eval_valid_hr@10"]
        if not self.valid_hr or hr > max(self.valid_hr):
            self.trainer._full_ranking_metrics(self.test_set, "eval_test")
            self.test_ranks, self.best = self.trainer.eval_ranks["eval_test"], len(self.valid_hr)
        self.valid_hr.append(hr)


def train_and_test(item_encoder, splits, popularity, num_items: int, seed: int, lr: float, a,
                   backbone_lr: float | None = None) -> dict:
    """Train one learned arm at one seed and learning rate; its test ranks at the best-validation epoch."""
    torch.manual_seed(seed)
    rec = SASRecModel(SASRecConfig(max_seq_len=a.max_seq_len, num_items=0 if item_encoder else num_items))
    watch = BestEpoch(splits["test"])
    args = SequentialRecConfig(output_dir=tempfile.mkdtemp(), recipe=a.recipe, num_train_epochs=a.epochs, seed=seed,
                               per_device_train_batch_size=a.batch_size, learning_rate=lr, adapter_learning_rate=lr,
                               backbone_learning_rate=backbone_lr, early_stopping_patience=a.patience,
                               max_seq_len=a.max_seq_len, eval_strategy="epoch", save_strategy="no",
                               logging_strategy="no", disable_tqdm=True, use_cpu=a.device == "cpu", report_to="none")
    trainer = SequentialRecTrainer(rec, args, splits["train"], {"valid": splits["validation"]},
                                   item_encoder=item_encoder, item_popularity=popularity, callbacks=[watch])
    watch.trainer = trainer
    gpu = a.device == "cuda"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train()
    ranks = watch.test_ranks
    return {"hr@10": hit_rate_at_k(ranks, 10), "ndcg@10": ndcg_at_k(ranks, 10),
            "valid_hr@10": watch.valid_hr[watch.best], "top10_ranks": encode_top10(ranks.tolist()),
            "lr": lr, "best_epoch": 1 + watch.best, "epochs_run": len(watch.valid_hr),
            "epoch_seconds": round(statistics.median(watch.epoch_seconds), 2),
            "epoch_cpu_seconds": round(statistics.median(watch.epoch_cpu_seconds), 2),
            "run_seconds": round(time.perf_counter() - start, 1),
            "run_cpu_seconds": round(time.process_time() - cpu_start, 1),
            "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
            **({"peak_gpu_bytes": torch.cuda.max_memory_allocated()} if gpu else {})}


# ------------------------------------------------------------------------------------------ main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="Folder with items.tsv and users.tsv.")
    p.add_argument("--users", type=int, default=4000,
                   help="Random subset of users (0: all 10,000); the item table stays the full one.")
    p.add_argument("--subset-seed", type=int, default=1234, help="Seed of the user subset (not a method seed).")
    p.add_argument("--preset", default="iisan", choices=["iisan", "none"],
                   help="Preprocessing preset of load_recommendation_data ('iisan': official).")
    p.add_argument("--recipe", default="iisan", choices=["iisan", "hfgen"], help="SequentialRecConfig recipe.")
    p.add_argument("--arms", nargs="+", default=CPU_ARMS, choices=[*ARMS, "all"], help="Arms to run ('all': every arm).")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15, help="Most epochs (early stopping may end sooner).")
    p.add_argument("--patience", type=int, default=5,
                   help="Early stopping: epochs without a validation gain (the official recipe: 10).")
    p.add_argument("--lr-grid", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3],
                   help="Learning rates (recommender and adapter/projection) each learned arm chooses from on "
                        "validation HR@10 at the first seed; one value: no tuning.")
    p.add_argument("--fft-lr", type=float, default=5e-5, help="Backbone learning rate of full fine-tuning (official).")
    p.add_argument("--lora-lr", type=float, default=4e-4, help="LoRA weights' learning rate (official).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-seq-len", type=int, default=10)
    p.add_argument("--title-len", type=int, default=20, help="Title tokens (the papers use 30).")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (recorded).")
    p.add_argument("--cache-file", default=None, help="Save / reuse the MiniLM hidden-state cache here.")
    p.add_argument("--bootstrap", type=int, default=10_000, help="Bootstrap resamples of the intervals.")
    p.add_argument("--backbone", default=None, help="Text encoder folder (default: the local MiniLM).")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--raw-dir", default=None, help="Records go to RAW_DIR/iisan/ (default: docs/results/raw).")
    p.add_argument("--name", default="amazon", choices=["amazon", "amazon_full"],
                   help="Record name: 'amazon' (the CPU study) or 'amazon_full' (every arm, all users, on a GPU).")
    p.add_argument("--figure", default=None, help="Bar chart with the intervals (default: docs/figures/iisan_<name>.png; "
                                                  "'' for none).")
    a = p.parse_args(argv)
    if a.figure is None:
        a.figure = str(Path(__file__).resolve().parent.parent / "docs" / "figures" / f"iisan_{a.name}.png")
    if "all" in a.arms:
        a.arms = list(ARMS)
    for name in ("epochs", "batch_size", "max_seq_len", "title_len", "bootstrap"):
        if getattr(a, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(a, name)}.")
    if any(lr <= 0 for lr in a.lr_grid):
        raise ValueError(f"`--lr-grid` values must be > 0, got {a.lr_grid}.")
    if len(set(a.seeds)) != len(a.seeds):
        raise ValueError(f"`--seeds` must be distinct, got {a.seeds}.")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`--device cuda` was given but CUDA is not available.")
    return a


def budget_text(key: str, a) -> str:
    if key in TRAINING_FREE:
        return "no training and no tuning (deterministic: the same ranks for every seed)"
    grid = (f"learning rate chosen from {a.lr_grid} on validation HR@10 at seed {a.seeds[0]} ({len(a.lr_grid)} runs), "
            "the other seeds at it" if len(a.lr_grid) > 1 else f"learning rate {a.lr_grid[0]} (no grid)")
    backbone = {"fft": f", backbone lr {a.fft_lr} (official, fixed)", "lora": f", LoRA lr {a.lora_lr} (official, fixed)"}
    return f"{grid}{backbone.get(key, '')}; ≤ {a.epochs} epochs (patience {a.patience}), batch {a.batch_size}"


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.time()
    data = load_recommendation_data(a.data, preset=None if a.preset == "none" else a.preset)
    users_total = len(data.sequences)
    data = user_subset(data, a.users, a.subset_seed)
    splits = data.leave_one_out(a.max_seq_len)
    popularity = data.popularity()  # training parts (seq[:-2]) of the kept users
    valid, test = evaluation_batch(splits["validation"]), evaluation_batch(splits["test"])
    print(f"{len(data.sequences)} of {users_total} users, {data.num_items - 1} items (all candidates), "
          f"{data.num_interactions} interactions", flush=True)

    path = a.backbone or minilm_path()
    hub_names = {"text": MINILM_HUB_ID} if a.backbone is None else None  # a Hub id, not the site-packages path
    iisan_cfg = IISANConfig(modalities=["text"], layers="all", pooling="mean", backbone_names=hub_names)
    text = tokenize_titles(data.titles, path, a.title_len)

    def load_backbone():  # float32 whatever the stored dtype
        return AutoModel.from_pretrained(path, dtype=torch.float32).to(a.device)

    proto = IISANModel(copy.deepcopy(iisan_cfg), {"text": load_backbone()})
    built = proto.config  # the config with the backbone's sizes and fingerprint filled in
    cache, cache_seconds, cache_cpu_seconds = None, 0.0, 0.0
    if any(k in a.arms for k in NEEDS_CACHE):
        proto.set_item_inputs({"text": text})
        start, cpu_start = time.perf_counter(), time.process_time()
        if a.cache_file and Path(a.cache_file).is_file():
            proto.load_hidden_state_cache(a.cache_file)  # refused if built with another encoder or layers
            if proto.cache["text"].shape[0] != data.num_items:
                raise ValueError(f"--cache-file {a.cache_file} has {proto.cache['text'].shape[0]} items, the data "
                                 f"{data.num_items}.")
        else:
            proto.cache_hidden_states(batch_size=128, progress_bar=False, path=a.cache_file)
        cache = {m: t.cpu() for m, t in proto.cache.items()}
        cache_seconds, cache_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        print(f"cached {data.num_items} items in {cache_seconds:.1f}s", flush=True)
    del proto

    def cached_iisan(seed):  # built without the backbone: the trained part never needs it
        torch.manual_seed(seed)
        model = IISANModel(copy.deepcopy(built))
        model.cache = cache
        return model

    def frozen_features(seed):
        torch.manual_seed(seed)
        cfg = BackboneItemEncoderConfig(modalities=["text"], layers="last", pooling="mean", tuning="frozen",
                                        hidden_sizes=dict(built.hidden_sizes),
                                        num_hidden_layers=dict(built.num_hidden_layers),
                                        encoder_fingerprints=dict(built.encoder_fingerprints),
                                        backbone_names=dict(built.backbone_names))
        model = BackboneItemEncoder(cfg)
        model.cache = {"text": cache["text"][:, -1:]}  # the last kept layer of "all" is the last layer
        return model

    def with_backbone(tuning, seed):
        backbone = load_backbone()
        torch.manual_seed(seed)  # after loading: the side network starts as the cached one does
        if tuning == "iisan":
            enc = IISANModel(copy.deepcopy(iisan_cfg), {"text": backbone})
        else:
            enc = BackboneItemEncoder(BackboneItemEncoderConfig(modalities=["text"], layers="last", pooling="mean",
                                                                tuning=tuning, backbone_names=hub_names),
                                      {"text": backbone})
        enc.set_item_inputs({"text": text})
        return enc

    builders = {"iisan": cached_iisan, "iisan-uncached": lambda seed: with_backbone("iisan", seed),
                "frozen": frozen_features, "lora": lambda seed: with_backbone("lora", seed),
                "fft": lambda seed: with_backbone("full", seed), "id": lambda seed: None}
    backbone_lrs = {"lora": a.lora_lr, "fft": a.fft_lr}

    def run(key: str, seed: int, lr: float) -> dict:
        result = train_and_test(builders[key](seed), splits, popularity, data.num_items, seed, lr, a, backbone_lrs.get(key))
        print(ARMS[key], f"seed {seed} lr {lr:g}:",
              {k: v for k, v in result.items() if k != "top10_ranks"}, flush=True)
        return result

    learned = [k for k in a.arms if k in LEARNED]
    reference = ARMS["iisan"] if "iisan" in a.arms else ARMS.get(next(iter(learned), ""), ARMS[a.arms[0]])
    metrics: dict[str, dict] = {}
    settings = {
        "users": len(data.sequences), "users_total": users_total, "subset_seed": a.subset_seed,
        "users_sha256": hashlib.sha256("\n".join(data.user_ids).encode()).hexdigest()[:16],
        "items": data.num_items - 1, "interactions": data.num_interactions,
        "train_sequences": len(splits["train"]), "steps_per_epoch": -(-len(splits["train"]) // a.batch_size),
        "preset": a.preset, "recipe": a.recipe, "epochs": a.epochs, "patience": a.patience,
        "batch_size": a.batch_size, "max_seq_len": a.max_seq_len, "title_len": a.title_len, "lr_grid": a.lr_grid,
        "fft_lr": a.fft_lr, "lora_lr": a.lora_lr, "arms": [ARMS[k] for k in a.arms], "reference": reference,
        "bootstrap_resamples": a.bootstrap, "cache_seconds": round(cache_seconds, 1),
        "cache_cpu_seconds": round(cache_cpu_seconds, 1),
        "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "budget": {ARMS[k]: budget_text(k, a) for k in a.arms}, "lr_search": {}, "finished": False,
        "protocol": "leave-one-out, full ranking over every item, every history item masked (a repeated target is a "
                    "miss), test at the epoch of best validation HR@10",
    }

    def add(key: str, result: dict):
        for name, value in result.items():
            metrics.setdefault(ARMS[key], {}).setdefault(name, []).append(value)

    def save(figures=()):
        settings["cpu_seconds"] = round(time.process_time())  # of this process (one thread: the compute it needed)
        return write_record("iisan", a.name, seeds=a.seeds, metrics=metrics, settings=settings, started=started,
                            device=a.device, raw_dir=a.raw_dir, figures=figures)

    # ---- training-free arms: deterministic, scored once, the same ranks for every seed
    item_vectors = None if cache is None else cache["text"][:, -1]  # frozen MiniLM, masked-mean pooled, last layer
    similarity = None
    if "item-knn" in a.arms:
        similarity = item_knn_similarity([s[:-2] for s in data.sequences], data.num_items)
    scorers = {"popularity": lambda b: popularity_scores(popularity, b),
               "last-item": lambda b: last_item_scores(item_vectors, b),
               "item-knn": lambda b: item_knn_scores(similarity, popularity, b)}
    for key in [k for k in a.arms if k in TRAINING_FREE]:
        ranks = scorer_ranks(scorers[key], test)
        result = {"hr@10": hit_rate_at_k(ranks, 10), "ndcg@10": ndcg_at_k(ranks, 10),
                  "valid_hr@10": hit_rate_at_k(scorer_ranks(scorers[key], valid), 10),
                  "top10_ranks": encode_top10(ranks.tolist())}
        for _ in a.seeds:
            add(key, result)
        print(ARMS[key], {k: v for k, v in result.items() if k != "top10_ranks"}, flush=True)
    save()

    # ---- learned arms: the learning-rate grid at the first seed, then the other seeds at the chosen rate
    chosen = {}
    for key in learned:
        runs = {lr: run(key, a.seeds[0], lr) for lr in a.lr_grid}
        chosen[key] = max(a.lr_grid, key=lambda lr: runs[lr]["valid_hr@10"])  # the first best on ties
        settings["lr_search"][ARMS[key]] = {f"{lr:g}": runs[lr]["valid_hr@10"] for lr in a.lr_grid}
        add(key, runs[chosen[key]])
        save()
    for seed in a.seeds[1:]:
        for key in learned:
            add(key, run(key, seed, chosen[key]))
            save()

    settings["finished"] = True
    settings["intervals"] = amazon_intervals(metrics, reference, a.bootstrap, title_repeat_groups(data))
    figures = [write_figure(settings, a.figure)] if a.figure else []
    record_path = save(figures)
    record = {"seeds": a.seeds, "settings": settings, "metrics": metrics, "path": str(record_path)}
    print(amazon_table(record))
    return record


def write_figure(settings: dict, path: str) -> str:
    """Bars of test HR@10 and NDCG@10 (x100) per arm with the hierarchical bootstrap 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intervals = settings["intervals"]["arms"]
    names = list(intervals)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for axis, metric in zip(axes, ("hr", "ndcg")):
        cis = [intervals[n][f"{metric}@10"] for n in names]
        axis.bar(names, [c[0] for c in cis], yerr=[[c[0] - c[1] for c in cis], [c[2] - c[0] for c in cis]], capsize=3)
        axis.set_ylabel(f"test {metric.upper()}@10 (×100), 95% interval")
        axis.tick_params(axis="x", rotation=30, labelsize=7)
    fig.suptitle(f"Amazon Instruments, {settings['users']} users, all {settings['items']} items ranked, "
                 "MiniLM-L6 titles (seeds, then users)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
