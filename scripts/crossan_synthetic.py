"""CROSSAN against the adaptation methods it is compared with, as modality encoders are added (synthetic data).

The question (arXiv 2504.10307): with several frozen modality encoders, does one CROSSAN side network (per-modality
side adapters, one shared cross-modal SAN, MoMEF fusion) recommend better than full fine-tuning, LoRA, adapters,
IISAN-style pairwise side networks and late fusion, and does its quality grow as encoders are added?

Data (built here, complementary by construction). Every item has ``4 x factors_per_modality`` latent factors with
``values`` levels each. Modality ``m`` of the four (text, image, audio, video: names only) shows its own block of
factors and nothing else: ``tokens`` feature vectors ``W_{m,t} onehot(f_block(m)) + feature_noise * eps`` with a
fixed random ``W_{m,t}`` per modality and ``eps`` drawn once per value of the block (items that agree on the block
look the same in that modality). A fifth modality, ``noise``, is Gaussian noise of the same scale drawn per item,
independent of every factor. A user's next item after item ``i`` is ``j`` with probability ``softmax_j(sharpness * #{k: f_jk =
f_ik + 1 mod values})``: every factor matters, so an encoder that sees one more block can rank the next item better,
and no modality can stand in for another. The catalogue, sequences and the frozen encoders are drawn per seed.

Encoders: one tiny random BERT per modality (``transformers.BertModel`` built from a config, reading the feature
vectors as ``inputs_embeds``, mean pooled, no dropout), frozen except where an arm tunes it. Arms, all on the same
SASRec, in-batch softmax loss with the logQ correction, data and steps:

- Full fine-tuning / LoRA (peft, query and value) / Frozen features with late fusion: ``BackboneItemEncoder`` (last
  layer of each encoder, projected and concatenated), as in the IISAN papers' baselines;
- Adapters: Houlsby bottleneck adapters after each attention and feed-forward output of every frozen encoder, on
  the same head (``BackboneItemEncoder`` with ``tuning="adapter"``);
- IISAN-style pairwise: per-modality SANs + one inter-modal SAN per pair + concatenation (``CROSSANModel`` with
  ``cross_modal="pairwise", fusion="concat"``);
- CROSSAN without MoMEF (``fusion="concat"``) and CROSSAN (MoMEF): per-modality SANs + one shared cross-modal SAN.

CROSSAN has no official code; ``CROSSANModel`` is hfgen's reconstruction (see ``hfgen/adapters/crossan.py``).
Side-network arms train on cached frozen states (the decoupled design allows it); the others run their encoders
forward and backward every step, so time per step includes that.

Protocol (leak-free): leave-one-out split, full ranking over every item with each user's history masked (the
candidate set never depends on the label), test HR@10 / NDCG@10 at the epoch with the best validation HR@10. Each
arm gets the same budget: the same epochs and batches, and one run per learning rate of the same grid (one learning
rate for all its trainable weights) on the first seed, the rate chosen on validation HR@10 and used for every seed
(``--tune-every-seed``: the grid on every seed). A reference row (not
trained) ranks by the true factors of the visible modalities (ties count against the target, as they do for a
model, whose scores tie on items with the same visible content): the ceiling of each condition. Conditions: 2, 3, 4 encoders, and 4 encoders + the noise encoder.

Writes ``docs/results/raw/crossan/synthetic.json`` and ``docs/figures/crossan_synthetic.png`` (mean and 95%
t-interval over seeds).

    OMP_NUM_THREADS=1 python scripts/crossan_synthetic.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel, TrainerCallback

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, CROSSANConfig, CROSSANModel
from hfgen.data.recommendation import RecommendationData
from hfgen.metrics.ranking import hit_rate_at_k, mask_history, ndcg_at_k, target_ranks
from hfgen.models import SASRecConfig, SASRecModel
from hfgen.results import interval, write_record
from hfgen.trainers.sequential_rec import SequentialRecConfig, SequentialRecTrainer

ROOT = Path(__file__).resolve().parents[1]
FACTOR_MODALITIES = ("text", "image", "audio", "video")
NOISE_MODALITY = "noise"
CONDITIONS = {"2": FACTOR_MODALITIES[:2], "3": FACTOR_MODALITIES[:3], "4": FACTOR_MODALITIES,
              "4+noise": (*FACTOR_MODALITIES, NOISE_MODALITY)}
ARMS = ("Full fine-tuning", "LoRA", "Adapters (Houlsby)", "Late fusion (frozen)", "IISAN-style pairwise",
        "CROSSAN without MoMEF", "CROSSAN (MoMEF)")
ORACLE = "Reference: true factors of the visible modalities"
BACKBONE_TUNING = {"Full fine-tuning": "full", "LoRA": "lora", "Adapters (Houlsby)": "adapter",
                   "Late fusion (frozen)": "frozen"}
SIDE_NETWORK = {"IISAN-style pairwise": {"cross_modal": "pairwise", "fusion": "concat"},
                "CROSSAN without MoMEF": {"fusion": "concat"}, "CROSSAN (MoMEF)": {}}


def arm_key(arm: str, condition: str) -> str:
    """The record's arm name: ``"<arm> | <condition> encoders"``."""
    return f"{arm} | {condition} encoders"


