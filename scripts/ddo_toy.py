"""DDO at toy scale: does DDO improve over its reference, and do self-play rounds keep improving?

Three experiments, each: pretrain briefly by maximum likelihood (the reference), then DDO self-play rounds
(``ddo_self_play``: sample the reference, train, keep the best checkpoint under a validation metric, make it the
next reference), plus a control that continues maximum likelihood for as many steps with the same selection.

(a) ``gmm``: 2-D mixture of 8 Gaussians, an MLP denoiser with EDM preconditioning (``EDMEulerScheduler``);
    sliced Wasserstein-2 distance to the true distribution and the true log-density of samples.
(b) ``markov``: a tiny Llama on a known 6-state Markov chain; exact forward and reverse KL to the chain.
    ``markov_converged``: the same with a reference pretrained 10x longer (closer to the paper's converged models).
(c) ``digits``: scikit-learn 8x8 digits, a tiny ``UNet2DModel`` with EDM preconditioning; digits FID
    (Fréchet distance of the fixed digits classifier's features, ``hfgen.metrics.sample_quality``).

Each part writes the raw record ``docs/results/raw/ddo/<part>.json`` (every seed) and, except digits, the figure
``docs/figures/ddo_<part>.png`` (first seed); ``python scripts/collect_results.py`` renders ``docs/results/ddo.md``.

    OMP_NUM_THREADS=1 python scripts/ddo_toy.py --parts digits --seeds 0 1 2
    python scripts/ddo_toy.py --parts gmm --quick --seeds 0 --raw-dir /tmp/raw   # smoke-sized
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from hfgen.demos.ddo import markov_chain_experiment, plot_results
from hfgen.results import write_record
from hfgen.trainers.ddo import DDOConfig, ddo_self_play, denoising_log_likelihood, generate_diffusion_samples

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ shared pieces


class MLPDenoiser(nn.Module):
    """F(x_in, c_noise) for low-dimensional data: a SiLU MLP on x_in, c_noise and Fourier features of c_noise.

    EDM's ``c_noise = ln(σ)/4`` lies in about [-1.6, 0.6] for σ in [0.002, 10]; the log-spaced frequencies
    ``π/4 · 2^k`` resolve it from coarse (one period over the whole range) to fine (a few % change of σ).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, num_freqs: int = 8):
        super().__init__()
        self.register_buffer("freqs", math.pi / 4 * 2.0 ** torch.arange(num_freqs, dtype=torch.float32))
        self.net = nn.Sequential(nn.Linear(dim + 1 + 2 * num_freqs, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device).reshape(-1, 1).expand(len(sample), 1)
        angles = t * self.freqs
        return self.net(torch.cat([sample, t, angles.sin(), angles.cos()], -1))


def mle_pretrain(model, scheduler, data: torch.Tensor, steps: int, batch_size: int, lr: float, p_mean: float,
                 p_std: float, seed: int, desc: str, eval_every: int | None = None, metric=None, device="cpu"):
    """Denoising score matching with the same weighting and noise distribution that DDO's ratio uses
    (``loss = −denoising_log_likelihood``); with ``metric`` keeps the best checkpoint (step 0 included)."""
    g = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best = (metric(model), copy.deepcopy(model.state_dict())) if metric else None
    model.train()
    for step in tqdm(range(1, steps + 1), desc=desc, leave=False):
        x0 = data[torch.randint(len(data), (batch_size,), generator=g)].to(device)
        sigma = (torch.randn(batch_size, generator=g) * p_std + p_mean).exp().to(device)
        noise = torch.randn(x0.shape, generator=g).to(device)
        loss = -denoising_log_likelihood(model, scheduler, x0, noise, sigma).mean() / x0[0].numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if metric and step % eval_every == 0:
            value = metric(model.eval())
            model.train()
            if value < best[0]:
                best = (value, copy.deepcopy(model.state_dict()))
    if metric:
        model.load_state_dict(best[1])
    return model.eval()


def sample(model, scheduler, n, shape, num_steps, seed):
    """``n`` samples (on the CPU) of ``model`` on its own device; the initial noise is drawn on the CPU from ``seed``."""
    examples = generate_diffusion_samples(model, scheduler, n, shape, num_inference_steps=num_steps, batch_size=8192,
                                          generator=torch.Generator().manual_seed(seed))
    return torch.stack([e["pixel_values"] for e in examples])


def diffusion_experiment(name, data, model, scheduler, cfg, select, evaluate, output_dir, seed, device="cpu"):
    """Pretrain, DDO self-play (evaluating each round's best model) and the MLE control; returns result rows."""
    shape = tuple(data.shape[1:])
    pretrained = mle_pretrain(model, scheduler, data, cfg["pretrain_steps"], cfg["batch_size"], cfg["mle_lr"],
                              cfg["p_mean"], cfg["p_std"], seed, desc=f"{name}: MLE pretraining", device=device)
    results = [{"stage": "reference (MLE pretrained)", **evaluate(pretrained)}]
    total = cfg["rounds"] * cfg["ddo_steps"]
    control = mle_pretrain(copy.deepcopy(pretrained), scheduler, data, total, cfg["batch_size"], cfg["ddo_lr"],
                           cfg["p_mean"], cfg["p_std"], seed + 5, desc=f"{name}: MLE control", eval_every=cfg["eval_every"],
                           metric=select, device=device)
    args = DDOConfig(output_dir=str(output_dir), alpha=cfg["alpha"], beta=cfg["beta"],
                     learning_rate=cfg["ddo_lr"], max_steps=cfg["ddo_steps"], per_device_train_batch_size=cfg["batch_size"],
                     lr_scheduler_type="constant", weight_decay=0.0, adam_beta2=0.99, num_rounds=cfg["rounds"],
                     num_reference_samples=cfg["num_reference_samples"], self_play_eval_steps=cfg["eval_every"],
                     p_mean=cfg["p_mean"], p_std=cfg["p_std"], save_strategy="no", logging_steps=cfg["eval_every"],
                     use_cpu=torch.device(device).type == "cpu", seed=seed, disable_tqdm=False, report_to="none")
    generate = lambda ref, n, r: generate_diffusion_samples(  # noqa: E731
        ref, scheduler, n, shape, num_inference_steps=cfg["num_inference_steps"], batch_size=1024,
        generator=torch.Generator().manual_seed(seed + 1000 * r))
    out = ddo_self_play(pretrained, args, [{"pixel_values": x} for x in data], generate, select,
                        noise_scheduler=scheduler,
                        round_callback=lambda r, m: results.append({"stage": f"DDO round {r.round}", **evaluate(m),
                                                                    "best_step": r.best_step}))
    results.append({"stage": f"MLE control ({total} more steps)", **evaluate(control)})
    return results, [vars(r) for r in out.rounds]


# ------------------------------------------------------------------------------------------ (a) 2-D mixture


def gmm_sample(n, seed, modes=8, radius=1.0, std=0.05):
    g = torch.Generator().manual_seed(seed)
    angles = 2 * math.pi * torch.randint(modes, (n,), generator=g) / modes
    centers = radius * torch.stack([angles.cos(), angles.sin()], -1)
    return centers + std * torch.randn((n, 2), generator=g)


def gmm_log_prob(x, modes=8, radius=1.0, std=0.05):
    angles = 2 * math.pi * torch.arange(modes) / modes
    centers = radius * torch.stack([angles.cos(), angles.sin()], -1)
    sq = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    return torch.logsumexp(-sq / (2 * std**2), 1) - math.log(modes) - math.log(2 * math.pi * std**2)


def sliced_wasserstein(a, b, num_projections=256, seed=0):
    """Sliced Wasserstein-2 distance between equal-size point clouds (random unit directions, sorted projections)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn((a.shape[1], num_projections), generator=g)
    directions /= directions.norm(dim=0, keepdim=True)
    pa, pb = (a.double() @ directions.double()).sort(0).values, (b.double() @ directions.double()).sort(0).values
    return float(((pa - pb) ** 2).mean().sqrt())


def run_gmm(output_dir, seed, quick, device="cpu", scale=1):
    """The reference is pretrained to the point where the 8 modes are visible but blurred (batch 1024: a SiLU MLP
    sits on the Gaussian (linear-denoiser) plateau for several hundred steps at batch 256). ``scale`` multiplies the
    sample counts of the reference and of the evaluation (more samples: less noise in the metrics)."""
    from diffusers import EDMEulerScheduler

    cfg = dict(pretrain_steps=60 if quick else 1000, ddo_steps=10 if quick else 150, rounds=2 if quick else 4,
               batch_size=256 if quick else 1024, mle_lr=2e-3, ddo_lr=1e-3, alpha=1.0, beta=5.0, p_mean=-1.0,
               p_std=1.2, num_reference_samples=512 if quick else 8192 * scale, eval_every=5 if quick else 25,
               num_inference_steps=8 if quick else 32)
    n_eval = 256 if quick else 16384 * scale
    cfg["num_eval_samples"] = n_eval
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=10.0, sigma_data=0.7)
    data, valid, test = gmm_sample(8192, seed + 1), gmm_sample(n_eval, seed + 2), gmm_sample(n_eval, seed + 3)
    steps = cfg["num_inference_steps"]
    select = lambda m: sliced_wasserstein(sample(m, scheduler, n_eval, (2,), steps, seed + 7), valid)  # noqa: E731
    clouds = []  # a few samples of every evaluated stage, in the order of the result rows

    def evaluate(m):
        x = sample(m, scheduler, n_eval, (2,), steps, seed + 11)
        log_density = gmm_log_prob(x)
        clouds.append(x[:2000].tolist())
        return {"sliced_w2": sliced_wasserstein(x, test, seed=1), "true_log_density": float(log_density.mean()),
                "median_log_density": float(log_density.median())}

    torch.manual_seed(seed)
    results, rounds = diffusion_experiment("gmm", data, MLPDenoiser(), scheduler, cfg, select, evaluate, output_dir,
                                           seed, device)
    data_log_density = gmm_log_prob(test)
    return {"results": results, "rounds": rounds, "config": cfg, "samples": clouds, "data_samples": test[:2000].tolist(),
            "data_true_log_density": float(data_log_density.mean()),
            "data_median_log_density": float(data_log_density.median()),
            "data_sliced_w2_floor": sliced_wasserstein(valid, test, seed=1)}


# ------------------------------------------------------------------------------------------ (c) digits


DIGITS_LR_GRID = {"ddo": (2e-5, 5e-5, 2e-4), "mle": (5e-4, 2e-3, 8e-3)}  # equal grid sizes, each around its own lr


def run_digits(output_dir, seed, quick, device="cpu", scale=1):
    """(c) with equal chances: after one shared MLE pretraining, DDO self-play and continued MLE each get the same
    number of optimizer steps, the same grid of three learning rates around their own default (DDO 5e-5, MLE
    2e-3), the same best-checkpoint selection (selection FID every ``eval_every`` steps) and the same choice of
    learning rate (lowest selection FID); the chosen models are scored on a separate evaluation FID."""
    from diffusers import EDMEulerScheduler, UNet2DModel

    from hfgen.data.digits import load_digits_images
    from hfgen.metrics.sample_quality import digits_fid

    cfg = dict(pretrain_steps=20 if quick else 400, ddo_steps=4 if quick else 60, rounds=2,
               batch_size=64, mle_lr=2e-3, alpha=1.0, beta=0.02, p_mean=-1.2,
               p_std=1.2, num_reference_samples=128 if quick else 512, eval_every=2 if quick else 20,
               num_inference_steps=8 if quick else 12)
    n_eval = 64 if quick else 400
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=20.0, sigma_data=0.5)
    data, _ = load_digits_images(size=8, split="train")
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    steps = cfg["num_inference_steps"]
    select = lambda m: digits_fid(sample(m, scheduler, n_eval, (1, 8, 8), steps, seed + 7), data)  # noqa: E731
    evaluate = lambda m: digits_fid(sample(m, scheduler, n_eval, (1, 8, 8), steps, seed + 11))  # noqa: E731
    reference = mle_pretrain(unet, scheduler, data, cfg["pretrain_steps"], cfg["batch_size"], cfg["mle_lr"],
                             cfg["p_mean"], cfg["p_std"], seed, desc="digits: MLE pretraining", device=device)
    total = cfg["rounds"] * cfg["ddo_steps"]
    shape = tuple(data.shape[1:])
    candidates = {"ddo": [], "mle": []}  # (selection FID, lr, model)
    for lr in DIGITS_LR_GRID["mle"]:
        model = mle_pretrain(copy.deepcopy(reference), scheduler, data, total, cfg["batch_size"], lr, cfg["p_mean"],
                             cfg["p_std"], seed + 5, desc=f"digits: MLE control lr {lr:g}",
                             eval_every=cfg["eval_every"], metric=select, device=device)
        candidates["mle"].append((select(model), lr, model))
    for lr in DIGITS_LR_GRID["ddo"]:
        args = DDOConfig(output_dir=str(Path(output_dir) / f"ddo_lr{lr:g}"), alpha=cfg["alpha"], beta=cfg["beta"],
                         learning_rate=lr, max_steps=cfg["ddo_steps"], per_device_train_batch_size=cfg["batch_size"],
                         lr_scheduler_type="constant", weight_decay=0.0, adam_beta2=0.99, num_rounds=cfg["rounds"],
                         num_reference_samples=cfg["num_reference_samples"], self_play_eval_steps=cfg["eval_every"],
                         p_mean=cfg["p_mean"], p_std=cfg["p_std"], save_strategy="no", logging_strategy="no",
                         use_cpu=torch.device(device).type == "cpu", seed=seed, disable_tqdm=True, report_to="none")
        generate = lambda ref, n, r: generate_diffusion_samples(  # noqa: E731
            ref, scheduler, n, shape, num_inference_steps=cfg["num_inference_steps"], batch_size=1024,
            generator=torch.Generator().manual_seed(seed + 1000 * r))
        out = ddo_self_play(reference, args, [{"pixel_values": x} for x in data], generate, select,
                            noise_scheduler=scheduler)
        candidates["ddo"].append((out.rounds[-1].best_metric, lr, out.model))
    arms = {"reference (MLE pretrained)": {"digits_fid": evaluate(reference), "optimizer_steps": 0}}
    for arm, name in (("ddo", f"DDO ({cfg['rounds']} rounds x {cfg['ddo_steps']} steps)"),
                      ("mle", f"MLE control ({total} more steps)")):
        best = min(candidates[arm], key=lambda c: c[0])
        arms[name] = {"digits_fid": evaluate(best[2]), "selection_fid": best[0], "chosen_lr": best[1],
                      "optimizer_steps": total, "grid_selection_fid": [c[0] for c in candidates[arm]]}
    return {"arms": arms, "config": {**cfg, "lr_grid": DIGITS_LR_GRID, "n_eval": n_eval}}


# ------------------------------------------------------------------------------------------ (b) Markov chain


def run_markov(output_dir, seed, quick, device="cpu", scale=1, pretrain_steps=150):
    cfg = dict(pretrain_steps=20 if quick else pretrain_steps, ddo_steps=4 if quick else 150, rounds=2 if quick else 3,
               num_reference_samples=64 if quick else 4096, eval_every=2 if quick else 25,
               num_eval=64 if quick else 4000, beta=1.0, alpha=1.0, warmup=0.3)
    report = markov_chain_experiment(output_dir, seed=seed, device=device, **cfg)
    return {**report, "config": cfg}


def run_markov_converged(output_dir, seed, quick, device="cpu", scale=1):
    """(b) with a reference pretrained 10x longer (closer to the paper's setting, a converged model)."""
    return run_markov(output_dir, seed, quick, device, scale, pretrain_steps=1500)


# ------------------------------------------------------------------------------------------ report


KEYS = {"gmm": ["sliced_w2", "true_log_density", "median_log_density"], "markov": ["forward_kl", "reverse_kl"],
        "markov_converged": ["forward_kl", "reverse_kl"], "digits": ["digits_fid"]}
TITLES = {"gmm": "(a) 2-D mixture of 8 Gaussians, MLP denoiser (EDM)",
          "markov": "(b) tiny Llama on a 6-state Markov chain (exact KL, nats per sequence)",
          "markov_converged": "(b') as (b), reference pretrained 1500 MLE steps instead of 150",
          "digits": "(c) 8x8 digits, UNet2DModel (EDM), digits FID"}
LOWER_IS_BETTER = {"sliced_w2": True, "true_log_density": False, "median_log_density": False, "forward_kl": True,
                   "reverse_kl": True, "digits_fid": True}


def _stage(name: str) -> str:
    return "DDO, last round" if name.startswith("DDO round") else name


def part_record(part: str, reports: list[dict]) -> tuple[dict, dict]:
    """(metrics, settings) of one part's raw record: per arm and metric, one value per seed."""
    metrics: dict[str, dict[str, list]] = {}
    if part == "digits":
        for report in reports:
            for arm, values in report["arms"].items():
                for key, value in values.items():
                    metrics.setdefault(arm, {}).setdefault(key, []).append(value)
        arms = list(metrics)
        settings = {"title": TITLES[part], **reports[0]["config"], "baseline": arms[2],
                    "budget": {arms[1]: f"{reports[0]['config']['rounds'] * reports[0]['config']['ddo_steps']} steps, "
                                        f"lr grid {DIGITS_LR_GRID['ddo']}, best checkpoint by selection FID",
                               arms[2]: f"{reports[0]['config']['rounds'] * reports[0]['config']['ddo_steps']} steps, "
                                        f"lr grid {DIGITS_LR_GRID['mle']}, best checkpoint by selection FID"},
                    "claim": {"text": "DDO fine-tuning improves a pretrained diffusion model beyond continued maximum "
                                      "likelihood with the same budget", "arm": arms[1], "baseline": arms[2],
                              "metric": "digits_fid", "higher_is_better": False}}
    else:
        for report in reports:
            rows = report["results"]
            kept = [rows[0], *[r for r in rows if r["stage"].startswith("DDO round")][-1:], rows[-1]]
            for row in kept:
                for key in KEYS[part]:
                    metrics.setdefault(_stage(row["stage"]), {}).setdefault(key, []).append(row[key])
        settings = {"title": TITLES[part], **reports[0]["config"], "baseline": rows[0]["stage"]}
    settings["higher_is_better"] = {k: not LOWER_IS_BETTER[k] for k in KEYS[part]}
    return metrics, settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="*", default=list(KEYS), choices=list(KEYS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="smoke-sized settings")
    parser.add_argument("--device", default="cpu", help="torch device of every model (e.g. cuda); data stays on the CPU")
    parser.add_argument("--scale", type=int, default=1,
                        help="(a): multiply the reference-sample and evaluation-sample counts (e.g. 8 on a GPU)")
    parser.add_argument("--figures-dir", default=str(ROOT / "docs" / "figures"), help="writes ddo_<part>.png")
    parser.add_argument("--raw-dir", default=None, help="raw records go to RAW_DIR/ddo/<part>.json "
                                                        "(default: docs/results/raw)")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "hfgen_ddo_toy"),
                        help="the training runs")
    args = parser.parse_args(argv)
    figures, work = Path(args.figures_dir), Path(args.work_dir)
    for folder in (figures, work):
        folder.mkdir(parents=True, exist_ok=True)
    runners = {"gmm": run_gmm, "markov": run_markov, "markov_converged": run_markov_converged, "digits": run_digits}
    paths = {}
    for part in args.parts:
        started, reports = time.time(), []
        for seed in args.seeds:
            torch.manual_seed(seed)
            report = runners[part](work / f"ddo_{part}_runs_seed{seed}", seed, args.quick, args.device, args.scale)
            reports.append(report)
            print(f"{part} seed {seed}: {json.dumps(report.get('arms') or report['results'], default=str)[:400]}",
                  flush=True)
        figure = []
        if part != "digits":
            figure = [figures / f"ddo_{part}.png"]
            plot(reports[0], KEYS[part], figure[0], part)
        metrics, settings = part_record(part, reports)
        paths[part] = write_record("ddo", part, seeds=args.seeds, metrics=metrics, settings=settings,
                                   started=started, device=args.device, raw_dir=args.raw_dir, figures=figure)
        print(f"wrote {paths[part]}")
    return paths


