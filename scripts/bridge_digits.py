"""Edge -> digit translation: a DDBM teacher, then CBD and CBT students; quality against NFE.

Trains a tiny DDBM teacher (VP bridge) on (edge map, digit) pairs of scikit-learn's digits, distils it
into a consistency bridge (CBD) and fine-tunes it by consistency bridge training (CBT), then evaluates
on held-out pairs, for each seed (teacher and students trained afresh): the teacher with DDBM's hybrid Heun sampler and
with DBIM (eta = 0, i.e. the first-order ODE solver of CDBM Eq. 16) at several NFE, and CDBM at
1, 2, 4 NFE. Metrics: the digits Fréchet distance (a small digit classifier's features; the paper's
FID analogue) and the per-pair MSE. Writes the raw record ``docs/results/raw/consistency_bridge/digits.json``
and the figures ``docs/figures/consistency_bridge_digits.png`` (samples, first seed) and
``consistency_bridge_digits_nfe.png`` (FD against NFE with 95% t-interval bands over seeds).

    OMP_NUM_THREADS=1 python scripts/bridge_digits.py --teacher-steps 1500 --student-steps 1500 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hfgen.data.paired_digits import load_paired_digits, paired_digits_dataset
from hfgen.demos.consistency_bridge import evaluate, save_grid, train_consistency, train_teacher
from hfgen.results import write_record

ROOT = Path(__file__).resolve().parents[1]


def plot_quality_against_nfe(metrics: dict, path: Path) -> None:
    """Digits FD against NFE per sampler family: means over seeds with 95% t-interval bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hfgen.results import interval

    families: dict[str, list] = {}
    for arm, values in metrics.items():
        if not arm.endswith("boot-only"):
            families.setdefault(arm.rsplit(", ", 1)[0], []).append((values["nfe"][0], interval(values["fd"])))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for family, points in families.items():
        points.sort(key=lambda p: p[0])
        nfe = [p[0] for p in points]
        ax.plot(nfe, [p[1].mean for p in points], marker="o", label=family)
        ax.fill_between(nfe, [p[1].low for p in points], [p[1].high for p in points], alpha=0.2)
    ax.set(xscale="log", xlabel="network calls (NFE)", ylabel="digits FD (lower is better)",
           title="edges → digits, 95% t-interval over seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(teacher_steps=1000, student_steps=400, size=8, width=16, n_eval=256, seeds=(0,), out_dir="/tmp/consistency_bridge_digits",
         figure=ROOT / "docs/figures/consistency_bridge_digits.png", heun_steps=(4, 11, 34), dbim_steps=(2, 10, 20, 50),
         cdbm_steps=(1, 2, 4), raw_dir=None, margin=0.5):
    """For each seed train a teacher and both students and evaluate every sampler; write the figures and the raw
    record; returns ``(metrics, record path)``. The students evaluated once at ``t = T`` (1 NFE, the booting
    evaluation alone) are not CDBM's sampler: their arms are named "..., boot-only" and kept apart. ``margin`` is the
    FD equivalence margin of the claim "CDBM at 2 NFE matches the teacher's Heun sampler at 101 NFE", fixed before
    the run."""
    import torch
    from transformers import set_seed

    started = time.time()
    out_dir, figure = Path(out_dir), Path(figure)
    train = paired_digits_dataset(size=size, split="train")
    source, target = (x[:n_eval] for x in load_paired_digits(size=size, split="test"))
    metrics: dict[str, dict[str, list]] = {}
    train_seconds, samples = [], {"edges": source, "digit": target}
    for seed in seeds:
        set_seed(seed)
        start = time.perf_counter()
        seed_dir = out_dir / f"seed{seed}"
        teacher = train_teacher(train, seed_dir / "teacher", steps=teacher_steps, seed=seed, width=width, size=size)
        teacher.save_model()
        students = {}
        for mode, name in (("distillation", "CBD"), ("training", "CBT")):
            trainer = train_consistency(teacher.model, train, seed_dir / name.lower(), mode=mode, steps=student_steps,
                                        seed=seed)
            trainer.save_model()
            students[name] = trainer.pipeline()
        train_seconds.append(time.perf_counter() - start)
        plan = [("DDBM teacher, Heun", teacher.pipeline(), "heun", n) for n in heun_steps]
        plan += [("DDBM teacher, DBIM (ODE-1)", teacher.pipeline(), "dbim", n) for n in dbim_steps]
        plan += [(f"CDBM ({name})", pipe, "consistency", n) for name, pipe in students.items() for n in cdbm_steps]
        for name, pipe, solver, steps in plan:
            x, quality = evaluate(pipe, source, target, solver, steps, seed=seed)
            arm = f"{name}, {quality['nfe']} NFE" + (", boot-only" if solver == "consistency" and steps == 1 else "")
            for key in ("fd", "mse", "psnr", "nfe", "seconds"):
                metrics.setdefault(arm, {}).setdefault(key, []).append(quality[key])
            print(json.dumps({"seed": seed, "arm": arm, **quality}), flush=True)
            if seed == seeds[0] and (quality["nfe"] in (2, 101) or (solver == "dbim" and steps == max(dbim_steps))):
                samples[f"{name.split(',')[0].replace('DDBM teacher', 'DDBM ' + solver)} {quality['nfe']}"] = x

    figure.parent.mkdir(parents=True, exist_ok=True)
    save_grid(samples, figure)
    curve = figure.with_name(figure.stem + "_nfe.png")
    plot_quality_against_nfe(metrics, curve)
    path = write_record(
        "consistency_bridge", "digits", seeds=list(seeds), metrics=metrics, started=started, raw_dir=raw_dir,
        figures=[figure, curve], device="cuda" if torch.cuda.is_available() else "cpu",
        settings={"data": f"scikit-learn digits {size}x{size}: Sobel edge map -> digit; the first {n_eval} test pairs",
                  "unet": f"UNet2DModel widths ({width}, {2 * width}), VP bridge, DDBM preconditioning",
                  "teacher_steps": teacher_steps, "student_steps": student_steps, "train_seconds": train_seconds,
                  "students": "CBD and CBT from each seed's teacher (sigmoid r(t), b = 20, stop-grad target, L2)",
                  "higher_is_better": {"fd": False, "mse": False, "psnr": True}, "digits": {"mse": 4, "psnr": 2},
                  "claim": {"text": "CDBM at 2 NFE matches the teacher at 101 NFE", "arm": "CDBM (CBD), 2 NFE",
                            "baseline": "DDBM teacher, Heun, 101 NFE", "metric": "fd", "higher_is_better": False,
                            "margin": margin}})
    print(f"wrote {path}")
    return metrics, path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=1000)
    parser.add_argument("--student-steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--n-eval", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--margin", type=float, default=0.5, help="FD equivalence margin of the claim, fixed in advance")
    parser.add_argument("--out-dir", default="/tmp/consistency_bridge_digits")
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    args = parser.parse_args()
    main(args.teacher_steps, args.student_steps, args.size, args.width, args.n_eval, args.seeds, args.out_dir,
         raw_dir=args.raw_dir, margin=args.margin)