# ------------------------------------------------------------------------------------------------- the data


def make_complementary_data(num_users: int, num_items: int, factors_per_modality: int = 2, values: int = 3,
                            tokens: int = 4, width: int = 32, feature_noise: float = 1.0, sharpness: float = 1.5,
                            min_length: int = 5, max_length: int = 12, seed: int = 0) -> RecommendationData:
    """Items whose factors are split among four modalities (one block each) plus a pure-noise modality.

    A factor modality's content is a fixed random function of its block alone (a random projection of the block's
    one-hot code plus a random distortion per block value), so items that agree on the block have the same content
    there and nothing else about the item leaks through it. The noise modality's content is drawn per item,
    independently of every factor.

    ``item_inputs[m] = {"inputs_embeds": [n_items + 1, tokens, width]}`` (row 0: the padding item);
    ``item_factors`` holds every item's factors ``[n_items + 1, 4 * factors_per_modality]``, block ``b`` (columns
    ``b * factors_per_modality ...``) being what modality ``FACTOR_MODALITIES[b]`` shows.
    """
    if num_items < 2 or num_users < 1 or values < 2 or factors_per_modality < 1:
        raise ValueError("Need num_items >= 2, num_users >= 1, values >= 2 and factors_per_modality >= 1, got "
                         f"{num_items}, {num_users}, {values}, {factors_per_modality}.")
    if not 3 <= min_length <= max_length:
        raise ValueError(f"Need 3 <= `min_length` <= `max_length`, got {min_length}, {max_length}.")
    rng = np.random.default_rng(seed)
    n_factors = factors_per_modality * len(FACTOR_MODALITIES)
    factors = rng.integers(0, values, (num_items, n_factors))  # item i + 1 has factors[i]
    matches = ((factors[:, None, :] + 1) % values == factors[None, :, :]).sum(-1)  # [from, to]
    logits = sharpness * matches
    transition = np.exp(logits - logits.max(1, keepdims=True))
    transition /= transition.sum(1, keepdims=True)
    sequences = []
    for _ in range(num_users):
        item = int(rng.integers(num_items))
        seq = [item + 1]
        for _ in range(int(rng.integers(min_length, max_length + 1)) - 1):
            item = int(rng.choice(num_items, p=transition[item]))
            seq.append(item + 1)
        sequences.append(seq)
    all_factors = np.concatenate([np.zeros((1, n_factors), dtype=int), factors])
    inputs = {}
    for b, m in enumerate(FACTOR_MODALITIES):
        block = all_factors[:, b * factors_per_modality:(b + 1) * factors_per_modality]
        code = np.eye(values)[block].reshape(len(block), -1)  # [n + 1, factors_per_modality * values]
        mixing = rng.standard_normal((tokens, code.shape[1], width))
        # the distortion is drawn per block value, not per item: items that agree on the block look the same here
        _, block_value = np.unique(block, axis=0, return_inverse=True)
        distortion = rng.standard_normal((values ** factors_per_modality, tokens, width))[block_value.reshape(-1)]
        features = np.einsum("nc,tcw->ntw", code, mixing) + feature_noise * distortion
        inputs[m] = {"inputs_embeds": torch.tensor(features, dtype=torch.float32)}
    scale = math.sqrt(factors_per_modality + feature_noise ** 2)  # the factor modalities' per-coordinate spread
    noise = scale * rng.standard_normal((num_items + 1, tokens, width))
    inputs[NOISE_MODALITY] = {"inputs_embeds": torch.tensor(noise, dtype=torch.float32)}
    return RecommendationData(item_ids=["<pad>"] + [f"item{i}" for i in range(1, num_items + 1)],
                              titles=[""] * (num_items + 1), sequences=sequences,
                              user_ids=[f"user{u}" for u in range(num_users)], item_inputs=inputs,
                              item_factors=torch.tensor(all_factors))