def plot(report, keys, path, part):
    results = report["results"]
    if part.startswith("markov"):
        return plot_results(results, path, f"DDO self-play: {TITLES[part]}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clouds = report.get("samples")
    rows = 2 if clouds else 1
    fig, axes = plt.subplots(rows, max(len(keys), 4), figsize=(4.5 * max(len(keys), 4), 3.4 * rows), squeeze=False)
    labels = [r["stage"].replace(" (", "\n(") for r in results]
    for ax, key in zip(axes[0], keys):
        ax.bar(range(len(results)), [r[key] for r in results], color=["gray"] + ["C0"] * (len(results) - 2) + ["C1"])
        ax.set_xticks(range(len(results)), labels, fontsize=7)
        ax.set_ylabel(key)
    for ax in axes[0][len(keys):]:
        ax.axis("off")
    if clouds:  # samples of the reference, the last DDO round, the MLE control and the data
        panels = [(results[0]["stage"], clouds[0]), (results[-2]["stage"], clouds[-2]),
                  (results[-1]["stage"], clouds[-1]), ("data", report["data_samples"])]
        for ax, (title, points) in zip(axes[1], panels):
            points = torch.tensor(points)
            ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4)
            ax.set(xlim=(-1.6, 1.6), ylim=(-1.6, 1.6), aspect="equal", title=title)
    fig.suptitle(f"DDO self-play: {part}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
