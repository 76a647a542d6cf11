"""GFT vs CFG on scikit-learn's 8x8 digits: fidelity–diversity curves over the guidance strength.

One class-conditional UNet architecture, trained twice for the same steps on the same data:
(i) CFG training (conditional loss with 10% label dropout) sampled with classifier-free guidance at
scales s (two network evaluations a step), and (ii) GFT (β ~ U(0, 1)) sampled in one pass at β = 1/s.
For every s: class accuracy of an independent digit classifier (fidelity), digits FID (Fréchet distance
in that classifier's features, against the test split) and within-class feature spread (diversity).
Writes the raw record ``docs/results/raw/gft/digits.json`` and ``docs/figures/gft_curves.png``, ``gft_samples.png``.

    python scripts/gft_digits.py --train-steps 1500 --samples-per-class 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hfgen.results import write_record

ROOT = Path(__file__).resolve().parents[1]


def plot_curves(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, marker in (("CFG", "o"), ("GFT", "s")):
        pts = [r for r in rows if r["method"] == name]
        left.plot([r["diversity"] for r in pts], [r["accuracy"] for r in pts], marker=marker, label=name)
        for r in pts:
            left.annotate(f"s={r['scale']:g}", (r["diversity"], r["accuracy"]), fontsize=7)
        right.plot([r["scale"] for r in pts], [r["fid"] for r in pts], marker=marker, label=name)
    left.set(xlabel="diversity (within-class feature spread)", ylabel="class accuracy (fidelity)",
             title="fidelity–diversity")
    right.set(xlabel="guidance scale s (GFT: β = 1/s)", ylabel="digits FID (lower is better)", title="FID")
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--raw-dir", type=Path, default=None, help="where the record goes (default: docs/results/raw)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/gft_digits"))
    args = parser.parse_args(argv)
    started = time.time()
    torch.manual_seed(args.seed)
    digits_classifier()
    models, train_seconds = {}, {}
    for name, guidance_free in (("CFG", False), ("GFT", True)):
        models[name] = build_unet(8, beta_input=guidance_free, seed=args.seed, channels=args.channels)
        train_seconds[name] = train(models[name], args.work_dir / name, guidance_free=guidance_free, steps=args.train_steps,
                                    seed=args.seed)
        print(f"{name}: trained {args.train_steps} steps in {train_seconds[name]:.0f}s", flush=True)

    labels = torch.arange(10).repeat_interleave(args.samples_per_class)
    rows, panels = [], {}
    for scale in args.scales:
        for name, guidance in (("CFG", "cfg"), ("GFT", "free")):
            images, seconds, nfe = sample(models[name], labels, guidance_scale=scale, guidance=guidance,
                                          steps=args.ddim_steps, seed=args.seed + 1)
            row = {"method": name, "scale": scale, **evaluate(images, labels), "nfe": nfe, "seconds": seconds}
            rows.append(row)
            print(f"{name} s={scale:g}: acc {row['accuracy']:.3f}  FID {row['fid']:.3f}  diversity {row['diversity']:.3f}  "
                  f"NFE/image {nfe:.0f}  {seconds:.1f}s", flush=True)
            if scale in (1.0, 3.0):
                panels[f"{name} s={scale:g}" + (f" (β={1 / scale:.2g})" if name == "GFT" else "")] = images

    figures = args.figures_dir
    figures.mkdir(parents=True, exist_ok=True)
    plot_curves(rows, figures / "gft_curves.png")
    save_grid(panels, figures / "gft_samples.png")
    metrics = {f"{r['method']} s={r['scale']:g}": {"class_accuracy": [r["accuracy"]], "digits_fid": [r["fid"]],
                                                  "diversity": [r["diversity"]], "nfe_per_image": [r["nfe"]],
                                                  "sampling_seconds": [r["seconds"]]} for r in rows}
    record = write_record(
        "gft", "digits", seeds=[args.seed], metrics=metrics, started=started,
        raw_dir=args.raw_dir, figures=[figures / "gft_curves.png", figures / "gft_samples.png"],
        settings={"unet": f"UNet2DConditionModel, channels {tuple(args.channels)}, 8x8, null label 10",
                  "train_steps": args.train_steps, "train_seconds": train_seconds,
                  "training": "batch 64, AdamW lr 2e-3 cosine, label dropout 0.1; CFG: beta = 1, GFT: beta ~ U(0, 1)",
                  "sampling": f"DDIM {args.ddim_steps} steps, same seeds; CFG at scale s, GFT at beta = 1/s",
                  "samples_per_class": args.samples_per_class,
                  "budget": {"CFG": f"{args.train_steps} steps, one lr", "GFT": f"{args.train_steps} steps, one lr"}})
    print(f"wrote {record}")
    return rows, record


if __name__ == "__main__":
    main()
