"""MF^2 + DFN on synthetic faces: global-only vs global + local pretraining, then DFN vs full fine-tuning vs linear probe.

1. Pretrain two tiny MF^2 models with MF2Trainer on the same faces and seed: ``local_loss_weight=0``
   (global-only) and ``1`` (global + local). Report zero-shot emotion accuracy and AU F1.
2. Adapt each to AU detection + emotion recognition on a labelled split:
   - DFN (side network on cached per-layer states of the frozen MF^2),
   - linear probe (linear heads on the frozen last-layer global and AU features),
   - full fine-tuning (the same heads, the whole vision side of MF^2 trained),
   and report mean AU F1, emotion accuracy, trainable parameters, training time and the peak growth
   of the process's resident memory while training (a rough CPU stand-in for GPU peak memory).

Writes two raw records with every per-seed value, ``docs/results/raw/mf2/face_au_zero_shot.json`` and
``docs/results/raw/mf2/face_au_adaptation.json``, and the figure ``docs/figures/mf2_adaptation.png``; then
``python scripts/collect_results.py`` renders them (mean and 95% t-interval over seeds, paired differences).

    OMP_NUM_THREADS=1 python scripts/face_au.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hfgen.adapters.dfn import DFNConfig, DFNModel
from hfgen.data.faces import build_face_tokenizer, make_synthetic_faces
from hfgen.demos.mf2 import pretrain, zero_shot_scores
from hfgen.metrics.face import au_f1, emotion_accuracy
from hfgen.results import interval, write_record

ROOT = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Peak growth of resident memory (MB) while the block runs, sampled every 5 ms from /proc/self/statm."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self):
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.mb = self.peak - self.base


class LastLayerHeads(nn.Module):
    """Linear probe / full fine-tuning head: AU logit ``w_k · a_k + b_k`` and emotion ``W [c; a_1..a_K] + b``."""

    def __init__(self, mf2, train_backbone: bool):
        super().__init__()
        self.mf2 = mf2
        D, K, C = mf2.config.vision_config.hidden_size, len(mf2.config.au_names), len(mf2.config.emotion_names)
        self.au_weight = nn.Parameter(torch.randn(K, D) * 0.02)
        self.au_bias = nn.Parameter(torch.zeros(K))
        self.emotion_head = nn.Linear(D * (K + 1), C)
        self.train_backbone = train_backbone
        mf2.requires_grad_(False)
        if train_backbone:  # the image side of MF^2 (the text tower is not used by these tasks)
            for module in (mf2.vision_model, mf2.au_attention, mf2.au_norm):
                module.requires_grad_(True)
            mf2.au_queries.requires_grad_(True)

    def features(self, pixel_values):
        with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
            h = self.mf2.image_tokens(pixel_values)[0]
            return h[:, 0], self.mf2._au_readout(h)

    def forward(self, pixel_values=None, global_states=None, au_states=None):
        c, a = self.features(pixel_values) if pixel_values is not None else (global_states[:, -1], au_states[:, -1])
        au_logits = (a * self.au_weight).sum(-1) + self.au_bias
        return au_logits, self.emotion_head(torch.cat([c, a.flatten(1)], -1))


def fit(model, inputs, y_au, y_emo, steps, lr, batch_size=64, seed=0):
    """AdamW on ``BCE(AU) + CE(emotion)``; ``inputs`` is a dict of tensors indexed by sample."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    n = len(y_au)
    model.train()
    if isinstance(model, LastLayerHeads) and not model.train_backbone:
        model.mf2.eval()
    for _ in range(steps):
        idx = torch.randint(n, (batch_size,), generator=g)
        out = model(**{k: v[idx] for k, v in inputs.items()})
        au_logits, emo_logits = (out.au_logits, out.emotion_logits) if hasattr(out, "au_logits") else out
        loss = F.binary_cross_entropy_with_logits(au_logits, y_au[idx]) + F.cross_entropy(emo_logits, y_emo[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return sum(p.numel() for p in params)


@torch.no_grad()
def predict(model, inputs):
    model.eval()
    out = model(**inputs)
    au_logits, emo_logits = (out.au_logits, out.emotion_logits) if hasattr(out, "au_logits") else out
    return au_logits.numpy(), emo_logits.numpy()


def adapt(mf2, method, train, test, steps, seed):
    """Train one adaptation method on ``train``; returns its scores, trainable params, seconds and MB."""
    mf2 = copy.deepcopy(mf2)
    y_au, y_emo = torch.from_numpy(train.au_labels), torch.from_numpy(train.emotions).long()
    px_train, px_test = train.pixel_values(), test.pixel_values()
    torch.manual_seed(seed)
    start = time.perf_counter()
    with PeakRSS() as mem:
        if method == "full fine-tuning":
            model = LastLayerHeads(mf2, train_backbone=True)
            n_params = fit(model, {"pixel_values": px_train}, y_au, y_emo, steps, lr=5e-4, seed=seed)
            test_inputs = {"pixel_values": px_test}
        else:
            layers = "every:1" if method == "DFN" else "last"
            dfn = DFNModel(DFNConfig(layers=layers, bottleneck_size=16), mf2)
            train_inputs = dfn.cache_states(px_train)  # the frozen MF^2 runs once
            model = dfn if method == "DFN" else LastLayerHeads(mf2, train_backbone=False)
            n_params = fit(model, train_inputs, y_au, y_emo, steps, lr=3e-3, seed=seed)
            test_inputs = dfn.cache_states(px_test)
    seconds = time.perf_counter() - start
    au_logits, emo_logits = predict(model, test_inputs)
    return {"mean_au_f1": au_f1(au_logits, test.au_labels, threshold=0.0)["mean_f1"],
            "emotion_accuracy": emotion_accuracy(emo_logits, test.emotions),
            "trainable_params": n_params, "seconds": seconds, "peak_rss_mb": mem.mb}


def run_seed(seed, steps, adapt_steps, n_pretrain, n_adapt, n_test, output_dir):
    """One full run (both pretrainings, three adaptations each) with its own data, init and order seed."""
    torch.manual_seed(seed)
    tok = build_face_tokenizer()
    # disjoint seed ranges per split so no two seeds share faces across splits
    pre = make_synthetic_faces(n_pretrain, seed=3 * seed)
    adapt_train = make_synthetic_faces(n_adapt, seed=3 * seed + 1)
    test = make_synthetic_faces(n_test, seed=3 * seed + 2)
    rows, zero_shot = [], {}
    for name, weight in (("global-only", 0.0), ("global+local", 1.0)):
        t0 = time.perf_counter()
        mf2 = pretrain(pre, tok, Path(output_dir) / f"seed{seed}" / name, local_loss_weight=weight, max_steps=steps,
                       seed=seed, progress_bar=False)
        zero_shot[name] = {**zero_shot_scores(mf2, tok, test), "pretrain_seconds": time.perf_counter() - t0}
        print(f"[seed {seed}] [{name}] zero-shot: emotion acc {zero_shot[name]['emotion_accuracy']:.3f}, "
              f"AU F1 {zero_shot[name]['mean_f1']:.3f}", flush=True)
        for method in METHODS:
            r = adapt(mf2, method, adapt_train, test, adapt_steps, seed)
            rows.append({"seed": seed, "pretraining": name, "method": method, **r})
            print(f"[seed {seed}] [{name}] {method}: AU F1 {r['mean_au_f1']:.3f}, emotion acc "
                  f"{r['emotion_accuracy']:.3f}, {r['trainable_params']:,d} params, {r['seconds']:.1f}s, "
                  f"+{r['peak_rss_mb']:.0f} MB", flush=True)
    return rows, zero_shot


METHODS = ("linear probe", "DFN", "full fine-tuning")
PRETRAININGS = ("global-only", "global+local")


def main(steps=400, adapt_steps=300, n_pretrain=2000, n_adapt=800, n_test=400, seeds=(0, 1, 2),
         out_png=ROOT / "docs/figures/mf2_adaptation.png", output_dir="/tmp/hfgen-face-au", raw_dir=None):
    """Run every seed; write the figure and the two records. Returns ``(rows, zero_shot, record paths)`` with one
    row per (seed, pretraining, method) and ``zero_shot[(seed, pretraining)]``."""
    started = time.time()
    rows, zero_shot = [], {}
    for seed in seeds:
        r, z = run_seed(seed, steps, adapt_steps, n_pretrain, n_adapt, n_test, output_dir)
        rows += r
        zero_shot.update({(seed, k): v for k, v in z.items()})
    settings = dict(steps=steps, adapt_steps=adapt_steps, n_pretrain=n_pretrain, n_adapt=n_adapt, n_test=n_test,
                    data="synthetic faces, disjoint seeds per split")
    plot(rows, out_png)
    zero = {pre: {key: [zero_shot[(s, pre)][key] for s in seeds] for key in ("mean_f1", "emotion_accuracy")}
            for pre in PRETRAININGS}
    paths = [write_record(
        "mf2", "face_au_zero_shot", seeds=seeds, metrics=zero, started=started, raw_dir=raw_dir,
        settings={**settings, "baseline": "global-only",
                  "higher_is_better": {"mean_f1": True, "emotion_accuracy": True},
                  "claim": {"text": "local (per-AU) alignment improves zero-shot AU recognition over global-only",
                            "arm": "global+local", "baseline": "global-only", "metric": "mean_f1"}})]
    adapted = {f"{pre} / {method}": {key: [r[key] for r in rows if r["pretraining"] == pre and r["method"] == method]
                                     for key in ("mean_au_f1", "emotion_accuracy", "trainable_params", "seconds",
                                                 "peak_rss_mb")}
               for pre in PRETRAININGS for method in METHODS}
    paths.append(write_record(
        "mf2", "face_au_adaptation", seeds=seeds, metrics=adapted, started=started, raw_dir=raw_dir,
        figures=[out_png],
        settings={**settings, "baseline": "global+local / full fine-tuning",
                  "higher_is_better": {"mean_au_f1": True, "emotion_accuracy": True}}))
    return rows, zero_shot, paths


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    x = np.arange(len(METHODS))
    for k, pre in enumerate(("global-only", "global+local")):
        for ax, key in zip(axes, ("mean_au_f1", "emotion_accuracy")):
            stats = [interval([r[key] for r in rows if r["pretraining"] == pre and r["method"] == m]) for m in METHODS]
            ax.bar(x + 0.4 * k - 0.2, [s.mean for s in stats], 0.4, yerr=[s.mean - s.low for s in stats], capsize=3,
                   label=pre)
            ax.set_xticks(x, METHODS, fontsize=7)
            ax.set_title(key.replace("_", " ") + " (mean, 95% t-interval over seeds)", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--adapt-steps", type=int, default=300)
    p.add_argument("--n-pretrain", type=int, default=2000)
    p.add_argument("--n-adapt", type=int, default=800)
    p.add_argument("--n-test", type=int, default=400)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out-png", default=ROOT / "docs/figures/mf2_adaptation.png")
    p.add_argument("--raw-dir", default=None, help="where the records go (default: docs/results/raw)")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    main(a.steps, a.adapt_steps, a.n_pretrain, a.n_adapt, a.n_test, a.seeds, a.out_png, raw_dir=a.raw_dir)
