"""The first GPU run, prepared: every pipeline, every trainer and the headline benchmarks, one JSON line per check.

    python scripts/gpu_check.py --device cuda [--out docs/results/raw] [--only NAME ...]   # <= 8 min on one H100
    python scripts/gpu_check.py --device cpu --tiny                                        # CI, on the CPU

Checks (a failing check prints ``"ok": false`` with its error and the run goes on):

- ``pipeline/<name>/<dtype>/<generator>``: each pipeline of `hfgen.testing.tiny_pipelines` (every denoiser type),
  in float32 and bfloat16, with a CPU generator and one on the device; the output must be finite.
- ``trainer/<method>``: each method's registered demo (a Trainer run, sampling and evaluation), with a few steps,
  on whatever device the Trainer picks (the demos choose it as `transformers.Trainer` does).
- ``trainer/masked_diffusion-bf16-sigma``: MaskedDiffusionTrainer in bf16 on a time-conditioned MDLM DiT fed sigma.
- ``bench/fhs-vs-ancestral``: the first-hitting sampler against MDLM's ancestral sampler (T = 1000, cache on) at
  L = 1024, V = 50,257 with a BERT-base-sized random masked LM in bf16, batch 1, a generator on the device; wall
  time, network calls and peak memory of each.
- ``bench/gft-vs-cfg``: guidance-free sampling (1 network call per step) against CFG (2, batched) on 64x64x4
  latents with a mid-size class-conditional UNet in bf16, batch 16, 50 DDIM steps.

With ``--tiny`` the benchmarks shrink (L = 64, V = 1,000; 16x16 latents) and the demos take their smallest sizes.
With ``--out DIR`` every record is also written as one raw record (`hfgen.results.write_record`) under
``DIR/gpu_check/<device>.json``; with ``--jsonl FILE`` every line is also appended to ``FILE``. Trainers print
their logs on stdout too: the check lines are the JSON objects with a ``"check"`` key. The exit status is 0 when
every check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

# a few steps for each demo: the keyword arguments of its `run` that make it short
DEMO_SIZES = {
    "analytic_precond": {"steps": 20, "num_eval": 64},
    "consistency_bridge": {"teacher_steps": 10, "student_steps": 10, "n_eval": 16},
    "crossan": {"num_users": 40, "epochs": 1},
    "gft": {"train_steps": 10, "samples_per_class": 4, "inference_steps": 4},
    "iisan": {"num_users": 40, "epochs": 1},
    "masked_diffusion": {"train_steps": 10, "judge_steps": 10, "seq_len": 16, "num_samples": 2, "ancestral_steps": 20},
    "mf2": {"n_train": 64, "n_test": 32, "max_steps": 10},
}


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_check(name, fn, device, records):
    """Run one check, print its JSON line, keep going whatever happens."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    record = {"check": name, "device": str(device)}
    try:
        record.update(fn() or {})
        record["ok"] = True
    except Exception as err:  # a failing check is reported, never fatal
        record["ok"] = False
        record["error"] = f"{type(err).__name__}: {err}"[:2000]
        record["traceback"] = traceback.format_exc().splitlines()[-12:]
    synchronize(device)
    record["seconds"] = round(time.perf_counter() - start, 3)
    if torch.device(device).type == "cuda":
        record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    emit(record)
    records.append(record)
    return record


JSONL = []  # files that also receive every JSON line (--jsonl)


def emit(record):
    line = json.dumps(record, default=str)
    print(line, flush=True)
    for path in JSONL:
        with open(path, "a") as f:
            f.write(line + "\n")


# ------------------------------------------------------------------------------------------ pipelines


def pipeline_checks(device, records, only):
    from hfgen.testing.tiny_pipelines import PIPELINES

    for name in sorted(PIPELINES):
        for dtype in (torch.float32, torch.bfloat16):
            for generator_device in dict.fromkeys(["cpu", device.type]):  # a CPU generator, and one on the device
                check = f"pipeline/{name}/{str(dtype).removeprefix('torch.')}/generator-{generator_device}"
                if not selected(check, only):
                    continue

                def run(name=name, dtype=dtype, generator_device=generator_device):
                    pipe, call = PIPELINES[name]()
                    pipe.set_progress_bar_config(disable=True)
                    pipe.to(device, dtype)
                    out = call(pipe, torch.Generator(generator_device).manual_seed(0))
                    if not torch.isfinite(out.float()).all():
                        raise FloatingPointError("the output has non-finite values")
                    return {"output_device": str(out.device), "output_dtype": str(out.dtype)}

                run_check(check, run, device, records)


