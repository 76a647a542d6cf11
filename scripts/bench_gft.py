"""Sampling time of GuidanceFreePipeline (one UNet call a step) vs CFG on the same network and steps.

The same GFT UNet is sampled twice per repeat with the same scheduler, steps, batch and seed:
``guidance="free"`` at β = 1/s and ``guidance="cfg"`` at scale s (conditional and null rows batched
into one call of twice the batch, as Diffusers pipelines do). Prints the median seconds and the
ratio GFT / CFG (the ideal is 0.5). Timing only: weights are untrained.

    python scripts/bench_gft.py --size 16 --batch 64 --steps 25 [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


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
    for repeat in range(repeats + 1):  # the first repeat warms up
        for mode in times:
            synchronize()
            start = time.perf_counter()
            pipe(class_labels=labels, guidance_scale=guidance_scale, guidance=mode, num_inference_steps=steps,
                 generator=torch.Generator(device).manual_seed(seed), output_type="pt")
            synchronize()  # the GPU works asynchronously: wait for it before reading the clock
            if repeat:
                times[mode].append(time.perf_counter() - start)
    gft, cfg = statistics.median(times["free"]), statistics.median(times["cfg"])
    return {"gft_seconds": gft, "cfg_seconds": cfg, "ratio": gft / cfg}


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench(args.size, args.batch, args.steps, args.repeats, device=args.device, dtype=getattr(torch, args.dtype))
    print(f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} size={args.size} batch={args.batch} "
          f"steps={args.steps} "
          f"repeats={args.repeats}")
    print(f"GuidanceFreePipeline (1 NFE/step): {result['gft_seconds']:.3f}s   CFG (2 NFE/step): {result['cfg_seconds']:.3f}s   "
          f"ratio GFT/CFG = {result['ratio']:.3f}")
    return result


if __name__ == "__main__":
    main()
