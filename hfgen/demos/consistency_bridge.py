"""Demo: edge -> digit translation; CDBM in 1-2 network evaluations vs its DDBM teacher sampled with many.

Trains a tiny DDBM teacher on (edge map, digit) pairs, then a consistency bridge by consistency bridge
training (CBT, initialised from the teacher), and compares on held-out pairs in the same run: the
teacher with DBIM / DDBM's Heun sampler at many NFE and at 2 NFE, and CDBM at 1 and 2 NFE. The
helpers here are also used by ``scripts/bridge_digits.py``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from hfgen.demos import verbose

CLAIM = "paper: CDBM at 2 NFE translates about as well as its DDBM teacher at ~20-100 NFE (CDBM Table 2)"


def tiny_bridge_unet(size: int = 16, channels: int = 1, width: int = 32, seed: int = 0):
    """A small ``UNet2DModel`` conditioned on ``y`` by channel concatenation."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size, in_channels=2 * channels, out_channels=channels, block_out_channels=(width, 2 * width),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1, norm_num_groups=8,
    )


def _common_args(output_dir, steps, seed, lr, batch_size):
    return dict(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
        lr_scheduler_type="cosine", warmup_steps=min(50, steps // 10), logging_steps=max(1, steps // 10),
        save_strategy="no", report_to=[], seed=seed, dataloader_num_workers=0, disable_tqdm=not verbose(), weight_decay=0.0,
    )


def train_teacher(dataset, output_dir, steps=1500, seed=0, lr=2e-3, batch_size=64, width=32, size=16):
    """A DDBM teacher (VP bridge, DDBM preconditioning); returns the trainer."""
    from hfgen.trainers import BridgeConfig, BridgeTrainer

    args = BridgeConfig(**_common_args(output_dir, steps, seed, lr, batch_size))
    trainer = BridgeTrainer(tiny_bridge_unet(size=size, width=width, seed=seed), args, train_dataset=dataset)
    trainer.train()
    return trainer


def train_consistency(teacher, dataset, output_dir, mode="training", steps=800, seed=0, lr=5e-4, batch_size=64, **kwargs):
    """CBT (``mode="training"``) or CBD (``"distillation"``) initialised from the teacher's weights."""
    import copy

    from hfgen.trainers import ConsistencyBridgeConfig, ConsistencyBridgeTrainer

    defaults = dict(time_schedule="sigmoid", sigmoid_b=20.0, stage_steps=max(1, steps // 3))
    args = ConsistencyBridgeConfig(mode=mode, **_common_args(output_dir, steps, seed, lr, batch_size), **{**defaults, **kwargs})
    student = copy.deepcopy(teacher).requires_grad_(True)
    trainer = ConsistencyBridgeTrainer(student, args, teacher=teacher if mode == "distillation" else None, train_dataset=dataset)
    trainer.train()
    return trainer


@torch.no_grad()
def evaluate(pipe, source, target, solver, steps, seed=0, eta=None):
    """Translate ``source`` with ``solver`` and ``steps``; returns the samples and metrics."""
    from hfgen.metrics.sample_quality import digits_fid
    from hfgen.pipelines import BridgeScheduler

    pipe.scheduler = BridgeScheduler.from_config(pipe.scheduler.config, solver=solver, eta=0.0 if solver == "dbim" else 1.0)
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    out = pipe((source + 1) / 2, num_inference_steps=steps, eta=eta, generator=torch.Generator().manual_seed(seed), output_type="pt")
    seconds = time.perf_counter() - start
    samples = out.images.cpu() * 2 - 1
    mse = ((samples - target) ** 2).mean().item()
    psnr = 10 * math.log10(4.0 / mse)  # peak-to-peak range 2 in [-1, 1]
    return samples, {"nfe": out.nfe, "mse": mse, "psnr": psnr, "fd": digits_fid(samples), "seconds": seconds}


def save_grid(rows: dict, path, n: int = 10):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, *(len(images) for images in rows.values()))
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.6, len(rows) * 0.68))
    for i, (name, images) in enumerate(rows.items()):
        for j in range(n):
            axes[i, j].imshow(images[j, 0].clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
            axes[i, j].set_axis_off()
        axes[i, 0].set_title(name, fontsize=7, loc="left")
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(output_dir, seed: int = 0, teacher_steps: int = 300, student_steps: int = 300, n_eval: int = 128, size: int = 8,
        width: int = 16):
    """Edge -> digit: DDBM teacher (DBIM 20 NFE, 2 NFE) vs CDBM-CBT (1, 2 NFE); PSNR, Fréchet distance, NFE."""
    from transformers import set_seed

    from hfgen.data.paired_digits import load_paired_digits, paired_digits_dataset
    from hfgen.demos import DemoResult

    output_dir = Path(output_dir)
    set_seed(seed)
    start = time.perf_counter()
    train = paired_digits_dataset(size=size, split="train")
    source, target = (x[:n_eval] for x in load_paired_digits(size=size, split="test"))
    teacher = train_teacher(train, output_dir / "teacher", steps=teacher_steps, seed=seed, size=size, width=width)
    teacher_pipe = teacher.pipeline()
    cbt = train_consistency(teacher.model, train, output_dir / "cbt", steps=student_steps, seed=seed)
    cdbm_pipe = cbt.pipeline()

    results, samples = {}, {"edges": source, "digit": target}
    for name, pipe, solver, steps in [
        ("DDBM teacher, DBIM", teacher_pipe, "dbim", 20),
        ("DDBM teacher, DBIM", teacher_pipe, "dbim", 2),
        ("CDBM (CBT)", cdbm_pipe, "consistency", 1),
        ("CDBM (CBT)", cdbm_pipe, "consistency", 2),
    ]:
        x, metrics = evaluate(pipe, source, target, solver, steps, seed=seed)
        key = f"{name} {metrics['nfe']} NFE"
        results[key], samples[key] = metrics, x
    figure = output_dir / "consistency_bridge_digits.png"
    save_grid(samples, figure)
    baseline, method = results["DDBM teacher, DBIM 20 NFE"], results["CDBM (CBT) 2 NFE"]
    return DemoResult(
        method="consistency_bridge", claim=CLAIM, metric="PSNR to the paired digit, dB (higher is better)",
        baseline_name="DDBM teacher, DBIM 20 NFE", baseline_value=baseline["psnr"], method_value=method["psnr"],
        higher_is_better=True, seconds=time.perf_counter() - start, figures=[str(figure)],
        details={"results": results, "teacher_steps": teacher_steps, "student_steps": student_steps, "n_eval": n_eval,
                 "size": size, "width": width, "seed": seed},
    )
