"""Wall time per translated image: CDBM (2 NFE) vs its DDBM teacher's samplers, in the same run.

Loads the teacher and the CBT student saved by ``scripts/bridge_digits.py`` (default
``/tmp/consistency_bridge_digits/seed0/{teacher,cbd,cbt}``), times each sampler on the same batch of held-out
edge maps (median of ``--repeats`` runs after a warm-up), prints the quality of each (digits Fréchet
distance, MSE) next to its time, and the time ratios against CDBM. Never asserts timings. Writes the raw record
``docs/results/raw/consistency_bridge/bench_sampling.json``.

    OMP_NUM_THREADS=1 python scripts/bench_bridge.py --run-dir /tmp/consistency_bridge_digits/seed0
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from hfgen.data.paired_digits import load_paired_digits
from hfgen.demos.consistency_bridge import evaluate
from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline
from hfgen.results import write_record


def time_sampler(pipe, source, solver, steps, repeats):
    pipe.scheduler = BridgeScheduler.from_config(pipe.scheduler.config, solver=solver)
    pipe.set_progress_bar_config(disable=True)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        pipe((source + 1) / 2, num_inference_steps=steps, generator=torch.Generator().manual_seed(i), output_type="pt")
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) / len(source)


def main(run_dir="/tmp/consistency_bridge_digits/seed0", batch=256, repeats=3,
         plan=(("heun", 34), ("dbim", 20), ("dbim", 10), ("dbim", 2)), raw_dir=None):
    """Time and evaluate every sampler, print the table, write the record; returns ``{"rows", "record"}``."""
    started = time.time()
    run_dir = Path(run_dir)
    teacher = ConsistencyBridgePipeline.from_pretrained(run_dir / "teacher")
    students = [(f"CDBM ({name.upper()})", ConsistencyBridgePipeline.from_pretrained(run_dir / name))
                for name in ("cbd", "cbt") if (run_dir / name).is_dir()]
    size = teacher.unet.config.sample_size
    source, target = (x[:batch] for x in load_paired_digits(size=size, split="test"))
    rows = []
    runs = [(name, pipe, "consistency", 2) for name, pipe in students] + [("DDBM teacher", teacher, s, n) for s, n in plan]
    for name, pipe, solver, steps in runs:
        seconds = time_sampler(pipe, source, solver, steps, repeats)
        _, metrics = evaluate(pipe, source, target, solver, steps)
        rows.append((f"{name}, {solver}", metrics["nfe"], seconds, metrics["fd"], metrics["mse"]))
    base = rows[0][2]
    print(f"torch threads: {torch.get_num_threads()}, batch {batch}, median of {repeats}")
    print(f"| sampler | NFE | ms / image | time ratio vs {rows[0][0]} | FD | MSE |")
    print("|---|---|---|---|---|---|")
    for name, nfe, seconds, fd, mse in rows:
        print(f"| {name} | {nfe} | {1000 * seconds:.3f} | {seconds / base:.1f}x | {fd:.3f} | {mse:.4f} |")
    # equal quality: the cheapest teacher sampler at least as good (FD) as each student
    for name, _, seconds, fd, _ in rows[:len(students)]:
        matches = [r for r in rows[len(students):] if r[3] <= fd]
        if matches:
            best = min(matches, key=lambda r: r[2])
            print(f"equal quality: {name} (FD {fd:.3f}) vs the fastest teacher sampler with FD <= it, {best[0]} "
                  f"{best[1]} NFE (FD {best[3]:.3f}): {best[2] / seconds:.1f}x the time per image")
        else:
            print(f"equal quality: {name} (FD {fd:.3f}) is better than every teacher sampler timed")
    metrics = {name: {"seconds_per_image": [seconds], "time_ratio_to_first": [seconds / base], "nfe": [nfe], "fd": [fd],
                      "mse": [mse]} for name, nfe, seconds, fd, mse in rows}
    record = write_record("consistency_bridge", "bench_sampling", seeds=[0], metrics=metrics, started=started,
                          raw_dir=raw_dir,
                          settings={"run_dir": str(run_dir), "batch": batch, "repeats": repeats,
                                    "timing": "median of the repeats after one warm-up, divided by the batch",
                                    "digits": {"seconds_per_image": 6, "mse": 4}})
    print(f"wrote {record}")
    return {"rows": rows, "record": record}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="/tmp/consistency_bridge_digits/seed0")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    args = parser.parse_args()
    main(args.run_dir, args.batch, args.repeats, raw_dir=args.raw_dir)
