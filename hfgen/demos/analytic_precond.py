"""Demo: distil a 2-D Gaussian-mixture teacher into a trajectory student with Euler (CTM) vs analytic preconditioning.

The teacher is the exact EDM denoiser of an 8-mode ring mixture (closed form), so the only error is the
student's. Both students get the same seed, data, steps and optimiser; we compare 2-step (the paper's
setting) and 1-step samples by the sliced Wasserstein distance to fresh data, in the same run. The
helpers here are also used by ``scripts/precond_toy.py``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

CLAIM = "Analytic-Precond trains consistency trajectory models faster for 2-step sampling (arXiv 2502.02922, Tab. 2)"


class GaussianMixtureDenoiser(torch.nn.Module):
    r"""Exact EDM denoiser ``D(x, t) = E[x_0 | x_0 + t z = x]`` of an isotropic Gaussian mixture (equal weights).

    Per component ``k``: ``E[x_0 | x, k] = mu_k + c^2 / (c^2 + t^2) (x - mu_k)``, with posterior weights
    ``softmax_k(-||x - mu_k||^2 / (2 (c^2 + t^2)))``.
    """

    def __init__(self, means: torch.Tensor, std: float):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        var = self.std**2 + torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1) ** 2  # (B|1, 1, 1)
        diff = x[:, None, :] - self.means[None]  # (B, K, d)
        weights = torch.softmax(-diff.pow(2).sum(-1, keepdim=True) / (2 * var), dim=1)
        return (weights * (self.means[None] + self.std**2 / var * diff)).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.randint(0, len(self.means), (n,), generator=generator)
        return self.means[k] + self.std * torch.randn(n, self.means.shape[1], generator=generator)


def ring_teacher(modes: int = 8, radius: float = 0.7, std: float = 0.05) -> GaussianMixtureDenoiser:
    angles = torch.arange(modes) * 2 * math.pi / modes
    return GaussianMixtureDenoiser(radius * torch.stack([angles.cos(), angles.sin()], 1), std)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance of two equal-size point clouds (random directions, sorted projections)."""
    directions = torch.randn(a.shape[1], projections, generator=torch.Generator().manual_seed(seed))
    directions = directions / directions.norm(dim=0, keepdim=True)
    pa, pb = (a.float() @ directions).sort(0).values, (b.float() @ directions).sort(0).values
    return (pa - pb).pow(2).mean().sqrt().item()


def distillation_trainer(
    teacher,
    preconditioning: str,
    output_dir,
    steps: int = 300,
    seed: int = 0,
    batch_size: int = 256,
    lr: float = 2e-3,
    hidden_dim: int = 128,
    num_samples: int = 4096,
    **config,
):
    """An (untrained) trainer of a [`TrajectoryMLP`] student with one preconditioning (estimates the statistics)."""
    from datasets import Dataset

    from hfgen.pipelines.consistency_trajectory import TrajectoryMLP
    from hfgen.trainers import ConsistencyDistillationConfig, ConsistencyDistillationTrainer

    data = teacher.sample(num_samples, torch.Generator().manual_seed(seed))
    dataset = Dataset.from_dict({"sample": data.tolist()}).with_format("torch")
    torch.manual_seed(seed)
    student = TrajectoryMLP(dim=2, hidden_dim=hidden_dim)
    args = ConsistencyDistillationConfig(
        output_dir=str(output_dir),
        preconditioning=preconditioning,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="constant",
        logging_steps=max(1, steps // 5),
        save_strategy="no",
        report_to=[],
        seed=seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=False,
        weight_decay=0.0,
        statistics_samples=min(1024, num_samples),
        **config,
    )
    return ConsistencyDistillationTrainer(student, args, teacher=teacher, train_dataset=dataset)


def distil(teacher, preconditioning: str, output_dir, **kwargs):
    """Train a student with one preconditioning (arguments of [`distillation_trainer`]); returns the trainer."""
    trainer = distillation_trainer(teacher, preconditioning, output_dir, **kwargs)
    trainer.train()
    return trainer


def sample_quality(trainer, teacher, steps: int, n: int = 2000, seed: int = 0) -> float:
    """Sliced Wasserstein of ``n`` ``steps``-step student samples to ``n`` fresh data points."""
    pipe = trainer.pipeline()
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=n, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed + 1)).samples
    return sliced_wasserstein(samples, teacher.sample(n, torch.Generator().manual_seed(seed + 2)))


def run(output_dir, seed: int = 0, steps: int = 300, num_eval: int = 2000):
    """Distil with "euler" and "analytic" (same seed and budget); compare 1- and 2-step samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hfgen.demo import DemoResult

    start = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    teacher = ring_teacher()
    trainers, quality = {}, {}
    for name in ("euler", "analytic"):
        trainers[name] = distil(teacher, name, output_dir / name, steps=steps, seed=seed)
        quality[name] = {k: sample_quality(trainers[name], teacher, k, num_eval, seed) for k in (1, 2)}

    figure = output_dir / "analytic_precond_samples.png"
    fig, axes = plt.subplots(1, 3, figsize=(9, 3), sharex=True, sharey=True)
    data = teacher.sample(num_eval, torch.Generator().manual_seed(seed + 2))
    axes[0].scatter(*data.T, s=1)
    axes[0].set_title("data")
    for ax, name in zip(axes[1:], trainers):
        pipe = trainers[name].pipeline()
        pipe.set_progress_bar_config(disable=True)
        x = pipe(batch_size=num_eval, num_inference_steps=2, generator=torch.Generator().manual_seed(seed + 1)).samples
        ax.scatter(*x.T, s=1)
        ax.set_title(f"{name}, 2 steps (SW {quality[name][2]:.3f})")
    for ax in axes:
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
    fig.tight_layout()
    fig.savefig(figure, dpi=80)
    plt.close(fig)
    return DemoResult(
        method="analytic_precond",
        claim=CLAIM,
        metric=f"2-step sliced Wasserstein to data after {steps} steps (lower is better)",
        baseline_name="euler (CTM) preconditioning",
        baseline_value=quality["euler"][2],
        method_value=quality["analytic"][2],
        higher_is_better=False,
        seconds=time.time() - start,
        figures=[str(figure)],
        details={
            "one_step_euler": quality["euler"][1],
            "one_step_analytic": quality["analytic"][1],
            "steps": steps,
            "seed": seed,
        },
    )
