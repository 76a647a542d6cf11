"""GFT vs CFG on a 2-D class-conditional benchmark whose true distribution is known: fidelity–diversity over guidance.

Eight classes, each a different shape (circle, square, plus, X, spiral, sine, triangle, figure-eight), all centred on
the origin so that their supports cross, each drawn uniformly along its curve with Gaussian thickness σ = 0.03.
Because the truth is known, every quality number is exact up to sampling noise:

- ``sliced_w2``: per-class sliced Wasserstein-2 distance between the samples of a class and as many fresh draws of
  that class (averaged over the classes);
- ``support_distance``: mean Euclidean distance of a sample to its class's curve (fidelity; the data give
  about σ·√(2/π) ≈ 0.024);
- ``precision``: fraction of samples within 3σ of their class's curve (fidelity);
- ``coverage``: fraction of the 32 equal-length pieces of the class's curve that receive at least a quarter of their
  fair share of the class's near-curve samples (diversity; the data give 1).

Arms (one small MLP denoiser with a class embedding, the same architecture, data, batch, optimizer and steps):

- CFG: conditional training with 10% label dropout (``GFTTrainer`` with β ≡ 1), sampled with classifier-free
  guidance at scale s (two network evaluations a step, batched);
- GFT: the GFT objective exactly as ``hfgen.trainers.GFTTrainer`` defines it (β ~ U(0, 1), stop-gradient null branch
  at β = 1 in eval mode, dropped rows fed β = 1), β entering in the DiT ("timestep") form through the time
  embedding's ``cond_proj``; sampled in one pass at β = 1/s.

Both are sampled with the same DDIM steps and initial noise at every s of the grid. Equal tuning: each arm picks its
own learning rate from the same grid, together with the scale its claim is checked at, by the lowest
``sliced_w2`` against *validation* draws on a tuning seed that is not an evaluation seed; the evaluation seeds then
train afresh and are scored against separate *test* draws. Cost per sample: network evaluations and wall seconds of
the sampler; training seconds per arm. The claim checked (margin fixed before the run): GFT at its validation-chosen
β matches CFG at its validation-chosen scale in ``sliced_w2`` within ±``CLAIM_MARGIN`` (the whole paired 95%
interval inside the margin).

Writes the raw record ``docs/results/raw/gft/toy2d.json`` and ``docs/figures/gft_toy2d.png``,
``gft_toy2d_samples.png``.

    OMP_NUM_THREADS=1 python scripts/gft_toy2d.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.results import write_record

ROOT = Path(__file__).resolve().parents[1]
SIGMA = 0.03  # thickness of every shape
COVERAGE_BINS = 32
CLAIM_MARGIN = 0.01  # sliced-W2 equivalence margin, fixed before the run: a quarter of the metric's finite-sample
# floor at 512 draws per class (two independent true samples are 0.041 apart)
LR_GRID = (1e-3, 2e-3, 4e-3)  # the same three learning rates for both arms
TUNING_SEED = 1000  # the seed the learning rate and the claim's scale are chosen on (not an evaluation seed)


# ------------------------------------------------------------------------------------------- the true classes


def _polyline(points: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(points[i], points[i + 1]) for i in range(len(points) - 1)]


def _curve(fn, t0: float, t1: float, n: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
    t = torch.linspace(t0, t1, n + 1, dtype=torch.float64)
    return _polyline(torch.stack(fn(t), -1))


def _regular_polygon(corners: int, radius: float, phase: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    angles = phase + 2 * math.pi * torch.arange(corners + 1, dtype=torch.float64) / corners
    return _polyline(radius * torch.stack([angles.cos(), angles.sin()], -1))


def _segment(x0, y0, x1, y1):
    return [(torch.tensor([x0, y0], dtype=torch.float64), torch.tensor([x1, y1], dtype=torch.float64))]


SHAPES = {
    "circle": lambda: _curve(lambda t: (0.8 * t.cos(), 0.8 * t.sin()), 0, 2 * math.pi),
    "square": lambda: _regular_polygon(4, 0.6 * math.sqrt(2), math.pi / 4),
    "plus": lambda: _segment(-0.8, 0, 0.8, 0) + _segment(0, -0.8, 0, 0.8),
    "x": lambda: _segment(-0.6, -0.6, 0.6, 0.6) + _segment(-0.6, 0.6, 0.6, -0.6),
    "spiral": lambda: _curve(lambda t: ((0.15 + 0.65 * t / (4 * math.pi)) * t.cos(),
                                        (0.15 + 0.65 * t / (4 * math.pi)) * t.sin()), 0, 4 * math.pi),
    "sine": lambda: _curve(lambda t: (t, 0.5 * torch.sin(1.5 * math.pi * t / 0.8)), -0.8, 0.8),
    "triangle": lambda: _regular_polygon(3, 0.8, math.pi / 2),
    "figure_eight": lambda: _curve(lambda t: (0.8 * t.sin(), 0.8 * t.sin() * t.cos()), 0, 2 * math.pi),
}


class ShapeClass:
    """One class: the uniform distribution along a set of segments (a curve), blurred by N(0, σ²I)."""

    def __init__(self, segments: list[tuple[torch.Tensor, torch.Tensor]]):
        self.a = torch.stack([a for a, _ in segments])  # (S, 2) segment starts
        self.b = torch.stack([b for _, b in segments])  # (S, 2) segment ends
        self.length = (self.b - self.a).norm(dim=-1)  # (S,)
        self.start = torch.cat([torch.zeros(1, dtype=torch.float64), self.length.cumsum(0)[:-1]])  # arc position
        self.total = float(self.length.sum())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        segment = torch.multinomial(self.length, n, replacement=True, generator=generator)
        u = torch.rand(n, 1, generator=generator, dtype=torch.float64)
        on_curve = self.a[segment] + u * (self.b[segment] - self.a[segment])
        return (on_curve + SIGMA * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact distance of each point to the curve and the arc-length position (in [0, 1)) of its nearest point."""
        x = x.double()[:, None]  # (N, 1, 2)
        ab = self.b - self.a
        u = (((x - self.a) * ab).sum(-1) / (ab * ab).sum(-1)).clamp(0, 1)  # (N, S)
        distance = (x - (self.a + u[..., None] * ab)).norm(dim=-1)
        best, segment = distance.min(-1)
        position = (self.start[segment] + u.gather(1, segment[:, None])[:, 0] * self.length[segment]) / self.total
        return best, position.clamp(0, 1 - 1e-12)


