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

    python scripts/ddo_toy.py                       # all three, writes docs/results/ddo.md and figures
    python scripts/ddo_toy.py --parts gmm --quick   # smoke-sized
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


def run_digits(output_dir, seed, quick, device="cpu", scale=1):
    from diffusers import EDMEulerScheduler, UNet2DModel

    from hfgen.data.digits import load_digits_images
    from hfgen.metrics.sample_quality import digits_fid

    cfg = dict(pretrain_steps=20 if quick else 400, ddo_steps=4 if quick else 60, rounds=2,
               batch_size=64, mle_lr=2e-3, ddo_lr=5e-5, alpha=1.0, beta=0.02, p_mean=-1.2,
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
    evaluate = lambda m: {"digits_fid": digits_fid(sample(m, scheduler, n_eval, (1, 8, 8), steps, seed + 11))}  # noqa: E731
    results, rounds = diffusion_experiment("digits", data, unet, scheduler, cfg, select, evaluate, output_dir, seed,
                                           device)
    return {"results": results, "rounds": rounds, "config": cfg}


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
BEGIN, END = "<!-- ddo_toy.py: begin (generated) -->", "<!-- ddo_toy.py: end -->"


def table(results, keys):
    lines = ["| stage | " + " | ".join(keys) + " | best step |", "|---|" + "---|" * (len(keys) + 1)]
    for r in results:
        cells = [f"{r[k]:.4f}" for k in keys]
        lines.append(f"| {r['stage']} | " + " | ".join(cells) + f" | {r.get('best_step', '')} |")
    return "\n".join(lines)


def write_markdown(work_dir: Path, path: Path) -> None:
    """Regenerate the tables between the markers of ``path`` from the JSON reports in ``work_dir``; the sections of
    parts without a report there (e.g. run earlier or on another machine) are kept as they are."""
    text = path.read_text() if path.is_file() else f"# DDO results\n\n{BEGIN}\n{END}\n"
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    old = {}  # heading -> section text of the current generated block
    for chunk in text[start + len(BEGIN):stop - len(END)].split("\n### ")[1:]:
        old[chunk.split("\n", 1)[0]] = "### " + chunk.rstrip() + "\n"
    sections = []
    for part in KEYS:
        report_path = work_dir / f"ddo_{part}.json"
        if not report_path.is_file():
            if TITLES[part] in old:
                sections.append(old[TITLES[part]])
            continue
        report = json.loads(report_path.read_text())
        config = ", ".join(f"{k}={v}" for k, v in report["config"].items())
        if "data_true_log_density" in report:
            config += (f"; data: true_log_density {report['data_true_log_density']:.3f}, median_log_density "
                       f"{report['data_median_log_density']:.3f}, sliced_w2 between two data sets of the same size "
                       f"{report['data_sliced_w2_floor']:.4f}")
        device = report.get("device", "cpu")
        sections.append(f"### {TITLES[part]}\n\nseed {report['seed']}, {report['seconds']:.0f} s on {device}; {config}\n\n"
                        f"{table(report['results'], KEYS[part])}\n\n![{part}](../figures/ddo_{part}.png)\n")
    bench, bench_title = work_dir / "ddo_bench.txt", "Cost of a DDO step (`scripts/bench_ddo.py`)"
    if bench.is_file():
        sections.append(f"### {bench_title}\n\n```\n" + bench.read_text().strip() + "\n```\n")
    elif bench_title in old:
        sections.append(old[bench_title])
    generated = f"{BEGIN}\n" + "\n".join(sections) + f"{END}"
    path.write_text(text[:start] + generated + text[stop:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="*", default=list(KEYS), choices=list(KEYS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke-sized settings")
    parser.add_argument("--device", default="cpu", help="torch device of every model (e.g. cuda); data stays on the CPU")
    parser.add_argument("--scale", type=int, default=1,
                        help="(a): multiply the reference-sample and evaluation-sample counts (e.g. 8 on a GPU)")
    parser.add_argument("--output-dir", default=str(ROOT / "docs"), help="writes results/ddo.md and figures/ddo_*.png")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "hfgen_ddo_toy"),
                        help="JSON reports of each part and the training runs; ddo.md is regenerated from all of them")
    args = parser.parse_args(argv)
    out, work = Path(args.output_dir), Path(args.work_dir)
    for folder in (out / "results", out / "figures", work):
        folder.mkdir(parents=True, exist_ok=True)
    runners = {"gmm": run_gmm, "markov": run_markov, "markov_converged": run_markov_converged, "digits": run_digits}
    reports = {}
    for part in args.parts:
        start = time.perf_counter()
        torch.manual_seed(args.seed)
        report = runners[part](work / f"ddo_{part}_runs", args.seed, args.quick, args.device, args.scale)
        report["seconds"] = time.perf_counter() - start
        report["seed"], report["device"] = args.seed, args.device
        (work / f"ddo_{part}.json").write_text(json.dumps(report, indent=2, default=str))
        plot(report, KEYS[part], out / "figures" / f"ddo_{part}.png", part)
        print(f"\n## {part} (seed {args.seed}, {report['seconds']:.0f}s)\n{table(report['results'], KEYS[part])}")
        reports[part] = report
    write_markdown(work, out / "results" / "ddo.md")
    return reports


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