# ------------------------------------------------------------------------------------------ trainers


def trainer_checks(device, records, only, tiny):
    import inspect

    from hfgen.registry import get_method, list_methods

    for info in list_methods():
        check = f"trainer/{info.name}"
        if not selected(check, only):
            continue

        def run(method=info.name):
            demo = get_method(method).load_demo()
            sizes = {k: v for k, v in DEMO_SIZES.get(method, {}).items() if k in inspect.signature(demo).parameters}
            with tempfile.TemporaryDirectory() as folder:
                result = demo(Path(folder), seed=0, **sizes)
            return {"metric": result.metric, "baseline": result.baseline_value, "method": result.method_value,
                    "sizes": sizes}

        run_check(check, run, device, records)

    check = "trainer/masked_diffusion-bf16-sigma"
    if selected(check, only):
        run_check(check, lambda: masked_diffusion_bf16(device), device, records)


def masked_diffusion_bf16(device):
    """A time-conditioned MDLM DiT trained in bf16 with ``time_conditioning="sigma"`` for a few steps: finite loss."""
    from hfgen.models.mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM
    from hfgen.trainers import MaskedDiffusionConfig, MaskedDiffusionTrainer

    torch.manual_seed(0)
    model = MDLMDiTForMaskedLM(MDLMDiTConfig(vocab_size=33, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                             cond_dim=32, max_position_embeddings=32, time_conditioning=True,
                                             mask_token_id=32))
    tokens = torch.randint(0, 32, (64, 32), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row} for row in tokens]  # a plain list: no `datasets` needed
    with tempfile.TemporaryDirectory() as folder:
        args = MaskedDiffusionConfig(output_dir=folder, max_steps=5, per_device_train_batch_size=8, report_to="none",
                                     bf16=True, use_cpu=torch.device(device).type == "cpu", masking_schedule="loglinear",
                                     time_conditioning="sigma", mask_token_id=32, save_strategy="no", logging_steps=1)
        trainer = MaskedDiffusionTrainer(model=model, args=args, train_dataset=data)
        out = trainer.train()
    if not torch.isfinite(torch.tensor(out.training_loss)):
        raise FloatingPointError(f"training loss {out.training_loss}")
    return {"training_loss": out.training_loss, "model_device": str(next(trainer.model.parameters()).device)}


# ------------------------------------------------------------------------------------------ benchmarks


