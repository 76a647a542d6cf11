"""Training speed of Analytic-Precond vs Euler (CTM) and variance preconditioning: 2-D ring mixture and 8x8 digits.

Each part distils one teacher with each preconditioning (same seeds, data, student init, optimiser and steps),
evaluates 1- and 2-step student samples every ``eval_every`` iterations, and reports the iterations each needs
to reach Euler's final 2-step quality (goal of the issue: analytic in at most half), plus the per-iteration cost
ratio analytic / euler, measured with interleaved repeats (medians), statistics estimation amortised.

- ``ring``: the exact 8-mode ring denoiser (closed form) -> a `TrajectoryMLP` student; sliced Wasserstein to data.
- ``digits``: an EDM `UNet2DModel` teacher trained here on scikit-learn's 8x8 digits -> a UNet trajectory student
  initialised from it (CTM); the digit-classifier Fréchet distance (`hfgen.metrics.sample_quality.digits_fid`).

Each part writes its raw record ``docs/results/raw/analytic_precond/<part>.json`` (``--raw-dir``) and its
figure in ``--fig-dir``.

    OMP_NUM_THREADS=1 python scripts/precond_toy.py --part ring --ring-steps 1000 --seeds 0 1
    OMP_NUM_THREADS=1 python scripts/precond_toy.py --part digits --teacher-steps 800 --digits-steps 300
    python scripts/precond_toy.py --part digits --device cuda --teacher-steps 6000 --digits-steps 3000 ...
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from transformers import TrainerCallback

from hfgen.demos.analytic_precond import (
    digits_sample_quality,
    digits_student,
    distillation_trainer,
    ring_teacher,
    sample_quality,
    train_digits_teacher,
)
from hfgen.results import interval, write_record

VARIANTS = {  # name -> (preconditioning, extra config)
    "euler": ("euler", {}),
    "variance": ("variance", {}),
    "analytic": ("analytic", {}),
    "analytic-trend": ("analytic", {"estimate_trend": True}),
    "analytic-implicit": ("analytic", {"long_jump": "implicit"}),
    "analytic-eulerjump": ("analytic", {"long_jump": "euler"}),
}
HOSTS = {  # name -> extra config of the distillation loss (see ConsistencyDistillationConfig)
    "simple": {},
    # sony/ctm ctm_losses: h ~ p(h) ∝ h teacher Heun steps over the whole grid, both sides mapped to sigma_min by an
    # EMA target network, plus the DSM term (a fixed weight; CTM balances it adaptively)
    "ctm": {"heun_steps_max": 18, "heun_step_strategy": "weighted", "map_to_sigma_min": True},
}
COLORS = {"euler": "C0", "variance": "C2", "analytic": "C1", "analytic-trend": "C3", "analytic-implicit": "C4",
          "analytic-eulerjump": "C5"}


class _Evaluate(TrainerCallback):
    """Record ``(step, 1-step quality, 2-step quality)`` at step 0 and every ``every`` optimiser steps."""

    def __init__(self, quality, every):
        self.quality, self.every, self.curve, self.seconds = quality, every, [], 0.0

    def _record(self, step):
        start = time.perf_counter()
        self.curve.append((step, self.quality(1), self.quality(2)))
        self.seconds += time.perf_counter() - start
        print(f"  step {step}: 1-step {self.curve[-1][1]:.4f}, 2-step {self.curve[-1][2]:.4f}", flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._record(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._record(state.global_step)


def run_one(make_trainer, quality_of, steps, eval_every):
    """``(curve, trainer, statistics seconds, training seconds per iteration without evaluation)`` of one run."""
    start = time.perf_counter()
    trainer = make_trainer()
    statistics_s = time.perf_counter() - start
    callback = _Evaluate(lambda k: quality_of(trainer, k), eval_every)
    trainer.add_callback(callback)
    start = time.perf_counter()
    trainer.train()
    per_iteration = (time.perf_counter() - start - callback.seconds) / steps
    return callback.curve, trainer, statistics_s, per_iteration


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def benchmark(trainers: dict, batch: torch.Tensor, repeats: int = 7, iterations: int = 10) -> dict:
    """Median seconds of one training iteration (loss, backward) per trainer, timed in interleaved rounds
    (the order alternates every round) so that machine-load drift hits every trainer alike."""
    times = {name: [] for name in trainers}
    names = list(trainers)
    for round_ in range(repeats + 1):  # round 0 warms up
        for name in names if round_ % 2 == 0 else names[::-1]:
            trainer = trainers[name]
            model, inputs = trainer.model, {trainer.args.data_column: batch.to(trainer.args.device)}
            _sync(trainer.args.device)
            start = time.perf_counter()
            for _ in range(iterations):
                trainer.compute_loss(model, inputs).backward()
                model.zero_grad(set_to_none=True)
            _sync(trainer.args.device)
            if round_:
                times[name].append((time.perf_counter() - start) / iterations)
    return {name: statistics.median(values) for name, values in times.items()}


SMOOTH = 3  # evaluations averaged: single evaluations are noisy (constant lr, finite samples)


def smoothed(curve, col=2):
    """``(step, mean of the last SMOOTH evaluations up to step)`` along the curve."""
    values = [c[col] for c in curve]
    return [(c[0], sum(values[max(0, j - SMOOTH + 1) : j + 1]) / len(values[max(0, j - SMOOTH + 1) : j + 1]))
            for j, c in enumerate(curve)]


def first_reaching(curve, level):
    """First step whose smoothed 2-step quality is <= ``level``."""
    return next((step for step, q2 in smoothed(curve) if q2 <= level), None)


def results_table(runs, seeds, variants, steps, metric):
    lines = [
        f"| seed | preconditioning | final 1-step {metric} | final 2-step {metric} | best 2-step {metric} "
        f"| iterations to Euler's final 2-step {metric} | trainer setup incl. statistics (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        euler_final = smoothed(runs[("euler", seed)][0])[-1][1]
        for name in variants:
            curve, _, stats_s, _ = runs[(name, seed)]
            reach = first_reaching(curve, euler_final)
            lines.append(
                f"| {seed} | {name} | {smoothed(curve, 1)[-1][1]:.4f} | {smoothed(curve)[-1][1]:.4f} "
                f"| {min(c[2] for c in curve):.4f} | {reach if reach is not None else f'> {steps}'} | {stats_s:.1f} |"
            )
    lines += ["", f"\"final\" is the mean of the last {SMOOTH} evaluations; \"iterations to Euler's final\" is the "
              f"first iteration whose {SMOOTH}-evaluation trailing mean reaches it (goal: analytic <= half of Euler's)."]
    return lines


def write_part_record(part, runs, seeds, variants, steps, timed, settings, figure, raw_dir, started, device):
    """The part's raw record ``<raw_dir>/analytic_precond/<part>.json``: per variant and seed the final (trailing
    mean) and best qualities, the iterations to reach Euler's final 2-step quality (None: not reached), the trainer
    set-up seconds and the whole curve; the interleaved per-iteration timing in the settings."""
    metrics = {}
    for name in variants:
        arm = metrics.setdefault(name, {k: [] for k in ("final_1step", "final_2step", "best_2step",
                                                        "iterations_to_euler_final", "setup_seconds", "curve")})
        for seed in seeds:
            curve, _, stats_s, _ = runs[(name, seed)]
            arm["final_1step"].append(smoothed(curve, 1)[-1][1])
            arm["final_2step"].append(smoothed(curve)[-1][1])
            arm["best_2step"].append(min(c[2] for c in curve))
            arm["iterations_to_euler_final"].append(first_reaching(curve, smoothed(runs[("euler", seed)][0])[-1][1]))
            arm["setup_seconds"].append(stats_s)
            arm["curve"].append([list(c) for c in curve])
    settings = {**settings, "steps": steps, "baseline": "euler", "digits": 4,
                "higher_is_better": {"final_1step": False, "final_2step": False, "best_2step": False},
                "cost": {"median_iteration_seconds": timed, "timed_on_seed": seeds[0]},
                "notes": [f"final = mean of the last {SMOOTH} evaluations; cost: loss + backward per iteration, "
                          "median of interleaved rounds, euler timed twice as an A/A control."]}
    if {"analytic", "euler"} <= set(variants):
        settings["claim"] = {"text": "analytic preconditioning trains consistency-trajectory distillation faster than "
                                     "Euler (CTM): better 2-step quality after the same iterations",
                             "arm": "analytic", "baseline": "euler", "metric": "final_2step", "higher_is_better": False}
    return write_record("analytic_precond", part, seeds=seeds, metrics=metrics, settings=settings, started=started,
                        device=device, raw_dir=raw_dir, figures=[figure])


def _bench_trainers(runs, seed):
    """euler, analytic, and euler again (an A/A control: its ratio to euler is the timing noise floor)."""
    euler = runs[("euler", seed)][1]
    return {"euler": euler, "analytic": runs[("analytic", seed)][1], "euler (A/A)": euler}


def cost_lines(runs, seeds, steps, timed):
    """The benchmark medians and the ratio, with the statistics estimation amortised over the run."""
    stats_s = statistics.mean(runs[("analytic", s)][2] - runs[("euler", s)][2] for s in seeds)
    ratio = timed["analytic"] / timed["euler"]
    amortised = (timed["analytic"] + max(stats_s, 0.0) / steps) / timed["euler"]
    return [
        f"Per-iteration cost (loss + backward, median of interleaved rounds): euler {timed['euler'] * 1e3:.2f} ms, "
        f"analytic {timed['analytic'] * 1e3:.2f} ms; ratio analytic / euler **{ratio:.3f}** (A/A control, euler "
        f"timed twice: {timed['euler (A/A)'] / timed['euler']:.3f}); with the statistics "
        f"estimation ({stats_s:.1f} s more trainer setup) amortised over {steps} iterations: **{amortised:.3f}** "
        "(goal <= 1.05).",
    ]


def plot(runs, seeds, variants, path, ylabel, title, log=True):
    """Quality against iterations, 1- and 2-step: the mean over seeds with its 95% t-interval band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name in variants:
        steps = [c[0] for c in runs[(name, seeds[0])][0]]
        for ax, col in zip(axes, (1, 2)):
            bands = [interval([runs[(name, seed)][0][j][col] for seed in seeds]) for j in range(len(steps))]
            ax.plot(steps, [b.mean for b in bands], color=COLORS[name], label=name)
            floor = 1e-6 if log else -math.inf  # a log axis cannot show a band below 0
            ax.fill_between(steps, [max(b.low, floor) for b in bands], [b.high for b in bands], color=COLORS[name],
                            alpha=0.15)
    for ax, k in zip(axes, (1, 2)):
        ax.set(xlabel="training iterations", ylabel=ylabel)
        ax.set_title(f"{title}: {k}-step samples (mean, 95% t-band over {len(seeds)} seeds)", fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------- ring


def host_config(host: str, target_ema_decay: float, dsm_weight: float) -> dict:
    """The distillation-loss settings of ``host`` (the CTM host's EMA decay and DSM weight from the command)."""
    if host == "simple":
        return {}
    return {**HOSTS[host], "target_ema_decay": target_ema_decay, "dsm_weight": dsm_weight}


def part_name(part: str, host: str) -> str:
    return part if host == "simple" else f"{part}_{host}"


def run_ring(steps=1000, seeds=(0, 1), eval_every=100, num_eval=2000, device="cpu", variants=("euler", "variance",
             "analytic"), raw_dir=None, fig_dir="docs/figures", workdir="/tmp/precond_toy",
             command=None, bench=(7, 10), host="simple", target_ema_decay=0.95, dsm_weight=1.0):
    started = time.time()
    teacher, workdir = ring_teacher(), Path(workdir)
    host_extra = host_config(host, target_ema_decay, dsm_weight)
    name_of_part = part_name("ring", host)
    runs = {}
    for seed in seeds:
        for name in variants:
            print(f"{name_of_part}: {name}, seed {seed}", flush=True)
            preconditioning, extra = VARIANTS[name]
            runs[(name, seed)] = run_one(
                partial(distillation_trainer, teacher, preconditioning, workdir / f"{name_of_part}_{name}_{seed}",
                        steps=steps, seed=seed, device=device, disable_tqdm=True, **extra, **host_extra),
                lambda trainer, k, seed=seed: sample_quality(trainer, teacher, k, num_eval, seed), steps, eval_every)
    batch = teacher.sample(256, torch.Generator().manual_seed(0))
    timed = benchmark(_bench_trainers(runs, seeds[0]), batch, *bench)
    figure = Path(fig_dir) / ("analytic_precond_training.png" if host == "simple" else f"analytic_precond_{name_of_part}.png")
    plot(runs, seeds, variants, figure, "sliced Wasserstein", name_of_part)
    lines = [
        "## 2-D ring mixture",
        "",
        f"Command: `{command or f'python scripts/precond_toy.py --part ring --ring-steps {steps}'}` (device {device}; "
        f"seeds {list(seeds)}; eval every {eval_every} iterations on {num_eval} samples; TrajectoryMLP width 128 "
        "(random init), batch 256, lr 2e-3 constant, 18-interval Karras grid, exact 8-mode ring teacher; "
        "sliced Wasserstein (SW) to fresh data, lower is better).",
        "",
        *results_table(runs, seeds, variants, steps, "SW"),
        "",
        *cost_lines(runs, seeds, steps, timed),
        "",
        f"![ring curves](../figures/{figure.name})",
    ]
    print("\n".join(lines), flush=True)
    path = write_part_record(name_of_part, runs, seeds, variants, steps, timed,
                             {"eval_every": eval_every, "num_eval": num_eval, "metric": "sliced Wasserstein to data",
                              "student": "TrajectoryMLP width 128, batch 256, lr 2e-3 constant, 18-interval Karras grid",
                              "teacher": "exact 8-mode ring", "host": host, "host_config": host_extra},
                             figure, raw_dir, started, device)
    return runs, path


# ------------------------------------------------------------------------------------------ coefficients

RULES = {  # coefficient rule -> (preconditioning, long_jump) of `outer_scalings`
    "euler": ("euler", "forward"),
    "variance": ("variance", "forward"),
    "analytic": ("analytic", "forward"),
    "analytic-implicit": ("analytic", "implicit"),
    "analytic-eulerjump": ("analytic", "euler"),
}


def coefficient_jumps(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5):
    """The jumps (t, s) reported: the one-step jump, the two jumps of 2-step sampling (Karras midpoint), and the
    one-step jump split at sigma_data."""
    from hfgen.pipelines import ConsistencyTrajectoryScheduler

    mid = ConsistencyTrajectoryScheduler(sigma_min=sigma_min, sigma_max=sigma_max).karras_sigmas(3)[1].item()
    return {"one_step": (sigma_max, sigma_min), "two_step_first": (sigma_max, mid), "two_step_second": (mid, sigma_min),
            "to_sigma_data": (sigma_max, sigma_data), "sigma_data_to_min": (sigma_data, sigma_min)}


def scalings(rule, t, s, tables, sigma_min=0.002, sigma_data=0.5, long_jump_ratio=10.0):
    from hfgen.pipelines.consistency_trajectory import outer_scalings

    preconditioning, long_jump = RULES[rule]
    t, s = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    return outer_scalings(t, s, preconditioning, sigma_data, sigma_min, tables if preconditioning == "analytic" else None,
                          long_jump, long_jump_ratio)


def run_coefficients(seeds=(0, 1, 2), raw_dir=None, fig_dir="docs/figures", workdir="/tmp/precond_toy", device="cpu",
                     statistics_samples=1024):
    """f(t, s), g(t, s) of every rule on the ring teacher's statistics (one estimate per seed) and, as a closed-form
    check, on Gaussian data N(0, sigma_data^2 I), where l_t = sigma_data^2 / (sigma_data^2 + t^2) exactly."""
    from hfgen.pipelines.consistency_trajectory import AnalyticTables

    started = time.time()
    teacher, workdir = ring_teacher(), Path(workdir)
    jumps, sigma_min, sigma_data = coefficient_jumps(), 0.002, 0.5
    tables = {}
    for seed in seeds:
        trainer = distillation_trainer(teacher, "analytic", workdir / f"coefficients_{seed}", steps=1, seed=seed,
                                       device=device, disable_tqdm=True, statistics_samples=statistics_samples)
        tables[seed] = trainer.statistics
    log_t = tables[seeds[0]].log_t
    gaussian = AnalyticTables(log_t, sigma_data**2 / (sigma_data**2 + log_t.exp() ** 2))
    metrics = {}
    for rule in RULES:
        arm = metrics.setdefault(rule, {})
        for jump, (t, s) in jumps.items():
            for seed in seeds:
                f, g = scalings(rule, t, s, tables[seed])
                arm.setdefault(f"f_{jump}", []).append(f.item())
                arm.setdefault(f"g_{jump}", []).append(g.item())
    gaussian_g = {jump: scalings("analytic", t, s, gaussian)[1].item() for jump, (t, s) in jumps.items()}
    exact = (sigma_data**2 + sigma_min**2) ** 0.5 / (sigma_data**2 + 80.0**2) ** 0.5
    f1, g1 = scalings("analytic", 80.0, sigma_min, gaussian)
    figure = Path(fig_dir) / "analytic_precond_coefficients.png"
    plot_coefficients(tables[seeds[0]], figure)
    settings = {
        "teacher": "exact 8-mode ring (statistics: l_t on 120 log-spaced times, Hutchinson, one estimate per seed)",
        "statistics_samples": statistics_samples, "long_jump_ratio": 10.0,
        "jumps": {jump: [t, s] for jump, (t, s) in jumps.items()},
        "log_sigma_data_over_sigma_min": math.log(sigma_data / sigma_min),
        "gaussian_analytic_g": gaussian_g,
        "gaussian_exact_flow_check": {"f + g l_t": (f1 + g1 * sigma_data**2 / (sigma_data**2 + 80.0**2)).item(),
                                      "sqrt((sd^2 + s^2) / (sd^2 + t^2))": exact},
        "digits": 4,
        "notes": ["f, g of G(x_t, t, s) = f x_t + g D(x_t, t, s); the analytic rows use the forward first-order "
                  "exponential integrator in tau = log t with the trend s_t = 0 (the default trainer setting)."],
    }
    return write_record("analytic_precond", "coefficients", seeds=seeds, metrics=metrics, settings=settings,
                        started=started, device=device, raw_dir=raw_dir, figures=[figure])


def plot_coefficients(tables, path, sigma_min=0.002, sigma_max=80.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = torch.logspace(math.log10(sigma_min * 1.01), math.log10(sigma_max), 200, dtype=torch.float64)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for j, rule in enumerate(RULES):
        f, g = scalings(rule, t, torch.full_like(t, sigma_min), tables)
        axes[0].plot(t, g, color=f"C{j}", label=f"g, {rule}")
        axes[0].plot(t, f, color=f"C{j}", ls=":", label=f"f, {rule}")
        f, g = scalings(rule, torch.full_like(t, sigma_max), t.flip(0), tables)
        axes[1].plot(t.flip(0), g, color=f"C{j}", label=rule)
        axes[1].plot(t.flip(0), f, color=f"C{j}", ls=":")
    axes[0].set(xscale="log", xlabel="t (jump to s = sigma_min)", title="one-step jumps: g solid, f dotted")
    axes[1].set(xscale="log", xlabel="s (jump from t = sigma_max)", title="jumps from sigma_max")
    axes[2].plot(tables.log_t.exp(), tables.l, color="C2", label="l_t (ring teacher)")
    axes[2].plot(tables.log_t.exp(), 0.25 / (0.25 + tables.log_t.exp() ** 2), color="k", ls="--",
                 label="Gaussian: sd^2 / (sd^2 + t^2)")
    axes[2].set(xscale="log", xlabel="t", title="l_t = E tr(grad D) / d")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ digits


@torch.no_grad()
def teacher_fid(trainer, num_steps: int, n: int, seed: int) -> float:
    """Digits FID of the teacher's own Heun sampler (``num_steps`` Karras intervals, 2 evaluations each)."""
    from hfgen.metrics.sample_quality import digits_fid

    grid = trainer.trajectory_scheduler.karras_sigmas(num_steps + 1)
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 1, 8, 8, generator=generator).to(trainer.args.device) * grid[0].item()
    for t, u in zip(grid[:-1], grid[1:]):
        x = trainer.teacher_step(x, t.expand(n), u.expand(n))
    return digits_fid(x.float().cpu())


def run_digits(steps=300, seeds=(0,), eval_every=50, num_eval=400, device="cpu", teacher_steps=800,
               teacher_channels=(16, 32), batch_size=64, lr=2e-4, statistics_grid_size=60, statistics_samples=256,
               variants=("euler", "variance", "analytic"), raw_dir=None,
               fig_dir="docs/figures", workdir="/tmp/precond_toy", command=None, bench=(7, 10), host="simple",
               target_ema_decay=0.95, dsm_weight=1.0):
    from hfgen.data.digits import load_digits_images

    started = time.time()
    host_extra = host_config(host, target_ema_decay, dsm_weight)
    name_of_part = part_name("digits", host)
    workdir = Path(workdir)
    start = time.perf_counter()
    teacher = train_digits_teacher(steps=teacher_steps, channels=teacher_channels, seed=0, device=device)
    teacher_s = time.perf_counter() - start
    print(f"digits teacher: {teacher_steps} steps in {teacher_s:.0f} s", flush=True)
    data = load_digits_images(size=8, split="train")[0]
    config = dict(statistics_grid_size=statistics_grid_size, statistics_samples=statistics_samples, disable_tqdm=True)
    runs = {}
    for seed in seeds:
        for name in variants:
            print(f"{name_of_part}: {name}, seed {seed}", flush=True)
            runs[(name, seed)] = run_one(
                lambda name=name, seed=seed: distillation_trainer(
                    teacher, VARIANTS[name][0], workdir / f"{name_of_part}_{name}_{seed}", steps=steps, seed=seed,
                    batch_size=batch_size, lr=lr, student=digits_student(teacher), data=data, device=device, **config,
                    **VARIANTS[name][1], **host_extra),
                lambda trainer, k, seed=seed: digits_sample_quality(trainer, k, num_eval, seed), steps, eval_every)
    reference = runs[("euler", seeds[0])][1]
    teacher_quality = {k: teacher_fid(reference, k, num_eval, seeds[0]) for k in (2, 18)}
    timed = benchmark(_bench_trainers(runs, seeds[0]), data[:batch_size], *bench)
    figure = Path(fig_dir) / f"analytic_precond_{name_of_part}.png"
    plot(runs, seeds, variants, figure, "digits FID", name_of_part)
    width = ", ".join(map(str, teacher_channels))
    lines = [
        "## 8x8 digits",
        "",
        f"Command: `{command or f'python scripts/precond_toy.py --part digits --digits-steps {steps}'}` (device "
        f"{device}; seeds {list(seeds)}; teacher: EDM `UNet2DModel` widths ({width}) trained {teacher_steps} "
        f"iterations ({teacher_s:.0f} s); students: the same UNet plus a target-time embedding, initialised from the "
        f"teacher (CTM); batch {batch_size}, lr {lr} constant, 18-interval Karras grid, Heun teacher steps; "
        f"statistics on {statistics_grid_size} times x {statistics_samples} samples; eval every {eval_every} "
        f"iterations on {num_eval} samples; digit-classifier Fréchet distance (FID) to the test split, lower is "
        "better).",
        "",
        f"Teacher reference (same FID, {num_eval} samples): Heun 2 intervals (3 evaluations) "
        f"{teacher_quality[2]:.3f}; Heun 18 intervals (35 evaluations) {teacher_quality[18]:.3f}.",
        "",
        *results_table(runs, seeds, variants, steps, "FID"),
        "",
        *cost_lines(runs, seeds, steps, timed),
        "",
        f"![digits curves](../figures/{figure.name})",
    ]
    print("\n".join(lines), flush=True)
    path = write_part_record(name_of_part, runs, seeds, variants, steps, timed,
                             {"eval_every": eval_every, "num_eval": num_eval, "metric": "digits FID",
                              "teacher": f"EDM UNet2DModel ({width}), {teacher_steps} iterations",
                              "teacher_fid_heun": {f"{k} intervals": v for k, v in teacher_quality.items()},
                              "batch_size": batch_size, "lr": lr, "statistics_grid_size": statistics_grid_size,
                              "statistics_samples": statistics_samples, "host": host, "host_config": host_extra},
                             figure, raw_dir, started, device)
    return runs, path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("ring", "digits", "coefficients", "all"), default="all")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ...")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: ring 0 1, digits 0")
    parser.add_argument("--variants", nargs="+", default=["euler", "variance", "analytic"], choices=list(VARIANTS),
                        help="must include euler and analytic")
    parser.add_argument("--ring-steps", type=int, default=1000)
    parser.add_argument("--ring-eval-every", type=int, default=100)
    parser.add_argument("--ring-num-eval", type=int, default=2000)
    parser.add_argument("--digits-steps", type=int, default=300)
    parser.add_argument("--digits-eval-every", type=int, default=50)
    parser.add_argument("--digits-num-eval", type=int, default=400)
    parser.add_argument("--teacher-steps", type=int, default=800)
    parser.add_argument("--teacher-channels", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--batch-size", type=int, default=64, help="digits student batch")
    parser.add_argument("--lr", type=float, default=2e-4, help="digits student learning rate")
    parser.add_argument("--statistics-grid-size", type=int, default=60)
    parser.add_argument("--statistics-samples", type=int, default=256)
    parser.add_argument("--raw-dir", default=None, help="where the records go (default: docs/results/raw)")
    parser.add_argument("--fig-dir", default="docs/figures")
    parser.add_argument("--workdir", default="/tmp/precond_toy")
    parser.add_argument("--bench-rounds", type=int, default=7, help="interleaved timing rounds (median)")
    parser.add_argument("--bench-iterations", type=int, default=10, help="iterations per timing round")
    parser.add_argument("--host", choices=list(HOSTS), default="simple",
                        help="distillation loss: 'simple' (one Heun step, distance at s) or 'ctm' (sony/ctm's host: "
                             "random Heun steps, sigma_min map by an EMA target, DSM term); record <part>_ctm")
    parser.add_argument("--target-ema-decay", type=float, default=0.95,
                        help="CTM host: EMA decay of the target network (CTM: 0.999 over ~1e5 iterations)")
    parser.add_argument("--dsm-weight", type=float, default=1.0, help="CTM host: weight of the DSM term")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = parser.parse_args(argv)
    if not {"euler", "analytic"} <= set(a.variants):
        parser.error("--variants must include euler and analytic")
    torch.set_num_threads(a.threads)
    command = "python scripts/precond_toy.py " + " ".join(argv) if argv is not None else None
    if command is None:
        import sys

        command = "python scripts/precond_toy.py " + " ".join(sys.argv[1:])
    out = {}
    common = dict(device=a.device, variants=tuple(a.variants), raw_dir=a.raw_dir, fig_dir=a.fig_dir, workdir=a.workdir,
                  command=command, bench=(a.bench_rounds, a.bench_iterations), host=a.host,
                  target_ema_decay=a.target_ema_decay, dsm_weight=a.dsm_weight)
    if a.part in ("coefficients", "all"):
        out["coefficients"] = run_coefficients(tuple(a.seeds or (0, 1, 2)), a.raw_dir, a.fig_dir, a.workdir, a.device)
    if a.part in ("ring", "all"):
        out["ring"] = run_ring(a.ring_steps, tuple(a.seeds or (0, 1)), a.ring_eval_every, a.ring_num_eval, **common)
    if a.part in ("digits", "all"):
        out["digits"] = run_digits(
            a.digits_steps, tuple(a.seeds or (0,)), a.digits_eval_every, a.digits_num_eval,
            teacher_steps=a.teacher_steps, teacher_channels=tuple(a.teacher_channels), batch_size=a.batch_size,
            lr=a.lr, statistics_grid_size=a.statistics_grid_size, statistics_samples=a.statistics_samples, **common)
    return out


if __name__ == "__main__":
    main()