def make_encoders(modalities, width: int, layers: int, tokens: int, seed: int) -> dict[str, BertModel]:
    """One tiny random BERT per modality, reading ``inputs_embeds`` (no dropout: cached == live states)."""
    encoders = {}
    for j, m in enumerate(modalities):
        torch.manual_seed(1000 * seed + j)
        config = BertConfig(vocab_size=1, hidden_size=width, num_hidden_layers=layers, num_attention_heads=4,
                            intermediate_size=2 * width, max_position_embeddings=tokens, type_vocab_size=1,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        encoders[m] = BertModel(config, add_pooling_layer=False).eval()
    return encoders


def reference_metrics(data: RecommendationData, split, modalities, factors_per_modality: int,
                      values: int) -> dict[str, float]:
    """HR@10 / NDCG@10 of ranking by the number of matched next-step factors the visible modalities show.

    With every factor visible this orders items as the true transition does (the Bayes ranking from the last item);
    with fewer, items that differ only in hidden factors tie, and ties count against the target
    (``hfgen.metrics.ranking.target_ranks``), as they do for any model of the visible content. Items with the same
    number of matches but different visible content are put in a random order.
    """
    visible = [b for b, m in enumerate(FACTOR_MODALITIES) if m in modalities]
    cols = [b * factors_per_modality + k for b in visible for k in range(factors_per_modality)]
    f = data.item_factors[:, cols]
    last = torch.tensor([ids[-1] for ids in split["item_ids"]])
    scores = ((f[last][:, None, :] + 1) % values == f[None, :, :]).sum(-1).double()
    # items with equal scores but different visible content are put in a random order; items with the same
    # visible content keep the same score (no model of that content can tell them apart)
    _, content = torch.unique(f, dim=0, return_inverse=True)
    g = torch.Generator().manual_seed(0)
    scores = scores + 1e-3 * torch.rand(int(content.max()) + 1, generator=g, dtype=torch.float64)[content]
    width = max(len(h) for h in split["history"])
    history = torch.tensor([h + [0] * (width - len(h)) for h in split["history"]])
    ranks = target_ranks(mask_history(scores, history), torch.tensor(split["labels"]))
    return {"hr@10": hit_rate_at_k(ranks, 10), "ndcg@10": ndcg_at_k(ranks, 10)}


# ------------------------------------------------------------------------------------------------- the arms


def build_item_encoder(arm: str, modalities, encoders: dict, data: RecommendationData, a) -> nn.Module:
    """The arm's item encoder over fresh copies of the frozen encoders (fine-tuning changes them)."""
    backbones = {m: copy.deepcopy(encoders[m]) for m in modalities}
    common = {"modalities": list(modalities), "pooling": "mean", "embedding_dim": a.embedding_dim}
    if arm in BACKBONE_TUNING:
        config = BackboneItemEncoderConfig(tuning=BACKBONE_TUNING[arm], lora_r=a.lora_r, lora_alpha=a.lora_r,
                                           adapter_size=a.adapter_bottleneck, **common)
        item_encoder = BackboneItemEncoder(config, backbones)
    elif arm in SIDE_NETWORK:
        config = CROSSANConfig(bottleneck_size=a.side_bottleneck, **common, **SIDE_NETWORK[arm])
        item_encoder = CROSSANModel(config, backbones)
    else:
        raise ValueError(f"Unknown arm {arm!r}; known: {ARMS}.")
    item_encoder.set_item_inputs({m: data.item_inputs[m] for m in modalities})
    if item_encoder.frozen_backbones:  # decoupled: the frozen states are computed once, the encoders never run again
        item_encoder.cache_hidden_states(progress_bar=False)
        item_encoder.backbones = nn.ModuleDict()  # so the trainer's per-step module walks skip them
    return item_encoder


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class _BestValidation(TrainerCallback):
    """Keeps the test metrics (and MoMEF's mean router weights) of the epoch with the best validation HR@10."""

    def __init__(self):
        self.best, self.trainer, self.router = None, None, None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        score = (metrics["eval_valid_hr@10"], metrics["eval_valid_ndcg@10"])
        if self.best is None or score > (self.best["eval_valid_hr@10"], self.best["eval_valid_ndcg@10"]):
            self.best = dict(metrics)
            encoder = self.trainer.model.item_encoder
            if getattr(encoder, "router", None) is not None:
                with torch.no_grad():
                    ids = torch.arange(1, encoder.num_items, device=encoder.device)
                    weights = encoder(item_ids=ids).router_weights.mean(0)
                self.router = dict(zip(encoder.expert_names, weights.tolist()))


class _StepTimer(TrainerCallback):
    """Wall seconds of every optimiser step (forward, backward, update)."""

    def __init__(self, cuda: bool):
        self.cuda, self.seconds, self.start = cuda, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.start)