CLASSES = [ShapeClass(build()) for build in SHAPES.values()]
NUM_CLASSES = len(CLASSES)


def draw(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_per_class`` true draws of every class (points ``(N, 2)``, labels ``(N,)``, class-major order)."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.cat([shape.sample(n_per_class, generator) for shape in CLASSES])
    return points, torch.arange(NUM_CLASSES).repeat_interleave(n_per_class)


def quality(points: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor, ref_labels: torch.Tensor) -> dict:
    """The four exact metrics, each averaged over the classes (``reference``: as many true draws per class)."""
    from hfgen.demos.analytic_precond import sliced_wasserstein

    per_class = {"sliced_w2": [], "support_distance": [], "precision": [], "coverage": []}
    for c, shape in enumerate(CLASSES):
        x = points[labels == c].cpu()
        distance, position = shape.project(x)
        near = distance < 3 * SIGMA
        counts = torch.bincount((position[near] * COVERAGE_BINS).long(), minlength=COVERAGE_BINS)
        per_class["sliced_w2"].append(sliced_wasserstein(x, reference[ref_labels == c], seed=c))
        per_class["support_distance"].append(float(distance.mean()))
        per_class["precision"].append(float(near.double().mean()))
        per_class["coverage"].append(float((counts >= len(x) / (4 * COVERAGE_BINS)).double().mean()))
    return {k: sum(v) / len(v) for k, v in per_class.items()}


# ------------------------------------------------------------------------------------------------ the model


@dataclass
class PointDenoiserOutput(BaseOutput):
    sample: torch.Tensor


class PointDenoiser(ModelMixin, ConfigMixin):
    """A residual SiLU MLP ε-predictor for 2-D points, with the call signature of a class-conditional
    ``UNet2DConditionModel`` (points are ``(B, 2, 1, 1)`` "images"), so that ``GFTTrainer`` trains it and
    ``GuidanceFreePipeline`` samples it unchanged.

    The timestep goes through Diffusers' ``Timesteps`` + ``TimestepEmbedding``; with ``time_cond_proj_dim`` set, GFT's
    β embedding (``timestep_cond``) is projected by the embedding's ``cond_proj`` and added to the timestep features
    before its MLP, as in the UNet. The class embedding (``num_class_embeds`` rows, the last one null) is added to the
    time embedding, which enters every residual block.
    """

    @register_to_config
    def __init__(self, in_channels: int = 2, sample_size: int = 1, num_class_embeds: int = NUM_CLASSES + 1,
                 hidden: int = 128, num_blocks: int = 3, freq_dim: int = 64, time_cond_proj_dim: int | None = None,
                 gft_beta_embedding: str = "timestep"):
        super().__init__()
        self.time_proj = Timesteps(freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(freq_dim, hidden, cond_proj_dim=time_cond_proj_dim)
        self.class_embedding = nn.Embedding(num_class_embeds, hidden)
        self.input = nn.Linear(in_channels, hidden)
        self.embedding_in = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_blocks))
        self.inner = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_blocks))
        self.outer = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_blocks))
        self.output = nn.Linear(hidden, in_channels)

    def forward(self, sample, timestep, timestep_cond=None, class_labels=None, encoder_hidden_states=None,
                return_dict: bool = True):
        x = sample.flatten(1)
        t = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(len(x))
        emb = self.time_embedding(self.time_proj(t).to(x.dtype), timestep_cond) + self.class_embedding(class_labels)
        emb = nn.functional.silu(emb)
        h = self.input(x)
        for embedding_in, inner, outer in zip(self.embedding_in, self.inner, self.outer):
            h = h + outer(nn.functional.silu(inner(nn.functional.silu(h)) + embedding_in(emb)))
        out = self.output(nn.functional.silu(h)).view_as(sample)
        return PointDenoiserOutput(sample=out) if return_dict else (out,)


