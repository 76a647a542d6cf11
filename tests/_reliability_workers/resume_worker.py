"""Kill-and-resume runs of tiny hfgen trainers, each in its own (forked) process.

    python resume_worker.py OUT_DIR NAME [NAME ...] [--max-steps 6] [--save-steps 2] [--kill-after 3]

For each trainer NAME, three child processes train from the same seeds into ``OUT_DIR/NAME/``:

- ``uninterrupted/``: ``max_steps`` steps with a checkpoint every ``save_steps``;
- ``killed/``: the same run, which stops at the end of step ``kill_after`` (checkpoints up to it are on disk,
  the steps since the last one are not) and is killed there with SIGKILL by this process;
- ``killed/`` again: a fresh process that calls ``train(resume_from_checkpoint=True)`` and finishes the run.

Each finished run writes ``final.safetensors`` (the model's state dict plus the trainer's extra state: EMA target,
reference model, teacher statistics) and ``logs.json`` (the numbers logged at every step); ``kill.json`` records
how the killed process ended and which checkpoint was resumed. The heavy imports happen once, before the forks.
"""

import argparse
import json
import os
import signal
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(__file__))
from builders import build, extra_state, training_logs  # noqa: E402


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


def train(name, out_dir, max_steps, save_steps, stall_after=None, resume=False):
    torch.set_num_threads(1)
    trainer = build(name, out_dir, max_steps=max_steps, save_strategy="steps", save_steps=save_steps)
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


def in_child(fn, *args, **kwargs) -> int:
    """Fork; the child runs ``fn`` and exits (1 on an exception). Returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args, **kwargs)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def run_to_end(fn, *args, **kwargs):
    _, status = os.waitpid(in_child(fn, *args, **kwargs), 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{fn.__name__}{args} failed with status {os.waitstatus_to_exitcode(status)}")


def kill_and_resume(name, root, max_steps, save_steps, kill_after, timeout=300):
    run_to_end(train, name, os.path.join(root, "uninterrupted"), max_steps, save_steps)
    out = os.path.join(root, "killed")
    pid = in_child(train, name, out, max_steps, save_steps, stall_after=kill_after)
    marker, start = os.path.join(out, "stalled"), time.monotonic()
    while not os.path.exists(marker):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            raise RuntimeError(f"{name}: the run to be killed ended first (status {status}).")
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            raise TimeoutError(f"{name}: step {kill_after} not reached in {timeout} s.")
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    checkpoints = sorted(d for d in os.listdir(out) if d.startswith("checkpoint-"))
    record = {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, "killed_at_step": kill_after,
              "checkpoints_at_kill": checkpoints}
    with open(os.path.join(root, "kill.json"), "w") as f:
        json.dump(record, f)
    run_to_end(train, name, out, max_steps, save_steps, resume=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("names", nargs="+")
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--save-steps", type=int, default=2)
    parser.add_argument("--kill-after", type=int, default=3)
    a = parser.parse_args()
    torch.set_num_threads(1)
    for name in a.names:
        start = time.monotonic()
        build(name, os.path.join(a.out_dir, "_warmup"), max_steps=1)  # import every module before forking
        kill_and_resume(name, os.path.join(a.out_dir, name), a.max_steps, a.save_steps, a.kill_after)
        print(f"{name}: {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