def train_once(arm: str, modalities, encoders, data, splits, lr: float, seed: int, a) -> dict:
    """One training run: test metrics at the best validation epoch, step times, trainable parameters."""
    torch.manual_seed(seed)
    cpu_start = time.process_time()
    item_encoder = build_item_encoder(arm, modalities, encoders, data, a)
    recommender = SASRecModel(SASRecConfig(hidden_size=a.embedding_dim, max_seq_len=a.max_seq_len))
    best, timer = _BestValidation(), _StepTimer(a.device == "cuda")
    with tempfile.TemporaryDirectory(prefix="crossan_synthetic_") as output_dir:
        args = SequentialRecConfig(output_dir=output_dir, seed=seed,
                                   num_train_epochs=a.epochs, per_device_train_batch_size=a.batch_size,
                                   learning_rate=lr, adapter_learning_rate=lr, backbone_learning_rate=lr,
                                   max_seq_len=a.max_seq_len, eval_strategy="epoch", save_strategy="no",
                                   logging_strategy="no", early_stopping_patience=0, disable_tqdm=True,
                                   use_cpu=a.device == "cpu", report_to="none")
        trainer = SequentialRecTrainer(recommender, args, splits["train"],
                                       {"valid": splits["validation"], "test": splits["test"]},
                                       item_encoder=item_encoder, item_popularity=data.popularity(),
                                       callbacks=[best, timer])
        best.trainer = trainer
        trainer.train()
    return {"valid": (best.best["eval_valid_hr@10"], best.best["eval_valid_ndcg@10"]),
            "hr@10": best.best["eval_test_hr@10"], "ndcg@10": best.best["eval_test_ndcg@10"],
            "step_seconds": timer.seconds, "trainable_params": trainable_parameters(item_encoder),
            "router": best.router, "cpu_seconds": time.process_time() - cpu_start}


# ------------------------------------------------------------------------------------------------- the study


