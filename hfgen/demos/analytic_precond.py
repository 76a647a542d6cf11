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

from hfgen.demos import verbose

CLAIM = "paper: Analytic-Precond trains consistency trajectory models faster for 2-step sampling (arXiv 2502.02922, Tab. 2)"


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
        """``n`` data points (on the CPU)."""
        means = self.means.cpu()
        k = torch.randint(0, len(means), (n,), generator=generator)
        return means[k] + self.std.cpu() * torch.randn(n, means.shape[1], generator=generator)


def ring_teacher(modes: int = 8, radius: float = 0.7, std: float = 0.05) -> GaussianMixtureDenoiser:
    angles = torch.arange(modes) * 2 * math.pi / modes
    return GaussianMixtureDenoiser(radius * torch.stack([angles.cos(), angles.sin()], 1), std)


class EDMTeacher(torch.nn.Module):
    r"""A ``UNet2DModel`` ``F`` as the EDM denoiser ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``, with the
    scalings of diffusers' [`EDMEulerScheduler`] (``teacher(x, sigma)``, ``sigma`` a float or a ``(B,)`` tensor)."""

    def __init__(self, unet, scheduler):
        super().__init__()
        self.unet, self.scheduler = unet, scheduler

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        shaped = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        out = self.unet(
            self.scheduler.precondition_inputs(x, shaped), self.scheduler.precondition_noise(sigma).expand(len(x))
        ).sample
        return self.scheduler.precondition_outputs(x, out, shaped)


def digits_unet(channels=(16, 32), trajectory: bool = False, seed: int = 0):
    """The small 8x8 digits ``UNet2DModel`` of ``scripts/ddo_toy.py``; ``trajectory`` adds the target-time input
    (``class_embed_type="timestep"``, see [`trajectory_network`]) of a consistency trajectory student."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=tuple(channels), layers_per_block=1,
        down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
        norm_num_groups=8, class_embed_type="timestep" if trajectory else None,
    )


def train_digits_teacher(steps: int = 2000, batch_size: int = 128, lr: float = 2e-3, channels=(16, 32),
                         seed: int = 0, device="cpu", sigma_max: float = 80.0, log_every: int = 500) -> EDMTeacher:
    """EDM denoising score matching (``hfgen.trainers.ddo.denoising_log_likelihood``, EDM's log-normal noise levels
    ``P_mean = -1.2``, ``P_std = 1.2``) of [`digits_unet`] on the digits train split; returns the frozen teacher."""
    from diffusers import EDMEulerScheduler

    from hfgen.data.digits import load_digits_images
    from hfgen.trainers.ddo import denoising_log_likelihood

    data = load_digits_images(size=8, split="train")[0].to(device)
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=sigma_max, sigma_data=0.5)
    unet = digits_unet(channels, seed=seed).to(device).train()
    optimizer = torch.optim.Adam(unet.parameters(), lr=lr)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        x0 = data[torch.randint(len(data), (batch_size,), generator=generator).to(device)]
        sigma = (torch.randn(batch_size, generator=generator) * 1.2 - 1.2).exp().to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        loss = -denoising_log_likelihood(unet, scheduler, x0, noise, sigma).mean() / x0[0].numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        if log_every and step % log_every == 0:
            print(f"teacher step {step}/{steps}: loss {loss.item():.4f}", flush=True)
    return EDMTeacher(unet.eval().requires_grad_(False), scheduler)


def digits_student(teacher: EDMTeacher, seed: int = 0):
    """A trajectory student initialised from the teacher (CTM): same weights, target-time embedding zeroed, so
    that at step 0 its ``D_theta(x, t, s) = D_phi(x, t)`` for every ``s``."""
    config = teacher.unet.config
    student = digits_unet(config.block_out_channels, trajectory=True, seed=seed)
    missing, unexpected = student.load_state_dict(teacher.unet.state_dict(), strict=False)
    if unexpected or any(not k.startswith("class_embedding.") for k in missing):
        raise ValueError(f"Teacher and student UNets differ: missing {missing}, unexpected {unexpected}.")
    torch.nn.init.zeros_(student.class_embedding.linear_2.weight)
    torch.nn.init.zeros_(student.class_embedding.linear_2.bias)
    return student.to(teacher.unet.device)


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
    student=None,
    data: torch.Tensor | None = None,
    device: str = "cpu",
    **config,
):
    """An (untrained) trainer with one preconditioning (estimates the statistics): by default a [`TrajectoryMLP`]
    student on ``num_samples`` points of ``teacher.sample``; else the given ``student`` on ``data``."""
    from datasets import Dataset

    from hfgen.pipelines.consistency_trajectory import TrajectoryMLP
    from hfgen.trainers import ConsistencyDistillationConfig, ConsistencyDistillationTrainer

    if data is None:
        data = teacher.sample(num_samples, torch.Generator().manual_seed(seed))
    dataset = Dataset.from_dict({"sample": data.cpu().numpy()}).with_format("torch")
    if student is None:
        torch.manual_seed(seed)
        student = TrajectoryMLP(dim=data.shape[1], hidden_dim=hidden_dim)
    defaults = dict(
        use_cpu=str(device) == "cpu",
        lr_scheduler_type="constant",
        logging_steps=max(1, steps // 5),
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=not verbose(),
        weight_decay=0.0,
        statistics_samples=min(1024, len(data)),
    )
    args = ConsistencyDistillationConfig(
        output_dir=str(output_dir),
        preconditioning=preconditioning,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        seed=seed,
        **{**defaults, **config},
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
    return sliced_wasserstein(samples.cpu(), teacher.sample(n, torch.Generator().manual_seed(seed + 2)))


@torch.no_grad()
def digits_sample_quality(trainer, steps: int, n: int = 500, seed: int = 0) -> float:
    """Digits FID (``hfgen.metrics.sample_quality.digits_fid``, vs the test split) of ``n`` ``steps``-step samples."""
    from hfgen.metrics.sample_quality import digits_fid

    pipe = trainer.pipeline()
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed + 1)
    samples = pipe(batch_size=n, num_inference_steps=steps, generator=generator, output_type="pt").samples
    return digits_fid(samples.float().cpu())


def run(output_dir, seed: int = 0, steps: int = 300, num_eval: int = 2000):
    """Distil with "euler" and "analytic" (same seed and budget); compare 1- and 2-step samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hfgen.demos import DemoResult

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