# ------------------------------------------------------------------------------------------ train and sample


def train_arm(arm: str, points, labels, *, steps: int, lr: float, batch_size: int, seed: int, device: str,
              output_dir: Path) -> tuple[PointDenoiser, float]:
    """A fresh PointDenoiser trained with CFG's loss (``arm="CFG"``) or GFT's; returns it and the training seconds."""
    from hfgen.trainers import GFTConfig, GFTTrainer

    guidance_free = arm == "GFT"
    torch.manual_seed(seed)
    model = PointDenoiser(time_cond_proj_dim=64 if guidance_free else None)
    args = GFTConfig(output_dir=str(output_dir), beta_min=0.0 if guidance_free else 1.0, beta_max=1.0,
                     cond_drop_prob=0.1, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
                     lr_scheduler_type="cosine", warmup_steps=steps // 20, weight_decay=0.0, save_strategy="no",
                     report_to=[], seed=seed, logging_strategy="no", disable_tqdm=True,
                     dataloader_drop_last=True, use_cpu=torch.device(device).type == "cpu")
    dataset = [{"pixel_values": p.view(2, 1, 1), "labels": y} for p, y in zip(points, labels)]
    trainer = GFTTrainer(model, args, train_dataset=dataset)
    start = time.perf_counter()
    trainer.train()
    return model.eval(), time.perf_counter() - start


@torch.no_grad()
def sample_points(model, arm: str, labels, *, scale: float, steps: int, seed: int):
    """Points ``(N, 2)`` on the CPU, wall seconds, and network evaluations (rows through the model) per point."""
    from diffusers import DDIMScheduler

    from hfgen.pipelines import GuidanceFreePipeline

    pipe = GuidanceFreePipeline(unet=model, scheduler=DDIMScheduler(clip_sample=False))
    pipe.set_progress_bar_config(disable=True)
    rows = []
    hook = model.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    synchronize = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    out = pipe(class_labels=labels, guidance_scale=scale, guidance="free" if arm == "GFT" else "cfg",
               num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), output_type="latent").images
    synchronize()
    seconds = time.perf_counter() - start
    hook.remove()
    return out.flatten(1).cpu(), seconds, sum(rows) / len(labels)


# ------------------------------------------------------------------------------------------------ the study


