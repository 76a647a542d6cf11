"""Sampling time of GuidanceFreePipeline (one UNet call a step) vs CFG on the same network and steps.

The same GFT UNet is sampled twice per repeat with the same scheduler, steps, batch and seed:
``guidance="free"`` at β = 1/s and ``guidance="cfg"`` at scale s (conditional and null rows batched
into one call of twice the batch, as Diffusers pipelines do). Prints the median seconds and the
ratio GFT / CFG (the ideal is 0.5). Timing only: weights are untrained. Writes the raw record
``docs/results/raw/gft/bench_sampling.json`` (``--raw-dir`` elsewhere).

    OMP_NUM_THREADS=1 python scripts/bench_gft.py --size 16 --batch 64 --steps 25 [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hfgen.results import write_record


def bench(size: int = 16, batch: int = 64, steps: int = 25, repeats: int = 3, channels=(32, 64), guidance_scale: float = 2.0,
          seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, float]:
    from diffusers import DDIMScheduler

    from hfgen.demos.gft import build_unet
    from hfgen.pipelines import GuidanceFreePipeline

    unet = build_unet(size, beta_input=True, seed=seed, channels=channels).eval()
    pipe = GuidanceFreePipeline(unet=unet, scheduler=DDIMScheduler()).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(batch, device=device) % 10
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = {"free": [], "cfg": []}
    calls = {"free": 0, "cfg": 0}
    mode = "free"

    def count(module, args, kwargs):
        calls[mode] += 1

    hook = unet.register_forward_pre_hook(count, with_kwargs=True)
    for repeat in range(repeats + 1):  # the first repeat warms up
        for mode in times:
            synchronize()
            start = time.perf_counter()
            pipe(class_labels=labels, guidance_scale=guidance_scale, guidance=mode, num_inference_steps=steps,
                 generator=torch.Generator(device).manual_seed(seed), output_type="pt")
            synchronize()  # the GPU works asynchronously: wait for it before reading the clock
            if repeat:
                times[mode].append(time.perf_counter() - start)
    hook.remove()
    gft, cfg = statistics.median(times["free"]), statistics.median(times["cfg"])
    return {"gft_seconds": gft, "cfg_seconds": cfg, "ratio": gft / cfg, "repeat_seconds": times,
            "unet_calls_per_sample_run": {m: c / (repeats + 1) for m, c in calls.items()}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    result = bench(args.size, args.batch, args.steps, args.repeats, seed=args.seed, device=args.device,
                   dtype=getattr(torch, args.dtype))
    calls = result["unet_calls_per_sample_run"]
    metrics = {
        arm: {"median_seconds": [result[f"{arm}_seconds"]], "unet_calls": [calls[mode]],
              "network_evaluations_per_image": [calls[mode] * (2 if mode == "cfg" else 1)],
              "repeat_seconds": [result["repeat_seconds"][mode]]}
        for arm, mode in (("gft", "free"), ("cfg", "cfg"))
    }
    result["record"] = write_record(
        "gft", "bench_sampling", seeds=[args.seed], metrics=metrics, started=started, raw_dir=args.raw_dir,
        device=args.device,
        settings={"size": args.size, "batch": args.batch, "ddim_steps": args.steps, "repeats": args.repeats,
                  "dtype": args.dtype, "guidance_scale": 2.0, "weights": "untrained (timing only)", "baseline": "cfg",
                  "higher_is_better": {"median_seconds": False}, "digits": 3,
                  "notes": ["One seed: the seconds are the median of the repeats after one warm-up, the same "
                            "network, scheduler, batch and seed for both; CFG batches the conditional and null rows "
                            "into one call of twice the batch."]})
    print(f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} size={args.size} "
          f"batch={args.batch} steps={args.steps} "
          f"repeats={args.repeats}")
    print(f"GuidanceFreePipeline (1 NFE/step): {result['gft_seconds']:.3f}s   CFG (2 NFE/step): {result['cfg_seconds']:.3f}s   "
          f"ratio GFT/CFG = {result['ratio']:.3f}")
    return result


if __name__ == "__main__":
    main()
