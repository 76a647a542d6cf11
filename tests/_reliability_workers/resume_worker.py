"""Kill-and-resume runs of tiny hfgen trainers, each leg in a fresh Python process.

    python resume_worker.py OUT_DIR NAME [NAME ...]

For each trainer NAME, three fresh processes (``python resume_worker.py --leg ...``, started with no
``PYTHONHASHSEED``, so each has its own hash seed, as separate user runs do) train from the same seeds into
``OUT_DIR/NAME/``:

- ``uninterrupted/``: ``max_steps`` steps with a checkpoint every ``save_steps``;
- ``killed/``: the same run, which stops at the end of step ``kill_after`` (checkpoints up to it are on disk,
  the steps since the last one are not) and is killed there with SIGKILL by this process;
- ``killed/`` again: a fresh process that calls ``train(resume_from_checkpoint=True)`` and finishes the run.

The settings are 6 steps, a checkpoint every 2, killed after step 3 (16 examples, 4 a batch: the run crosses an
epoch boundary after the resumed checkpoint), except in [`SETTINGS`] (NFT: 8 steps of 4 an epoch, killed after
step 7, so it resumes from checkpoint-6, inside the second epoch).

    python resume_worker.py --every-checkpoint OUT_DIR

runs NFT with a rollout serving 3 optimizer steps (``steps_per_generation=3``, refills on) for 6 steps with a
checkpoint after every step, so checkpoints 1, 2, 4 and 5 fall inside a rollout: ``OUT_DIR/nft-rollout/``
holds the unbroken run (``uninterrupted/``), one fresh process resumed from each of its checkpoints
(``from-<c>/``, a copy of ``checkpoint-<c>`` only), and a run killed with SIGKILL after step 5 and resumed from
its checkpoint-4 (``killed/``).

Each finished run writes ``final.safetensors`` (the model's state dict plus the trainer's extra state: EMA target,
reference model, teacher statistics) and ``logs.json`` (the numbers logged at every step); ``kill.json`` records
how the killed process ended and which checkpoint was resumed.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(__file__))
from builders import build, extra_state, training_logs  # noqa: E402

DEFAULTS = dict(max_steps=6, save_steps=2, kill_after=3)
SETTINGS = {"nft": dict(max_steps=8, save_steps=2, kill_after=7)}  # resume inside the second epoch (4 steps each)
# 8 prompts, 6 a rollout: one rollout an epoch, of 3 steps; checkpoints after every step, so most fall inside one
ROLLOUT = dict(max_steps=6, save_steps=1, kill_after=5, options={"steps_per_generation": 3})


class StallAfter(TrainerCallback):
    """At the end of step ``step``: write ``marker``, then wait to be killed."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            with open(self.marker, "w") as f:
                f.write(str(state.global_step))
            while True:
                time.sleep(1)


def train(name, out_dir, max_steps, save_steps, stall_after=None, resume=False, options=None):
    torch.set_num_threads(1)
    trainer = build(name, out_dir, max_steps=max_steps, save_strategy="steps", save_steps=save_steps, **(options or {}))
    if not resume and stall_after is None:  # the uninterrupted run: keep the start, to show that training moved
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in trainer.model.state_dict().items()},
                  os.path.join(out_dir, "initial.safetensors"))
    if stall_after is not None:
        trainer.add_callback(StallAfter(stall_after, os.path.join(out_dir, "stalled")))
    trainer.train(resume_from_checkpoint=True if resume else None)
    model = trainer.accelerator.unwrap_model(trainer.model)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(extra_state(name, trainer))
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
              os.path.join(out_dir, "final.safetensors"))
    with open(os.path.join(out_dir, "logs.json"), "w") as f:
        json.dump(training_logs(trainer), f)


def _leg(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--leg", *args]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONHASHSEED", None)  # every leg draws its own hash seed
    return env


def run_to_end(*args: str) -> None:
    result = subprocess.run(_leg(*args), env=_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"leg {args} failed with status {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}")


def kill_and_resume(name, root, max_steps, save_steps, kill_after, timeout=600, options=None, unbroken=True):
    steps = [str(max_steps), str(save_steps), *(["--options", json.dumps(options)] if options else [])]
    if unbroken:
        run_to_end(name, os.path.join(root, "uninterrupted"), *steps)
    out = os.path.join(root, "killed")
    proc = subprocess.Popen(_leg(name, out, *steps, "--stall-after", str(kill_after)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker, start = os.path.join(out, "stalled"), time.monotonic()
    while not os.path.exists(marker):
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: the run to be killed ended first (status {proc.returncode}): "
                               f"{proc.stderr.read()[-4000:]}")
        if time.monotonic() - start > timeout:
            proc.kill()
            raise TimeoutError(f"{name}: step {kill_after} not reached in {timeout} s.")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoints = sorted(d for d in os.listdir(out) if d.startswith("checkpoint-"))
    record = {"signal": -proc.returncode if proc.returncode < 0 else None, "killed_at_step": kill_after,
              "checkpoints_at_kill": checkpoints, "max_steps": max_steps, "save_steps": save_steps}
    with open(os.path.join(root, "kill.json"), "w") as f:
        json.dump(record, f)
    run_to_end(name, out, *steps, "--resume")


def resume_from_every_checkpoint(root, max_steps, save_steps, kill_after, options):
    """NFT inside rollouts: the unbroken run, a fresh process resumed from each of its checkpoints, a killed run."""
    steps = [str(max_steps), str(save_steps), "--options", json.dumps(options)]
    unbroken = os.path.join(root, "uninterrupted")
    run_to_end("nft", unbroken, *steps)
    for step in range(save_steps, max_steps, save_steps):
        out = os.path.join(root, f"from-{step}")
        shutil.copytree(os.path.join(unbroken, f"checkpoint-{step}"), os.path.join(out, f"checkpoint-{step}"))
        run_to_end("nft", out, *steps, "--resume")
    kill_and_resume("nft", root, max_steps, save_steps, kill_after, options=options, unbroken=False)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--every-checkpoint":
        resume_from_every_checkpoint(os.path.join(sys.argv[2], "nft-rollout"), **ROLLOUT)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--leg":
        leg = argparse.ArgumentParser()
        leg.add_argument("name")
        leg.add_argument("out_dir")
        leg.add_argument("max_steps", type=int)
        leg.add_argument("save_steps", type=int)
        leg.add_argument("--stall-after", type=int)
        leg.add_argument("--resume", action="store_true")
        leg.add_argument("--options", type=json.loads, help="more config fields, as JSON")
        a = leg.parse_args(sys.argv[2:])
        os.makedirs(a.out_dir, exist_ok=True)
        train(a.name, a.out_dir, a.max_steps, a.save_steps, stall_after=a.stall_after, resume=a.resume,
              options=a.options)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("names", nargs="+")
    a = parser.parse_args()
    for name in a.names:
        start = time.monotonic()
        kill_and_resume(name, os.path.join(a.out_dir, name), **{**DEFAULTS, **SETTINGS.get(name, {})})
        print(f"{name}: {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
