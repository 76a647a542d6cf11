"""``hfgen demo toyflow``: train a rectified flow on 8 Gaussians and compare its samples with the noise it starts from."""

import math
from pathlib import Path

import torch

from hfgen.demos import DemoResult


def eight_gaussians(num_points: int, seed: int = 0) -> torch.Tensor:
    """``num_points`` points of 8 Gaussians (standard deviation 0.1) evenly spaced on the circle of radius 2."""
    generator = torch.Generator().manual_seed(seed)
    angle = torch.randint(0, 8, (num_points,), generator=generator) * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([angle.cos(), angle.sin()], dim=-1)
    return centres + 0.1 * torch.randn(num_points, 2, generator=generator)


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """The energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between two point sets (0 for equal laws)."""
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def run(output_dir, seed: int = 0, smoke: bool = False, steps: int = 300) -> DemoResult:
    """Train [`ToyFlowTrainer`] for ``steps`` steps (20 with ``smoke=True``), sample 20 Euler steps, and report the
    energy distance to held-out data of the samples and of the Gaussian noise they start from."""
    from datasets import Dataset

    from hfgen_toyflow.modeling_toyflow import ToyFlowModel
    from hfgen_toyflow.toyflow_config import ToyFlowConfig
    from hfgen_toyflow.toyflow_trainer import ToyFlowTrainer

    output_dir = Path(output_dir)
    steps, num_eval = (20, 256) if smoke else (steps, 2000)
    data = Dataset.from_dict({"points": eight_gaussians(4096, seed).tolist()}).with_format("torch")
    args = ToyFlowConfig(str(output_dir / "run"), max_steps=steps, per_device_train_batch_size=256, learning_rate=3e-3,
                         seed=seed, save_strategy="no", logging_steps=steps, use_cpu=True,
                         disable_tqdm=True)
    torch.manual_seed(seed)
    trainer = ToyFlowTrainer(ToyFlowModel(), args, train_dataset=data)
    trainer.train()
    pipe = trainer.pipeline()
    pipe.set_progress_bar_config(disable=True)

    held_out = eight_gaussians(num_eval, seed + 1)
    noise = torch.randn(num_eval, 2, generator=torch.Generator().manual_seed(seed + 2))
    samples = pipe(num_points=num_eval, latents=noise.clone()).points
    figure = output_dir / "toyflow_samples.png"
    _plot(held_out, noise, samples, figure)
    return DemoResult(
        method="toyflow", claim="a rectified flow carries Gaussian noise onto the 8-Gaussian mixture",
        metric="energy distance to held-out data (lower is better)", baseline_name="Gaussian noise",
        baseline_value=energy_distance(noise, held_out), method_value=energy_distance(samples, held_out),
        higher_is_better=False, figures=[str(figure)], details={"train_steps": steps, "num_eval": num_eval},
    )


def _plot(data: torch.Tensor, noise: torch.Tensor, samples: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 3), sharex=True, sharey=True)
    for ax, points, title in zip(axes, (noise, samples, data), ("noise", "rectified flow, 20 steps", "data")):
        ax.scatter(points[:, 0], points[:, 1], s=2)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
