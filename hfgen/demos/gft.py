"""GFT demo: guidance-free training vs classifier-free guidance on scikit-learn's 8x8 digits.

Two copies of one small class-conditional UNet are trained for the same number of steps on the same
data: (i) CFG training (conditional loss, 10% label dropout; ``GFTTrainer`` with β ≡ 1) and (ii) GFT
(β ~ U(0, 1), the same dropout). Both are sampled with the same DDIM steps and seeds: the CFG model with
guidance scale s (two network evaluations a step), the GFT model at β = 1/s (one evaluation a step).
Reported: class accuracy of an independent digit classifier, digits FID (Fréchet distance in that
classifier's feature space), within-class feature spread (diversity), network evaluations and seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

CLAIM = "paper: GFT samples at CFG quality with one network evaluation per step instead of two"


def build_unet(size: int = 8, beta_input: bool = True, seed: int = 0, channels=(32, 64)):
    """The shared architecture: a class-conditional UNet2DConditionModel without cross-attention
    (labels 0-9, null label 10); ``beta_input`` adds GFT's β input (``time_cond_proj_dim``)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=size, in_channels=1, out_channels=1, block_out_channels=tuple(channels), layers_per_block=1,
        down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
        mid_block_type=None, norm_num_groups=8, num_class_embeds=11, time_cond_proj_dim=64 if beta_input else None,
    )


def train(unet, output_dir, *, guidance_free: bool, steps: int, batch_size: int = 64, lr: float = 2e-3,
          size: int = 8, seed: int = 0, disable_tqdm: bool = False) -> float:
    """Train ``unet`` with GFT (``guidance_free``) or with CFG's conditional loss; returns seconds."""
    from hfgen.data.digits import digits_dataset
    from hfgen.trainers import GFTConfig, GFTTrainer

    args = GFTConfig(
        output_dir=str(output_dir), beta_min=0.0 if guidance_free else 1.0, beta_max=1.0, cond_drop_prob=0.1,
        max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr, lr_scheduler_type="cosine",
        warmup_steps=min(50, steps // 10), weight_decay=0.0, save_strategy="no", report_to=[], seed=seed,
        logging_steps=max(steps // 5, 1), disable_tqdm=disable_tqdm, dataloader_drop_last=True,
    )
    trainer = GFTTrainer(unet, args, train_dataset=digits_dataset(size=size, split="train"))
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


@torch.no_grad()
def sample(unet, labels: torch.Tensor, *, guidance_scale: float, guidance: str, steps: int = 20, seed: int = 0):
    """Images in [-1, 1], seconds and network evaluations (rows through the UNet) per image."""
    from diffusers import DDIMScheduler

    from hfgen.pipelines import GuidanceFreePipeline

    pipe = GuidanceFreePipeline(unet=unet.eval(), scheduler=DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    rows = []
    handle = unet.register_forward_pre_hook(lambda module, args, kwargs: rows.append(args[0].shape[0]), with_kwargs=True)
    start = time.perf_counter()
    images = pipe(class_labels=labels, guidance_scale=guidance_scale, guidance=guidance, num_inference_steps=steps,
                  generator=torch.Generator().manual_seed(seed), output_type="pt").images
    seconds = time.perf_counter() - start
    handle.remove()
    return images * 2 - 1, seconds, sum(rows) / len(labels)


@torch.no_grad()
def evaluate(images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Class accuracy, digits FID and diversity (mean within-class RMS distance of classifier features to their mean)."""
    from hfgen.metrics.sample_quality import class_accuracy, digits_classifier, digits_fid

    features = digits_classifier().features(images.clamp(-1, 1))
    spread = [((features[labels == c] - features[labels == c].mean(0)) ** 2).sum(-1).mean().sqrt()
              for c in labels.unique()]
    return {"accuracy": class_accuracy(images, labels), "fid": digits_fid(images),
            "diversity": float(torch.stack(spread).mean())}


def save_grid(panels: dict[str, torch.Tensor], path: Path, per_class: int = 8) -> None:
    """One panel per entry: rows are classes 0-9, ``per_class`` samples each (images sorted by label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 4.0))
    for ax, (title, images) in zip(axes if len(panels) > 1 else [axes], panels.items()):
        grid = images[:, 0].reshape(10, images.shape[0] // 10, *images.shape[-2:])[:, :per_class]  # (10, k, H, W)
        grid = grid.permute(0, 2, 1, 3).flatten(2).flatten(0, 1)  # (10 H, k W)
        ax.imshow(grid.numpy(), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(output_dir, seed: int = 0, *, train_steps: int = 250, samples_per_class: int = 40, guidance_scale: float = 2.0,
        inference_steps: int = 20, size: int = 8, channels=(32, 64)):
    from hfgen.demos import DemoResult, verbose
    from hfgen.metrics.sample_quality import digits_classifier

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    digits_classifier()  # the evaluation classifier, trained once up front
    cfg_unet = build_unet(size, beta_input=False, seed=seed, channels=channels)
    gft_unet = build_unet(size, beta_input=True, seed=seed, channels=channels)
    train_seconds = {
        "cfg": train(cfg_unet, output_dir / "cfg", guidance_free=False, steps=train_steps, size=size, seed=seed,
                     disable_tqdm=not verbose()),
        "gft": train(gft_unet, output_dir / "gft", guidance_free=True, steps=train_steps, size=size, seed=seed,
                     disable_tqdm=not verbose()),
    }
    labels = torch.arange(10).repeat_interleave(samples_per_class)
    results, panels = {}, {}
    for name, unet, guidance in (("cfg", cfg_unet, "cfg"), ("gft", gft_unet, "free")):
        images, seconds, nfe = sample(unet, labels, guidance_scale=guidance_scale, guidance=guidance,
                                      steps=inference_steps, seed=seed + 1)
        results[name] = {**evaluate(images, labels), "seconds": seconds, "nfe_per_image": nfe,
                         "train_seconds": train_seconds[name]}
        beta_text = f"β={1 / guidance_scale:.2g}, " if name == "gft" else f"s={guidance_scale:g}, "
        panels[f"{name.upper()} ({beta_text}{nfe:.0f} NFE)\nacc {results[name]['accuracy']:.2f}, "
               f"FID {results[name]['fid']:.2f}"] = images
    figure = output_dir / "gft_samples.png"
    save_grid(panels, figure)
    cfg, gft = results["cfg"], results["gft"]
    return DemoResult(
        method="gft", claim=CLAIM, metric=f"digits FID at guidance {guidance_scale:g} (lower is better)",
        baseline_name="CFG", baseline_value=cfg["fid"], method_value=gft["fid"], higher_is_better=False,
        figures=[str(figure)],
        details={"cfg": cfg, "gft": gft, "sampling_time_ratio_gft_over_cfg": gft["seconds"] / cfg["seconds"],
                 "settings": {"train_steps": train_steps, "samples": len(labels), "guidance_scale": guidance_scale,
                              "beta": 1 / guidance_scale, "ddim_steps": inference_steps, "image_size": size,
                              "channels": list(channels), "seed": seed}},
    )