def fhs_vs_ancestral(device, tiny):
    """FHS (exact, one network call per token) against ancestral T = 1000 (cached), same random BERT-base MLM."""
    from transformers import BertConfig, BertForMaskedLM

    from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline

    length, vocab = (64, 1000) if tiny else (1024, 50257)
    size = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64) if tiny else {}
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    denoiser = BertForMaskedLM(BertConfig(vocab_size=vocab, max_position_embeddings=length, **size)).eval().to(device, dtype)
    mask_id = vocab - 1
    pipe = MaskedDiffusionPipeline(denoiser=denoiser, tokenizer=None, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    template = torch.full((length,), mask_id, device=device)
    results = {"seq_len": length, "vocab_size": vocab, "denoiser_parameters": denoiser.num_parameters(),
               "dtype": str(dtype), "batch": 1}
    pipe(input_ids=template[:8], mask_token_id=mask_id, output_type="pt")  # warm-up
    for name, scheduler, steps in (("fhs", FirstHittingScheduler(), None),
                                   ("ancestral_T1000", AncestralMaskedScheduler(), 1000)):
        pipe.scheduler = scheduler
        if torch.device(device).type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        synchronize(device)
        start = time.perf_counter()
        out = pipe(input_ids=template, mask_token_id=mask_id, num_inference_steps=steps, output_type="pt",
                   generator=torch.Generator(device).manual_seed(0))
        synchronize(device)
        results[f"{name}_seconds"] = round(time.perf_counter() - start, 3)
        results[f"{name}_nfe"] = out.nfe
        if torch.device(device).type == "cuda":
            results[f"{name}_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    results["speedup"] = round(results["ancestral_T1000_seconds"] / results["fhs_seconds"], 3)
    return results


def gft_vs_cfg(device, tiny):
    """Guidance-free (one call per step) against CFG (two, batched) with the same mid-size UNet, same steps."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from hfgen.pipelines import GuidanceFreePipeline

    size, channels, batch, steps = (16, (32, 64), 4, 4) if tiny else (64, (128, 256, 256, 512), 16, 50)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    unet = UNet2DConditionModel(sample_size=size, in_channels=4, out_channels=4, block_out_channels=channels,
                                layers_per_block=2, down_block_types=("DownBlock2D",) * len(channels),
                                up_block_types=("UpBlock2D",) * len(channels), num_class_embeds=1001,
                                time_cond_proj_dim=256, norm_num_groups=32, mid_block_type="UNetMidBlock2D")
    pipe = GuidanceFreePipeline(unet=unet.eval(), scheduler=DDIMScheduler()).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    labels = list(range(batch))
    results = {"latent_size": [4, size, size], "unet_parameters": unet.num_parameters(), "dtype": str(dtype),
               "batch": batch, "steps": steps}
    pipe(class_labels=labels[:1], num_inference_steps=2, output_type="latent")  # warm-up
    for guidance in ("free", "cfg"):
        synchronize(device)
        start = time.perf_counter()
        images = pipe(class_labels=labels, guidance_scale=2.0, guidance=guidance, num_inference_steps=steps,
                      generator=torch.Generator(device).manual_seed(0), output_type="latent").images
        synchronize(device)
        results[f"{guidance}_seconds"] = round(time.perf_counter() - start, 3)
        results[f"{guidance}_finite"] = bool(torch.isfinite(images.float()).all())
    results["speedup"] = round(results["cfg_seconds"] / results["free_seconds"], 3)
    return results


def selected(check, only):
    return not only or any(check.startswith(prefix) for prefix in only)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="small sizes everywhere (CI on the CPU)")
    parser.add_argument("--only", nargs="*", default=[], help="run the checks whose names start with these prefixes")
    parser.add_argument("--out", default=None, help="also write one raw record under OUT/gpu_check/")
    parser.add_argument("--jsonl", default=None, help="also append every JSON line to this file")
    args = parser.parse_args(argv)
    JSONL[:] = [args.jsonl] if args.jsonl else []
    started = time.time()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    records = []
    environment = {"check": "environment", "ok": True, "torch": torch.__version__, "device": str(device),
                   "python": sys.version.split()[0]}
    if device.type == "cuda":
        environment.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    for package in ("transformers", "diffusers", "trl", "peft", "accelerate", "datasets", "safetensors"):
        try:
            environment[package] = __import__(package).__version__
        except Exception as err:  # noqa: BLE001 (reported, the checks that need it will fail on their own)
            environment[package] = f"missing: {type(err).__name__}"
    emit(environment)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    pipeline_checks(device, records, args.only)
    trainer_checks(device, records, args.only, args.tiny)
    for name, bench in (("bench/fhs-vs-ancestral", fhs_vs_ancestral), ("bench/gft-vs-cfg", gft_vs_cfg)):
        if selected(name, args.only):
            run_check(name, lambda bench=bench: bench(device, args.tiny), device, records)
    summary = {"check": "summary", "ok": all(r["ok"] for r in records), "passed": sum(r["ok"] for r in records),
               "failed": [r["check"] for r in records if not r["ok"]], "seconds": round(time.time() - started, 1)}
    emit(summary)
    if args.out:
        from hfgen.results import write_record

        write_record("gpu_check", f"{device.type}{'-tiny' if args.tiny else ''}", seeds=[0],
                     metrics={r["check"]: r for r in [environment, *records]}, settings=vars(args), started=started,
                     device=environment.get("gpu", str(device)), raw_dir=args.out)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
