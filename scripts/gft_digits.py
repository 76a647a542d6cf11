"""GFT vs CFG on scikit-learn's 8x8 digits: fidelity–diversity curves over the guidance strength.

For each seed, one class-conditional UNet architecture, trained twice for the same steps on the same data:
(i) CFG training (conditional loss with 10% label dropout) sampled with classifier-free guidance at
scales s (two network evaluations a step), and (ii) GFT (β ~ U(0, 1)) sampled in one pass at β = 1/s.
For every s: class accuracy of an independent digit classifier (fidelity), digits FID (Fréchet distance
in that classifier's features, against the test split) and within-class feature spread (diversity).
Every seed trains and samples both models afresh; the record keeps each seed's values, the figure shows the mean
with its 95% t-interval over seeds. The claim checked (fixed before the run): GFT at beta = 1/2 matches CFG at
s = 2 in FID within +-3 (the whole paired interval inside the margin). Writes the raw record
``docs/results/raw/gft/digits.json`` and ``docs/figures/gft_curves.png``, ``gft_samples.png``.

    OMP_NUM_THREADS=1 python scripts/gft_digits.py --train-steps 400 --samples-per-class 40 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hfgen.results import write_record

ROOT = Path(__file__).resolve().parents[1]


def plot_curves(metrics: dict, scales, path: Path) -> None:
    """Fidelity-diversity (means over seeds) and FID against the guidance scale with 95% t-interval bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hfgen.results import interval

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, marker in (("CFG", "o"), ("GFT", "s")):
        arms = [metrics[f"{name} s={s:g}"] for s in scales]
        diversity = [interval(a["diversity"]).mean for a in arms]
        accuracy = [interval(a["class_accuracy"]).mean for a in arms]
        left.plot(diversity, accuracy, marker=marker, label=name)
        for s, x, y in zip(scales, diversity, accuracy):
            left.annotate(f"s={s:g}", (x, y), fontsize=7)
        fid = [interval(a["digits_fid"]) for a in arms]
        right.plot(scales, [f.mean for f in fid], marker=marker, label=name)
        right.fill_between(scales, [f.low for f in fid], [f.high for f in fid], alpha=0.2)
    left.set(xlabel="diversity (within-class feature spread)", ylabel="class accuracy (fidelity)",
             title="fidelity–diversity (mean over seeds)")
    right.set(xlabel="guidance scale s (GFT: β = 1/s)", ylabel="digits FID (lower is better)",
              title="FID, 95% t-interval over seeds")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    from hfgen.demos.gft import build_unet, evaluate, sample, save_grid, train
    from hfgen.metrics.sample_quality import digits_classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--samples-per-class", type=int, default=100)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--ddim-steps", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--raw-dir", type=Path, default=None, help="where the record goes (default: docs/results/raw)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/gft_digits"))
    args = parser.parse_args(argv)
    started = time.time()
    digits_classifier()
    labels = torch.arange(10).repeat_interleave(args.samples_per_class)
    metrics: dict[str, dict[str, list]] = {}
    train_seconds: dict[str, list[float]] = {"CFG": [], "GFT": []}
    panels = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        models = {}
        for name, guidance_free in (("CFG", False), ("GFT", True)):
            models[name] = build_unet(8, beta_input=guidance_free, seed=seed, channels=args.channels)
            seconds = train(models[name], args.work_dir / f"seed{seed}" / name, guidance_free=guidance_free,
                            steps=args.train_steps, seed=seed)
            train_seconds[name].append(seconds)
            print(f"seed {seed} {name}: trained {args.train_steps} steps in {seconds:.0f}s", flush=True)
        for scale in args.scales:
            for name, guidance in (("CFG", "cfg"), ("GFT", "free")):
                images, seconds, nfe = sample(models[name], labels, guidance_scale=scale, guidance=guidance,
                                              steps=args.ddim_steps, seed=seed + 1)
                quality = evaluate(images, labels)
                arm = metrics.setdefault(f"{name} s={scale:g}", {})
                for key, value in (("class_accuracy", quality["accuracy"]), ("digits_fid", quality["fid"]),
                                   ("diversity", quality["diversity"]), ("nfe_per_image", nfe),
                                   ("sampling_seconds", seconds)):
                    arm.setdefault(key, []).append(value)
                print(f"seed {seed} {name} s={scale:g}: acc {quality['accuracy']:.3f}  FID {quality['fid']:.3f}  "
                      f"diversity {quality['diversity']:.3f}  NFE/image {nfe:.0f}  {seconds:.1f}s", flush=True)
                if seed == args.seeds[0] and scale in (1.0, 3.0):
                    panels[f"{name} s={scale:g}" + (f" (β={1 / scale:.2g})" if name == "GFT" else "")] = images

    figures = args.figures_dir
    figures.mkdir(parents=True, exist_ok=True)
    plot_curves(metrics, args.scales, figures / "gft_curves.png")
    save_grid(panels, figures / "gft_samples.png")
    record = write_record(
        "gft", "digits", seeds=args.seeds, metrics=metrics, started=started,
        raw_dir=args.raw_dir, figures=[figures / "gft_curves.png", figures / "gft_samples.png"],
        settings={"unet": f"UNet2DConditionModel, channels {tuple(args.channels)}, 8x8, null label 10",
                  "train_steps": args.train_steps, "train_seconds": train_seconds, "scales": args.scales,
                  "training": "batch 64, AdamW lr 2e-3 cosine, label dropout 0.1; CFG: beta = 1, GFT: beta ~ U(0, 1)",
                  "sampling": f"DDIM {args.ddim_steps} steps, same seeds; CFG at scale s, GFT at beta = 1/s",
                  "samples_per_class": args.samples_per_class,
                  "higher_is_better": {"class_accuracy": True, "digits_fid": False, "diversity": True},
                  "claim": {"arm": "GFT s=2", "baseline": "CFG s=2", "metric": "digits_fid", "higher_is_better": False,
                            "margin": 3.0},
                  "budget": {"CFG": f"{args.train_steps} steps, one lr", "GFT": f"{args.train_steps} steps, one lr"}})
    print(f"wrote {record}")
    return metrics, record


if __name__ == "__main__":
    main()
