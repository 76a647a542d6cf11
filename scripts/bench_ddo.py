"""Cost of a DDO step against a plain maximum-likelihood step of the same model and the same real batch.

A DDO step sees B real and B reference samples and runs four forward passes (real and fake through θ with
gradients, through the frozen reference without), so expect about 2-4x the time of an MLE step on the B real
samples. Memory: on CUDA the peak allocated memory of the step; on CPU the bytes autograd saves for the
backward pass (the activation memory), plus the reference model's weights, which DDO keeps resident.

    OMP_NUM_THREADS=1 python scripts/bench_ddo.py [--repeats 10] [--batch-size 16]   # record: docs/results/raw/ddo/bench_step.json

Prints the ratios; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from hfgen.results import write_record
from hfgen.trainers.ddo import DDOConfig, DDOTrainer, denoising_log_likelihood


class SavedTensorBytes:
    """Counts the bytes autograd saves for backward inside the context (CPU activation memory)."""

    def __enter__(self):
        self.bytes = 0

        def pack(t):
            self.bytes += t.numel() * t.element_size()
            return t

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def measure(step, repeats, device):
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step()
        memory = torch.cuda.max_memory_allocated()
    else:
        with SavedTensorBytes() as counter:
            step()
        memory = counter.bytes
    return statistics.median(times), memory


def make_steps(model, trainer, real, fake, mle_loss):
    optimizer = trainer.create_optimizer()
    batch = trainer._prepare_inputs(trainer.data_collator([{"real": r, "fake": f} for r, f in zip(real, fake)]))

    def ddo_step():
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def mle_step():
        loss = mle_loss(batch["real"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return mle_step, ddo_step


def bench_causal_lm(batch_size, repeats, device, tmp):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128))
    seq = [{"input_ids": torch.randint(512, (96,))} for _ in range(2 * batch_size)]
    args = DDOConfig(output_dir=tmp, use_cpu=device.type == "cpu", report_to="none")
    trainer = DDOTrainer(model, args=args, train_dataset=seq[:batch_size], fake_dataset=seq[batch_size:])
    model = trainer.model
    steps = make_steps(model, trainer, seq[:batch_size], seq[batch_size:],
                       lambda real: model(input_ids=real["input_ids"], labels=real["labels"]).loss)
    return steps, sum(p.numel() * p.element_size() for p in trainer.ref_model.parameters())


def bench_unet(batch_size, repeats, device, tmp):
    from diffusers import EDMEulerScheduler, UNet2DModel

    torch.manual_seed(0)
    model = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
                        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                        norm_num_groups=8)
    scheduler = EDMEulerScheduler()
    images = [{"pixel_values": torch.randn(1, 16, 16)} for _ in range(2 * batch_size)]
    args = DDOConfig(output_dir=tmp, use_cpu=device.type == "cpu", report_to="none")
    trainer = DDOTrainer(model, args=args, train_dataset=images[:batch_size], fake_dataset=images[batch_size:],
                         noise_scheduler=scheduler)
    model = trainer.model

    def mle_loss(real):
        x0 = real["pixel_values"]
        level, noise = trainer.sample_noise(x0)
        return -denoising_log_likelihood(model, scheduler, x0, noise, level).mean()

    steps = make_steps(model, trainer, images[:batch_size], images[batch_size:], mle_loss)
    return steps, sum(p.numel() * p.element_size() for p in trainer.ref_model.parameters())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--raw-dir", default=None, help="where the record goes (default: docs/results/raw)")
    args = parser.parse_args(argv)
    started = time.time()
    lines = []
    echo = lambda line: (print(line), lines.append(line))  # noqa: E731
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory_kind = "peak CUDA memory" if device.type == "cuda" else "autograd-saved activations"
    echo(f"device: {device}, torch threads: {torch.get_num_threads()}, batch: {args.batch_size} real "
          f"(+{args.batch_size} reference samples for DDO), median of {args.repeats}")
    rows = []
    for name, bench in (("tiny Llama (4 layers, d=128, L=96)", bench_causal_lm),
                        ("UNet2DModel 16x16 (EDM)", bench_unet)):
        with tempfile.TemporaryDirectory() as tmp:
            (mle_step, ddo_step), ref_bytes = bench(args.batch_size, args.repeats, device, tmp)
            mle_time, mle_mem = measure(mle_step, args.repeats, device)
            ddo_time, ddo_mem = measure(ddo_step, args.repeats, device)
        rows.append((name, mle_time, ddo_time, mle_mem, ddo_mem, ref_bytes))
        echo(f"{name}: MLE {mle_time * 1e3:.1f} ms, DDO {ddo_time * 1e3:.1f} ms, time ratio {ddo_time / mle_time:.2f}x; "
              f"{memory_kind} MLE {mle_mem / 2**20:.1f} MiB, DDO {ddo_mem / 2**20:.1f} MiB, ratio "
              f"{ddo_mem / mle_mem:.2f}x; reference weights +{ref_bytes / 2**20:.1f} MiB")
    metrics = {}
    for name, mle_time, ddo_time, mle_mem, ddo_mem, ref_bytes in rows:
        metrics[f"{name}: MLE step"] = {"median_seconds": [mle_time], "memory_bytes": [mle_mem]}
        metrics[f"{name}: DDO step"] = {"median_seconds": [ddo_time], "memory_bytes": [ddo_mem],
                                        "reference_weight_bytes": [ref_bytes]}
    path = write_record("ddo", "bench_step", seeds=[0], metrics=metrics, started=started, device=device.type,
                        raw_dir=args.raw_dir,
                        settings={"batch_size": args.batch_size, "repeats": args.repeats, "memory": memory_kind,
                                  "notes": ["One run: medians over the repeats; DDO's step also scores as many "
                                            "reference samples as real ones."]})
    return rows, path


if __name__ == "__main__":
    main()