def tune(args, train_data, validation) -> dict[str, dict]:
    """Each arm's learning rate and claim scale: the lowest validation sliced-W2 over (lr, s) on the tuning seed."""
    chosen = {}
    for arm in ("CFG", "GFT"):
        scores = {}
        for lr in args.lr_grid:
            model, _ = train_arm(arm, *train_data, steps=args.train_steps, lr=lr, batch_size=args.batch_size,
                                 seed=TUNING_SEED, device=args.device, output_dir=args.work_dir / f"tune_{arm}")
            for scale in args.scales:
                points, _, _ = sample_points(model, arm, validation[1], scale=scale, steps=args.ddim_steps,
                                             seed=TUNING_SEED + 1)
                scores[(lr, scale)] = quality(points, validation[1], *validation)["sliced_w2"]
                print(f"tuning {arm} lr={lr:g} s={scale:g}: validation sliced_w2 {scores[(lr, scale)]:.4f}", flush=True)
        lr, scale = min(scores, key=scores.get)
        chosen[arm] = {"lr": lr, "scale": scale, "validation_sliced_w2": {f"lr={k[0]:g} s={k[1]:g}": v
                                                                          for k, v in scores.items()}}
    return chosen


METRICS = ("sliced_w2", "support_distance", "precision", "coverage")
HIGHER_IS_BETTER = {"sliced_w2": False, "support_distance": False, "precision": True, "coverage": True,
                    "sampling_seconds_per_1k": False, "nfe_per_sample": False}


