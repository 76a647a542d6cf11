"""Edge -> digit translation: a DDBM teacher, then CBD and CBT students; quality against NFE.

Trains a tiny DDBM teacher (VP bridge) on (edge map, digit) pairs of scikit-learn's digits, distils it
into a consistency bridge (CBD) and fine-tunes it by consistency bridge training (CBT), then evaluates
on held-out pairs, all in one run and with one seed: the teacher with DDBM's hybrid Heun sampler and
with DBIM (eta = 0, i.e. the first-order ODE solver of CDBM Eq. 16) at several NFE, and CDBM at
1, 2, 4 NFE. Metrics: the digits Fréchet distance (a small digit classifier's features; the paper's
FID analogue) and the per-pair MSE. Writes the raw record ``docs/results/raw/consistency_bridge/digits.json``
and the figure ``docs/figures/consistency_bridge_digits.png``.

    OMP_NUM_THREADS=1 python scripts/bridge_digits.py --teacher-steps 1000 --student-steps 400 --size 8
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


def main(teacher_steps=1000, student_steps=400, size=8, width=16, n_eval=256, seed=0, out_dir="/tmp/consistency_bridge_digits",
         figure=ROOT / "docs/figures/consistency_bridge_digits.png", heun_steps=(4, 11, 34), dbim_steps=(2, 10, 20, 50),
         cdbm_steps=(1, 2, 4), raw_dir=None):
    """Train, evaluate every sampler, write the figure and the raw record; returns ``(rows, record path)``. The
    students evaluated once at ``t = T`` (1 NFE, the booting evaluation alone) are not CDBM's sampler: their arms
    are named "..., boot-only" and kept apart."""
    from transformers import set_seed

    set_seed(seed)
    start, started = time.perf_counter(), time.time()
    out_dir = Path(out_dir)
    train = paired_digits_dataset(size=size, split="train")
    source, target = (x[:n_eval] for x in load_paired_digits(size=size, split="test"))
    teacher = train_teacher(train, out_dir / "teacher", steps=teacher_steps, seed=seed, width=width, size=size)
    teacher.save_model()
    students = {}
    for mode, name in (("distillation", "CBD"), ("training", "CBT")):
        trainer = train_consistency(teacher.model, train, out_dir / name.lower(), mode=mode, steps=student_steps, seed=seed)
        trainer.save_model()
        students[name] = trainer.pipeline()
    train_seconds = time.perf_counter() - start
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "a shared CPU"

    rows, samples = [], {"edges": source, "digit": target}
    plan = [("DDBM teacher, Heun", teacher.pipeline(), "heun", n) for n in heun_steps]
    plan += [("DDBM teacher, DBIM (ODE-1)", teacher.pipeline(), "dbim", n) for n in dbim_steps]
    plan += [(f"CDBM ({name})", pipe, "consistency", n) for name, pipe in students.items() for n in cdbm_steps]
    for name, pipe, solver, steps in plan:
        x, metrics = evaluate(pipe, source, target, solver, steps, seed=seed)
        rows.append({"method": name, "boot_only": solver == "consistency" and steps == 1, **metrics})
        print(json.dumps(rows[-1]), flush=True)
        if metrics["nfe"] in (2, 101) or (solver == "dbim" and steps == max(dbim_steps)):
            samples[f"{name.split(',')[0].replace('DDBM teacher', 'DDBM ' + solver)} {metrics['nfe']}"] = x

    Path(figure).parent.mkdir(parents=True, exist_ok=True)
    save_grid(samples, figure)
    metrics = {}
    for r in rows:
        arm = f"{r['method']}, {r['nfe']} NFE" + (", boot-only" if r["boot_only"] else "")
        metrics[arm] = {"fd": [r["fd"]], "mse": [r["mse"]], "psnr": [r["psnr"]], "nfe": [r["nfe"]],
                        "seconds": [r["seconds"]]}
    path = write_record(
        "consistency_bridge", "digits", seeds=[seed], metrics=metrics, started=started, raw_dir=raw_dir,
        figures=[figure], device="cuda" if "CPU" not in device else "cpu",
        settings={"data": f"scikit-learn digits {size}x{size}: Sobel edge map -> digit; the first {n_eval} test pairs",
                  "unet": f"UNet2DModel widths ({width}, {2 * width}), VP bridge, DDBM preconditioning",
                  "teacher_steps": teacher_steps, "student_steps": student_steps, "train_seconds": train_seconds,
                  "students": "CBD and CBT from the teacher (sigmoid r(t), b = 20, stop-grad target, L2)",
                  "higher_is_better": {"fd": False, "mse": False, "psnr": True}, "digits": {"mse": 4, "psnr": 2}})
    print(f"wrote {path}")
    return rows, path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=1000)
    parser.add_argument("--student-steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--n-eval", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="/tmp/consistency_bridge_digits")
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    args = parser.parse_args()
    main(args.teacher_steps, args.student_steps, args.size, args.width, args.n_eval, args.seed, args.out_dir,
         raw_dir=args.raw_dir)