def plot(metrics: dict, conditions, arms, path: Path) -> None:
    """HR@10 and NDCG@10 against the number of encoders (mean, 95% t-interval band over seeds); the noise
    condition as a point with its interval at x = 4.25."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    counted = [c for c in conditions if c.isdigit()]
    for i, name in enumerate([*arms, ORACLE]):
        color, style = f"C{i}", "--" if name == ORACLE else "-"
        for ax, metric in zip(axes[:2], ("hr@10", "ndcg@10")):
            xs = [int(c) for c in counted]
            ivs = [interval(metrics[arm_key(name, c)][metric]) for c in counted]
            ax.plot(xs, [v.mean for v in ivs], style, marker="o", color=color, label=name)
            ax.fill_between(xs, [v.low for v in ivs], [v.high for v in ivs], color=color, alpha=0.15)
            if "4+noise" in conditions:
                v = interval(metrics[arm_key(name, "4+noise")][metric])
                ax.errorbar([4.25], [v.mean], yerr=[[v.mean - v.low], [v.high - v.mean]], color=color, marker="x",
                            capsize=3)
            ax.set(xlabel="modality encoders (x at 4.25: 4 + a pure-noise encoder)", ylabel=f"test {metric}",
                   title=f"{metric}, mean and 95% t-interval over seeds")
        if name != ORACLE:
            xs = [len(CONDITIONS[c]) for c in conditions]
            axes[2].plot(xs, [metrics[arm_key(name, c)]["trainable_params"][0] for c in conditions], marker="o",
                         color=color, label=name)
    axes[2].set(xlabel="modality encoders (5: 4 + noise)", ylabel="trainable parameters of the item encoder",
                yscale="log", title="trainable parameters")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def claim_settings(metrics: dict) -> dict:
    """The paper's claim checked (fixed before the run), when both of its arms ran: CROSSAN (MoMEF) beats IISAN-style
    pairwise side networks on test HR@10 with four encoders (paired by seed)."""
    arm, baseline = arm_key("CROSSAN (MoMEF)", "4"), arm_key("IISAN-style pairwise", "4")
    if arm not in metrics or baseline not in metrics:
        return {}
    return {"baseline": baseline,
            "claim": {"text": "CROSSAN with MoMEF recommends better than IISAN-style pairwise side networks when "
                              "adapting four modality encoders", "arm": arm, "baseline": baseline, "metric": "hr@10",
                      "higher_is_better": True}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--factors-per-modality", type=int, default=2)
    p.add_argument("--values", type=int, default=3, help="Levels of every latent factor.")
    p.add_argument("--sharpness", type=float, default=1.5, help="How strongly the next item follows the factors.")
    p.add_argument("--feature-noise", type=float, default=1.0)
    p.add_argument("--tokens", type=int, default=4, help="Feature vectors per item and modality.")
    p.add_argument("--width", type=int, default=32, help="Width of every encoder.")
    p.add_argument("--layers", type=int, default=3, help="Depth of every encoder.")
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--max-seq-len", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3], help="The learning-rate grid of every arm.")
    p.add_argument("--tune-every-seed", action="store_true",
                   help="Run the grid on every seed (default: on the first seed, whose choice the later seeds use).")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--adapter-bottleneck", type=int, default=8)
    p.add_argument("--side-bottleneck", type=int, default=16)
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM")
    p.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "figures")
    p.add_argument("--raw-dir", type=Path, default=None, help="where the record goes (default: docs/results/raw)")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`--device cuda` was given but torch sees no CUDA device.")
    started = time.time()
    metrics: dict[str, dict[str, list]] = {}
    chosen_lrs: dict[str, float] = {}

    def put(key, name, value):
        metrics.setdefault(key, {}).setdefault(name, []).append(value)

    for seed in a.seeds:
        data = make_complementary_data(a.users, a.items, a.factors_per_modality, a.values, a.tokens, a.width,
                                       a.feature_noise, a.sharpness, seed=seed)
        splits = data.leave_one_out(a.max_seq_len)
        encoders = make_encoders([*FACTOR_MODALITIES, NOISE_MODALITY], a.width, a.layers, a.tokens, seed)
        for condition in a.conditions:
            modalities = CONDITIONS[condition]
            reference = reference_metrics(data, splits["test"], modalities, a.factors_per_modality, a.values)
            for name, value in reference.items():
                put(arm_key(ORACLE, condition), name, value)
            for arm in a.arms:
                key = arm_key(arm, condition)
                grid = a.lrs if a.tune_every_seed or key not in chosen_lrs else [chosen_lrs[key]]
                runs = {lr: train_once(arm, modalities, encoders, data, splits, lr, seed, a) for lr in grid}
                lr = max(runs, key=lambda r: runs[r]["valid"])  # chosen on validation, never on the test
                chosen_lrs.setdefault(key, lr)  # the first seed's choice serves the later seeds
                chosen = runs[lr]
                for name in ("hr@10", "ndcg@10", "trainable_params"):
                    put(key, name, chosen[name])
                put(key, "valid_hr@10", chosen["valid"][0])
                put(key, "chosen_lr", lr)
                put(key, "step_ms", 1000 * statistics.median(chosen["step_seconds"]))
                put(key, "cpu_seconds", chosen["cpu_seconds"])
                for expert, weight in (chosen["router"] or {}).items():  # MoMEF: mean router weight per expert
                    put(key, f"router_{expert}", weight)
                print(f"seed {seed} | {key}: lr {lr:g}  test HR@10 {chosen['hr@10']:.4f}  NDCG@10 "
                      f"{chosen['ndcg@10']:.4f}  params {chosen['trainable_params']}  "
                      f"{metrics[key]['step_ms'][-1]:.1f} ms/step  {metrics[key]['cpu_seconds'][-1]:.1f} CPU s "
                      f"({time.time() - started:.0f} s)", flush=True)

    figure = a.figures_dir / "crossan_synthetic.png"
    plot(metrics, a.conditions, a.arms, figure)
    steps = math.ceil(len(splits["train"]) / a.batch_size) * a.epochs
    tuned = "on every seed" if a.tune_every_seed else f"on seed {a.seeds[0]}, its choice used for every seed"
    budget = (f"{a.epochs} epochs x {math.ceil(len(splits['train']) / a.batch_size)} batches of {a.batch_size} users "
              f"= {steps} steps per run; learning-rate grid {a.lrs} (one rate for every trainable weight) run {tuned}, "
              "the rate chosen on validation HR@10; test at the epoch of best validation HR@10")
    record = write_record(
        "crossan", "synthetic", seeds=a.seeds, metrics=metrics, started=started, device=a.device, raw_dir=a.raw_dir,
        figures=[figure],
        settings={"conditions": {c: list(CONDITIONS[c]) for c in a.conditions}, "arms": list(a.arms),
                  "reference": ORACLE,
                  "data": {"users": a.users, "items": a.items, "factors_per_modality": a.factors_per_modality,
                           "values": a.values, "sharpness": a.sharpness, "feature_noise": a.feature_noise,
                           "tokens": a.tokens},
                  "encoders": f"random BertModel per modality, width {a.width}, {a.layers} layers, 4 heads, "
                              "inputs_embeds, mean pooling, no dropout",
                  "recommender": f"SASRec d={a.embedding_dim}, 2 blocks, 2 heads, {a.max_seq_len} items; in-batch "
                                 "softmax (one candidate per slot) with logQ; constant lr, no clipping",
                  "arm_sizes": {"lora_r": a.lora_r, "adapter_bottleneck": a.adapter_bottleneck,
                                "side_bottleneck": a.side_bottleneck},
                  "lrs": a.lrs, "tune_every_seed": a.tune_every_seed, "epochs": a.epochs, "batch_size": a.batch_size,
                  "train_steps": steps,
                  "budget": {arm: budget for arm in a.arms},
                  "higher_is_better": {"hr@10": True, "ndcg@10": True, "valid_hr@10": True, "step_ms": False,
                                       "trainable_params": False, "cpu_seconds": False},
                  **claim_settings(metrics)})
    print(f"wrote {record}")
    return metrics, record


if __name__ == "__main__":
    main()