def plot(metrics: dict, scales, path: Path) -> None:
    """Fidelity–diversity (support distance vs coverage, 95% t-intervals in both directions) of GFT over β = 1/s
    against CFG over s, and sliced-W2 against s with interval bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hfgen.results import interval

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for arm, marker in (("CFG", "o"), ("GFT", "s")):
        rows = [metrics[f"{arm} s={s:g}"] for s in scales]
        cover = [interval(r["coverage"]) for r in rows]
        dist = [interval(r["support_distance"]) for r in rows]
        left.errorbar([c.mean for c in cover], [d.mean for d in dist], marker=marker, capsize=2,
                      xerr=[[c.mean - c.low for c in cover], [c.high - c.mean for c in cover]],
                      yerr=[[d.mean - d.low for d in dist], [d.high - d.mean for d in dist]],
                      label=arm + (" (β = 1/s, 1 call/step)" if arm == "GFT" else " (scale s, 2 calls/step)"))
        for s, c, d in zip(scales, cover, dist):
            left.annotate(f"{s:g}", (c.mean, d.mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
        sw = [interval(r["sliced_w2"]) for r in rows]
        right.plot(scales, [w.mean for w in sw], marker=marker, label=arm)
        right.fill_between(scales, [w.low for w in sw], [w.high for w in sw], alpha=0.2)
    data = metrics["data"]
    left.scatter([interval(data["coverage"]).mean], [interval(data["support_distance"]).mean], marker="*", s=120,
                 color="k", label="true distribution", zorder=3)
    right.axhline(interval(data["sliced_w2"]).mean, color="k", ls=":", label="true distribution (finite-sample floor)")
    left.set(xlabel="coverage of the class curve (diversity, higher is better)",
             ylabel="mean distance to the class curve (lower is better)",
             title="fidelity–diversity over guidance (label: s)")
    right.set(xscale="log", xlabel="guidance scale s (GFT: β = 1/s)", ylabel="per-class sliced W2 (lower is better)",
              title="distance to the true class distribution")
    right.set_xticks(scales, [f"{s:g}" for s in scales])
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_samples(panels: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for ax, (title, (points, labels)) in zip(axes, panels.items()):
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=0.5, vmin=0, vmax=9)
        ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), aspect="equal", xticks=[], yticks=[])
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-per-class", type=int, default=2000)
    parser.add_argument("--eval-per-class", type=int, default=512)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    parser.add_argument("--lr-grid", type=float, nargs="+", default=list(LR_GRID))
    parser.add_argument("--ddim-steps", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--raw-dir", type=Path, default=None, help="where the record goes (default: docs/results/raw)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/gft_toy2d"))
    args = parser.parse_args(argv)
    if TUNING_SEED in args.seeds:
        raise ValueError(f"`--seeds` must not contain the tuning seed {TUNING_SEED}.")
    started = time.time()
    # training draws, validation draws (tuning only) and test draws (scoring only) never share a seed
    tuning_train = draw(args.train_per_class, TUNING_SEED)
    validation = draw(args.eval_per_class, TUNING_SEED + 2)
    chosen = tune(args, tuning_train, validation)
    print({arm: {k: v for k, v in c.items() if k != "validation_sliced_w2"} for arm, c in chosen.items()}, flush=True)

    metrics: dict[str, dict[str, list]] = {"data": {m: [] for m in METRICS}}
    train_seconds = {"CFG": [], "GFT": []}
    panels = {}
    for seed in args.seeds:
        train_data = draw(args.train_per_class, 10 * seed + 1)
        test = draw(args.eval_per_class, 10 * seed + 2)
        floor = quality(draw(args.eval_per_class, 10 * seed + 3)[0], test[1], *test)
        for m in METRICS:
            metrics["data"][m].append(floor[m])
        for arm in ("CFG", "GFT"):
            model, seconds = train_arm(arm, *train_data, steps=args.train_steps, lr=chosen[arm]["lr"],
                                       batch_size=args.batch_size, seed=seed, device=args.device,
                                       output_dir=args.work_dir / f"seed{seed}_{arm}")
            train_seconds[arm].append(seconds)
            for scale in args.scales:
                points, sampling_seconds, nfe = sample_points(model, arm, test[1], scale=scale, steps=args.ddim_steps,
                                                              seed=10 * seed + 4)
                scores = quality(points, test[1], *test)
                scores.update(nfe_per_sample=nfe, sampling_seconds_per_1k=1000 * sampling_seconds / len(points))
                for name in (f"{arm} s={scale:g}",) + ((f"{arm} chosen",) if scale == chosen[arm]["scale"] else ()):
                    for key, value in scores.items():
                        metrics.setdefault(name, {}).setdefault(key, []).append(value)
                print(f"seed {seed} {arm} s={scale:g}: " + "  ".join(f"{k} {v:.4g}" for k, v in scores.items()),
                      flush=True)
                if seed == args.seeds[0] and scale in (1.0, 3.0):
                    panels[f"{arm} " + (f"β = 1/{scale:g}" if arm == "GFT" else f"s = {scale:g}")] = (points, test[1])
    panels = {"true distribution": test, **panels}

    figures = args.figures_dir
    figures.mkdir(parents=True, exist_ok=True)
    plot(metrics, args.scales, figures / "gft_toy2d.png")
    plot_samples(panels, figures / "gft_toy2d_samples.png")
    budget = {arm: f"{args.train_steps} steps at batch {args.batch_size}; lr grid {list(args.lr_grid)} and the claim's "
                   f"scale chosen on validation draws of tuning seed {TUNING_SEED}: lr {chosen[arm]['lr']:g}, "
                   f"s {chosen[arm]['scale']:g}" for arm in ("CFG", "GFT")}
    record = write_record(
        "gft", "toy2d", seeds=args.seeds, metrics=metrics, started=started, raw_dir=args.raw_dir, device=args.device,
        figures=[figures / "gft_toy2d.png", figures / "gft_toy2d_samples.png"],
        settings={"classes": list(SHAPES), "sigma": SIGMA, "coverage_bins": COVERAGE_BINS,
                  "train_per_class": args.train_per_class, "eval_per_class": args.eval_per_class,
                  "model": "residual SiLU MLP, hidden 128, 3 blocks, class embedding (9 rows, null last); "
                           "GFT: + beta input (DiT timestep form, cond_proj 64)",
                  "training": "GFTTrainer, AdamW cosine, label dropout 0.1; CFG: beta = 1; GFT: beta ~ U(0, 1)",
                  "sampling": f"DDIM {args.ddim_steps} steps, same initial noise; CFG at scale s, GFT at beta = 1/s",
                  "train_steps": args.train_steps, "scales": args.scales, "train_seconds": train_seconds,
                  "chosen": chosen, "baseline": "CFG chosen",
                  "higher_is_better": HIGHER_IS_BETTER, "digits": {"nfe_per_sample": 0, "coverage": 3},
                  "claim": {"text": "GFT reaches CFG's quality with one network call per step instead of two",
                            "arm": "GFT chosen", "baseline": "CFG chosen", "metric": "sliced_w2",
                            "higher_is_better": False, "margin": CLAIM_MARGIN},
                  "budget": budget})
    print(f"wrote {record}")
    return metrics, record


if __name__ == "__main__":
    main()
