"""Train, checkpoint and resume tiny hfgen trainers as one rank of a ``torchrun`` job (CPU, gloo), one after another.

    torchrun --standalone --nproc_per_node 2 dist_checkpoint_worker.py OUT_DIR NAME [NAME ...] [--max-steps 4]
        [--save-steps 2] [--resume-from 2]

For each trainer NAME (one launch for all of them: the interpreters start once), every rank:

- trains ``max_steps`` steps into ``OUT_DIR/NAME/run`` with a checkpoint every ``save_steps`` (each rank puts its
  ``rng_state_<rank>.pth`` into the checkpoint folder that rank 0 writes through hfgen's atomic save);
- then trains a fresh trainer into ``OUT_DIR/NAME/resumed`` from ``run/checkpoint-<resume-from>`` to ``max_steps``;

and writes ``OUT_DIR/NAME/rank<r>_{run,resumed}.safetensors`` (the model's state dict plus the trainer's extra
state: EMA targets, reference model, teacher statistics), ``rank<r>_initial.safetensors`` and ``rank<r>.json``
(world size, distributed type, backend, each run's logged numbers, a SHA-256 of the batch each training step
received, to show that the ranks train on different examples, and the folders this rank saved through
[`hfgen.hub.atomic_save_dir`]: only rank 0 may write a checkpoint's weights, or two ranks' saves race and can
drop them). DDO runs with an EMA of its weights (``ema_decay``).
"""

import argparse
import hashlib
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file

import hfgen.hub
import hfgen.trainers.checkpointing

sys.path.insert(0, os.path.dirname(__file__))
from builders import TRAINERS, build, extra_state, training_logs  # noqa: E402


def tensors(name, trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out.update(extra_state(name, trainer))
    return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}


def batch_digest(inputs) -> str:
    digest = hashlib.sha256()

    def feed(value):
        if isinstance(value, dict):
            for key in sorted(value):
                digest.update(str(key).encode())
                feed(value[key])
        elif isinstance(value, list | tuple):
            for item in value:
                feed(item)
        elif isinstance(value, torch.Tensor):
            digest.update(str((value.dtype, tuple(value.shape))).encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())

    feed(inputs)
    return digest.hexdigest()


def record_batches(trainer) -> list[str]:
    """Digest of the inputs of each ``training_step`` call (one per step: no gradient accumulation here)."""
    digests, training_step = [], trainer.training_step

    def recording(model, inputs, *args, **kwargs):
        digests.append(batch_digest(inputs))
        return training_step(model, inputs, *args, **kwargs)

    trainer.training_step = recording
    return digests


def record_atomic_saves() -> list[str]:
    """Every folder that this process commits through [`hfgen.hub.atomic_save_dir`]."""
    folders, atomic_save_dir = [], hfgen.hub.atomic_save_dir

    def recording(folder):
        if hfgen.hub.STAGING_PREFIX not in str(folder):  # (a save nested in another save's staging is part of it)
            folders.append(os.path.abspath(folder))
        return atomic_save_dir(folder)

    hfgen.hub.atomic_save_dir = hfgen.hub.mixins.atomic_save_dir = hfgen.trainers.checkpointing.atomic_save_dir = recording
    return folders


ATOMIC_SAVES = record_atomic_saves()


def run(name, out_dir, max_steps, save_steps, resume_from):
    kwargs = dict(max_steps=max_steps, save_strategy="steps", save_steps=save_steps, ddp_backend="gloo")
    if name == "ddo":
        kwargs["ema_decay"] = 0.5
    trainer = build(name, os.path.join(out_dir, "run"), **kwargs)
    rank = trainer.args.process_index
    initial = tensors(name, trainer)
    batches = record_batches(trainer)
    trainer.train()
    final, logs = tensors(name, trainer), training_logs(trainer)
    state = trainer.accelerator.state
    info = {"world_size": trainer.args.world_size, "distributed_type": str(state.distributed_type),
            "backend": state.backend, "logs": logs, "batches": batches}

    resumed = build(name, os.path.join(out_dir, "resumed"), **kwargs)
    resumed_batches = record_batches(resumed)
    resumed.train(resume_from_checkpoint=os.path.join(out_dir, "run", f"checkpoint-{resume_from}"))
    info.update(resumed_logs=training_logs(resumed), resumed_batches=resumed_batches)
    info["atomic_saves"] = [os.path.relpath(f, os.path.abspath(out_dir)) for f in ATOMIC_SAVES]
    ATOMIC_SAVES.clear()
    save_file(initial, os.path.join(out_dir, f"rank{rank}_initial.safetensors"))
    save_file(final, os.path.join(out_dir, f"rank{rank}_run.safetensors"))
    save_file(tensors(name, resumed), os.path.join(out_dir, f"rank{rank}_resumed.safetensors"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(info, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("names", nargs="+", choices=TRAINERS)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--save-steps", type=int, default=2)
    parser.add_argument("--resume-from", type=int, default=2)
    a = parser.parse_args()
    if a.resume_from % a.save_steps or not 0 < a.resume_from < a.max_steps:
        raise ValueError(f"`--resume-from` ({a.resume_from}) must be a checkpointed step before `--max-steps`.")
    torch.set_num_threads(1)
    for name in a.names:
        start = time.monotonic()
        run(name, os.path.join(a.out_dir, name), a.max_steps, a.save_steps, a.resume_from)
        print(f"[rank {os.environ.get('RANK', 0)}] {name}: {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
    if torch.distributed.is_initialized():  # a rank exiting with live gloo threads can abort ("terminate called ...")
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
