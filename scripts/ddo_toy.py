"""DDO at toy scale: does DDO improve over its reference, and do self-play rounds keep improving?

Three experiments, each: pretrain briefly by maximum likelihood (the reference), then DDO self-play rounds
(``ddo_self_play``: sample the reference, train, keep the best checkpoint under a validation metric, make it the
next reference), plus a control that continues maximum likelihood for as many steps with the same selection.

(a) ``gmm``: 2-D mixture of 8 Gaussians, an MLP denoiser with EDM preconditioning (``EDMEulerScheduler``);
    sliced Wasserstein-2 distance to the true distribution and the true log-density of samples.
    ``gmm_rounds``: the same model with a reference pretrained to convergence (its plateau measured), DDO and
    continued MLE each on its own learning-rate grid, reported per self-play round over seeds (exact MMD to the
    mixture, chosen on validation samples, reported on others); figure with interval bands over all seeds.
(b) ``markov``: a tiny Llama on a known 6-state Markov chain; exact forward and reverse KL to the chain.
    ``markov_converged``: the same with a reference pretrained 10x longer (closer to the paper's converged models).
(c) ``digits``: scikit-learn 8x8 digits, a tiny ``UNet2DModel`` with EDM preconditioning; digits FID
    (Fréchet distance of the fixed digits classifier's features, ``hfgen.metrics.sample_quality``).

Each part writes the raw record ``docs/results/raw/ddo/<part>.json`` (every seed) and, except digits, the figure
``docs/figures/ddo_<part>.png`` (first seed); ``python scripts/collect_results.py`` renders ``docs/results/ddo.md``.

    OMP_NUM_THREADS=1 python scripts/ddo_toy.py --parts digits --seeds 0 1 2
    OMP_NUM_THREADS=1 python scripts/ddo_toy.py --parts gmm_rounds --seeds 0 1 2 3 4
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
from hfgen.results import interval, write_record
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
                 p_std: float, seed: int, desc: str, eval_every: int | None = None, metric=None, device="cpu",
                 cosine: bool = False):
    """Denoising score matching with the same weighting and noise distribution that DDO's ratio uses
    (``loss = −denoising_log_likelihood``); with ``metric`` keeps the best checkpoint (step 0 included); with
    ``cosine`` the learning rate decays from ``lr`` to ``lr / 100`` (a run meant to converge), else it is constant."""
    g = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr / 100) if cosine else None
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
        if decay is not None:
            decay.step()
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


# ------------------------------------------------------------------------------------------ (a') 2-D mixture, rounds


# Equal sizes, each arm picks its own. A pilot (seed 0, grids 1e-4, 3e-4, 1e-3) chose the lower edge in most rounds
# for both arms on validation, so both grids were moved down by one step before the study.
GMM_ROUNDS_LR_GRID = {"ddo": (3e-5, 1e-4, 3e-4), "mle": (3e-5, 1e-4, 3e-4)}


def gmm_mmd2(x, bandwidth=0.1, modes=8, radius=1.0, std=0.05, chunk=1024) -> float:
    """Unbiased squared MMD between the samples ``x`` and the true mixture, kernel ``exp(−‖x − y‖² / 2h²)``.

    The two terms that involve the mixture are exact (the kernel integrates against a Gaussian in closed form), so
    only the model's samples carry noise: exact samples give 0 in expectation, with no floor like the one of a
    distance between two finite clouds.
    """
    h2, s2 = bandwidth**2, std**2
    angles = 2 * math.pi * torch.arange(modes, dtype=torch.float64) / modes
    centers = radius * torch.stack([angles.cos(), angles.sin()], -1)
    x, n, within = x.float(), len(x), 0.0
    for i in range(0, n, chunk):  # n² kernel values, in place, summed in float64
        within += float(torch.cdist(x[i:i + chunk], x).square_().mul_(-0.5 / h2).exp_().sum(dtype=torch.float64))
    within = (within - n) / (n * (n - 1))  # the U-statistic leaves out the n terms k(x, x) = 1
    x = x.double()
    cross = h2 / (h2 + s2) * float(torch.exp(-torch.cdist(x, centers).pow(2) / (2 * (h2 + s2))).mean())
    truth = h2 / (h2 + 2 * s2) * float(torch.exp(-torch.cdist(centers, centers).pow(2) / (2 * (h2 + 2 * s2))).mean())
    return within - 2 * cross + truth


def tracking(metric, history: list):
    """``metric`` that also appends every value it returns to ``history``."""

    def tracked(model):
        history.append(metric(model))
        return history[-1]

    return tracked


def mle_rounds(reference, scheduler, data, cfg, lr, select, seed, device="cpu"):
    """DDO self-play's control with the loss swapped: each round starts from the previous round's best model, runs
    ``round_steps`` of maximum likelihood with a fresh optimizer and keeps the best checkpoint (step 0 included) by
    ``select``; returns ``(best validation value, best model)`` per round."""
    best, rounds = reference, []
    for r in range(1, cfg["rounds"] + 1):
        seen = []
        best = mle_pretrain(copy.deepcopy(best), scheduler, data, cfg["round_steps"], cfg["batch_size"], lr,
                            cfg["p_mean"], cfg["p_std"], seed + 100 * r, desc=f"MLE lr {lr:g} round {r}",
                            eval_every=cfg["eval_every"], metric=tracking(select, seen), device=device)
        rounds.append((min(seen), best))
    return rounds


def self_play_config(cfg, lr, steps, output_dir, seed, device="cpu") -> DDOConfig:
    """The quiet ``DDOConfig`` of the tuned parts: constant learning rate ``lr``, ``steps`` per round, no weight decay,
    Adam β2 = 0.99, nothing saved or logged."""
    return DDOConfig(output_dir=str(output_dir), alpha=cfg["alpha"], beta=cfg["beta"], learning_rate=lr,
                     max_steps=steps, per_device_train_batch_size=cfg["batch_size"], lr_scheduler_type="constant",
                     weight_decay=0.0, adam_beta2=0.99, num_rounds=cfg["rounds"],
                     num_reference_samples=cfg["num_reference_samples"], self_play_eval_steps=cfg["eval_every"],
                     p_mean=cfg["p_mean"], p_std=cfg["p_std"], save_strategy="no", logging_strategy="no",
                     use_cpu=torch.device(device).type == "cpu", seed=seed, disable_tqdm=True, report_to="none")


def ddo_rounds(reference, scheduler, data, cfg, lr, select, seed, output_dir, device="cpu"):
    """``ddo_self_play`` from ``reference`` at learning rate ``lr``; ``(best validation value, best model)`` per round."""
    shape = tuple(data.shape[1:])
    args = self_play_config(cfg, lr, cfg["round_steps"], output_dir, seed, device)
    generate = lambda ref, n, r: generate_diffusion_samples(  # noqa: E731
        ref, scheduler, n, shape, num_inference_steps=cfg["num_inference_steps"], batch_size=8192,
        generator=torch.Generator().manual_seed(seed + 1000 * r))
    rounds = []
    ddo_self_play(reference, args, [{"pixel_values": x} for x in data], generate, select, noise_scheduler=scheduler,
                  round_callback=lambda r, m: rounds.append((r.best_metric, copy.deepcopy(m))))
    return rounds


def compare_rounds(reference, scheduler, data, cfg, grid, select, evaluate, seed, output_dir, device="cpu"):
    """DDO self-play and the MLE control, each run at every learning rate of its own grid; at each round, each arm's
    learning rate is the one with the best validation value at that round, and only that model is evaluated."""
    runs = {"ddo": [ddo_rounds(reference, scheduler, data, cfg, lr, select, seed, Path(output_dir) / f"ddo_lr{lr:g}",
                               device) for lr in grid["ddo"]],
            "mle": [mle_rounds(reference, scheduler, data, cfg, lr, select, seed + 5, device) for lr in grid["mle"]]}
    arms = {}
    for arm, label in (("ddo", "DDO"), ("mle", "MLE")):
        for r in range(cfg["rounds"]):
            validation = [run[r][0] for run in runs[arm]]
            chosen = min(range(len(validation)), key=validation.__getitem__)
            arms[f"{label} round {r + 1}"] = {**evaluate(runs[arm][chosen][r][1]), "validation": validation[chosen],
                                              "chosen_lr": grid[arm][chosen], "optimizer_steps": (r + 1) * cfg["round_steps"],
                                              "grid_validation": validation}
    return arms


def run_gmm_rounds(output_dir, seed, quick, device="cpu", scale=1):
    """(a') the paper's regime: a reference pretrained to convergence (cosine-decayed MLE; a copy given half the steps
    measures the plateau), then several DDO self-play rounds against as many rounds of continued MLE, each arm on its
    own learning-rate grid of equal size. Checkpoints and learning rates are chosen on a validation MMD (its own model
    samples); the reported metrics use other samples (and, for the sliced distance, a held-out data set)."""
    from diffusers import EDMEulerScheduler

    cfg = dict(pretrain_steps=40 if quick else 8000, pretrain_lr=2e-3, rounds=2 if quick else 4,
               round_steps=4 if quick else 100, batch_size=256 if quick else 1024, alpha=1.0, beta=5.0, p_mean=-1.0,
               p_std=1.2, num_reference_samples=256 if quick else 8192, eval_every=2 if quick else 25,
               num_inference_steps=8 if quick else 32, n_valid=256 if quick else 2048 * scale,
               n_test=256 if quick else 8192 * scale, mmd_bandwidth=0.1)
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=10.0, sigma_data=0.7)
    data, test_data = gmm_sample(8192, seed + 1), gmm_sample(cfg["n_test"], seed + 3)
    steps, mmd = cfg["num_inference_steps"], lambda x: 1e3 * gmm_mmd2(x, cfg["mmd_bandwidth"])  # noqa: E731
    select = lambda m: mmd(sample(m, scheduler, cfg["n_valid"], (2,), steps, seed + 7))  # noqa: E731

    def evaluate(m):
        x = sample(m, scheduler, cfg["n_test"], (2,), steps, seed + 11)
        return {"mmd2_x1e3": mmd(x), "sliced_w2": sliced_wasserstein(x, test_data, seed=1),
                "true_log_density": float(gmm_log_prob(x).mean())}

    curve = []  # validation value at every evaluation of the full pretraining
    pretrained = []
    for steps_run, metric in ((cfg["pretrain_steps"] // 2, select), (cfg["pretrain_steps"], tracking(select, curve))):
        torch.manual_seed(seed)  # the same initialisation and batches for both: only the length differs
        pretrained.append(mle_pretrain(MLPDenoiser(), scheduler, data, steps_run, cfg["batch_size"], cfg["pretrain_lr"],
                                       cfg["p_mean"], cfg["p_std"], seed, desc=f"gmm_rounds: MLE pretraining {steps_run}",
                                       eval_every=cfg["pretrain_steps"] // 10, metric=metric, cosine=True,
                                       device=device))
    half, reference = pretrained
    arms = {"reference, half the pretraining": {**evaluate(half), "validation": select(half)},
            "reference (MLE pretrained)": {**evaluate(reference), "validation": min(curve), "optimizer_steps": 0}}
    arms.update(compare_rounds(reference, scheduler, data, cfg, GMM_ROUNDS_LR_GRID, select, evaluate, seed,
                               output_dir, device))
    return {"arms": arms, "pretraining_validation": curve, "config": {**cfg, "lr_grid": GMM_ROUNDS_LR_GRID}}


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
        args = self_play_config(cfg, lr, cfg["ddo_steps"], Path(output_dir) / f"ddo_lr{lr:g}", seed, device)
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
        "markov_converged": ["forward_kl", "reverse_kl"], "digits": ["digits_fid"],
        "gmm_rounds": ["mmd2_x1e3", "sliced_w2", "true_log_density"]}
TITLES = {"gmm": "(a) 2-D mixture of 8 Gaussians, MLP denoiser (EDM)",
          "markov": "(b) tiny Llama on a 6-state Markov chain (exact KL, nats per sequence)",
          "markov_converged": "(b') as (b), reference pretrained 1500 MLE steps instead of 150",
          "digits": "(c) 8x8 digits, UNet2DModel (EDM), digits FID",
          "gmm_rounds": "(a') 2-D mixture of 8 Gaussians, converged reference, DDO and continued MLE per round"}
LOWER_IS_BETTER = {"sliced_w2": True, "true_log_density": False, "median_log_density": False, "forward_kl": True,
                   "reverse_kl": True, "digits_fid": True, "mmd2_x1e3": True}


def _stage(name: str) -> str:
    return "DDO, last round" if name.startswith("DDO round") else name


def part_record(part: str, reports: list[dict]) -> tuple[dict, dict]:
    """(metrics, settings) of one part's raw record: per arm and metric, one value per seed."""
    metrics: dict[str, dict[str, list]] = {}
    if part == "gmm_rounds":
        return rounds_record(part, reports)
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


def rounds_record(part: str, reports: list[dict]) -> tuple[dict, dict]:
    """(metrics, settings) of a per-round part: every arm (the references, ``DDO round r``, ``MLE round r``) with one
    value per seed of each metric, the validation value and learning rate that chose it, and the pretraining curve."""
    metrics: dict[str, dict[str, list]] = {}
    for report in reports:
        for arm, values in report["arms"].items():
            for key, value in values.items():
                metrics.setdefault(arm, {}).setdefault(key, []).append(value)
    metrics["reference (MLE pretrained)"]["pretraining_validation"] = [r["pretraining_validation"] for r in reports]
    cfg = reports[0]["config"]
    last, grid = cfg["rounds"], cfg["lr_grid"]
    every = cfg["pretrain_steps"] // 10
    def budget(arm):
        return (f"{cfg['round_steps']} optimizer steps per round (round r: r x {cfg['round_steps']}), one learning "
                f"rate per round chosen on the validation MMD from the grid {tuple(grid[arm])}, best checkpoint per "
                f"round by validation MMD every {cfg['eval_every']} steps (step 0 included), batch {cfg['batch_size']}")

    settings = {"title": TITLES[part], **cfg, "lr_grid": {arm: list(v) for arm, v in grid.items()},
                "validation": f"MMD to the true mixture of {cfg['n_valid']} samples drawn with their own seed (the "
                              "reported metrics use other samples)",
                "pretraining_eval_steps": list(range(0, cfg["pretrain_steps"] + 1, every)),
                "reference": "reference (MLE pretrained)", "half_reference": "reference, half the pretraining",
                "budget": {f"DDO round {last}": budget("ddo") + f", plus {cfg['num_reference_samples']} reference "
                                                                "samples per round",
                           f"MLE round {last}": budget("mle")},
                "claim": {"text": "DDO self-play improves a converged diffusion model beyond continued maximum "
                                  "likelihood given the same optimizer steps and tuning budget",
                          "arm": f"DDO round {last}", "baseline": f"MLE round {last}", "metric": KEYS[part][0],
                          "higher_is_better": False},
                "higher_is_better": {k: not LOWER_IS_BETTER[k] for k in KEYS[part]}}
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
    runners = {"gmm": run_gmm, "markov": run_markov, "markov_converged": run_markov_converged, "digits": run_digits,
               "gmm_rounds": run_gmm_rounds}
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
        if part == "gmm_rounds":
            figure = [figures / f"ddo_{part}.png"]
            plot_rounds(reports, KEYS[part], figure[0], TITLES[part])
        elif part != "digits":
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


def _band(ax, x, per_seed, label, color):
    """Mean and 95% t-interval over seeds of ``per_seed`` (seeds x len(x))."""
    spans = [interval(column) for column in zip(*per_seed)]
    ax.plot(x, [i.mean for i in spans], "o-", color=color, label=label, ms=3)
    ax.fill_between(x, [i.low for i in spans], [i.high for i in spans], color=color, alpha=0.2)


def plot_rounds(reports, keys, path, title):
    """The pretraining curve (validation), then per round: each metric of DDO and of continued MLE (round 0 is the
    reference) and the paired difference DDO − MLE of the first two metrics, all with 95% t-interval bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = reports[0]["config"]["rounds"]
    x = list(range(rounds + 1))

    def per_round(report, label, key):
        return [report["arms"]["reference (MLE pretrained)"][key]] + [
            report["arms"][f"{label} round {r}"][key] for r in range(1, rounds + 1)]

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    every = reports[0]["config"]["pretrain_steps"] // 10
    curves = [r["pretraining_validation"] for r in reports]
    _band(axes[0][0], [every * i for i in range(len(curves[0]))], curves, "validation MMD² x 1e3", "gray")
    axes[0][0].set(xlabel="MLE pretraining step", yscale="log", title="reference: pretraining (validation)")
    for ax, key in zip([axes[0][1], axes[0][2], axes[1][0]], keys):
        for label, color in (("DDO", "C0"), ("MLE", "C1")):
            _band(ax, x, [per_round(r, label, key) for r in reports], label, color)
        ax.set(xlabel="self-play round (0: reference)", ylabel=key, title=f"{key} (test)", xticks=x)
        ax.legend(fontsize=7)
    for ax, key in zip([axes[1][1], axes[1][2]], [keys[0], keys[-1]]):
        diffs = [[d - m for d, m in zip(per_round(r, "DDO", key), per_round(r, "MLE", key))][1:] for r in reports]
        _band(ax, x[1:], diffs, "DDO − MLE (paired by seed)", "C2")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="self-play round", ylabel=f"Δ {key}", title=f"DDO − continued MLE, {key}", xticks=x[1:])
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} ({len(reports)} seeds, mean and 95% t-interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
