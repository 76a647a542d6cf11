"""Exact resume of DDO self-play: a run killed with SIGKILL in round 2 of 3 and resumed with
``resume_from_checkpoint=True`` ends bitwise equal to the unbroken run (weights and every round's record).

Run as a script (``python tests/test_ddo_self_play_resume.py OUTPUT_DIR NUM_THREADS``), this file is the worker
that kills itself at step 2 of round 2.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from transformers import TrainerCallback

from hfgen.testing import tiny_models
from hfgen.trainers.ddo import DDOConfig, ddo_self_play, generate_lm_samples, sequence_log_prob

NUM_ROUNDS = 3
PROMPT = torch.tensor([3])


def tiny_llama(hidden_size=16):
    return tiny_models.tiny_llama(hidden_size=hidden_size, pad_token_id=0)


def token_examples(n, seed):
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        ids = torch.randint(1, 16, (int(torch.randint(4, 8, (1,), generator=g)),), generator=g)
        labels = ids.clone()
        labels[:1] = -100
        examples.append({"input_ids": ids, "labels": labels})
    return examples


HELD_OUT = token_examples(16, 5)


def metric(model):  # mean held-out negative log-likelihood (deterministic)
    return -sum(sequence_log_prob(model, ex["input_ids"][None], torch.ones(1, len(ex["input_ids"])),
                                  ex["labels"][None]).item() for ex in HELD_OUT) / len(HELD_OUT)


def generate(reference, num_samples, round_index):
    # The sampling seed comes from the global RNG on purpose: the resumed run must reproduce it too.
    return generate_lm_samples(reference, PROMPT, num_samples, 4, seed=int(torch.randint(1 << 30, ())))


class KillAt(TrainerCallback):
    def __init__(self, round_index, step):
        self.round_dir, self.step = f"round_{round_index}", step

    def on_step_end(self, args, state, control, **kwargs):
        if os.path.basename(args.output_dir) == self.round_dir and state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def run(output_dir, model=None, round_callback=None, callbacks=None, resume_from_checkpoint=None, **overrides):
    settings = dict(output_dir=str(output_dir), use_cpu=True, save_strategy="no", disable_tqdm=True, report_to=[],
                    seed=0, per_device_train_batch_size=4, max_steps=4, learning_rate=1e-2, beta=0.5, logging_steps=1,
                    num_rounds=NUM_ROUNDS, num_reference_samples=16, self_play_eval_steps=2)
    args = DDOConfig(**{**settings, **overrides})
    return ddo_self_play(model or tiny_llama(), args, token_examples(16, 1), generate, metric,
                         round_callback=round_callback, callbacks=callbacks,
                         resume_from_checkpoint=resume_from_checkpoint)


def records(output, root):
    return [{**vars(r), "best_model_path": os.path.relpath(r.best_model_path, root)} for r in output.rounds]


def test_self_play_killed_in_round_2_and_resumed_equals_the_unbroken_run_bitwise(tmp_path):
    unbroken = run(tmp_path / "unbroken")
    assert [r.round for r in unbroken.rounds] == [1, 2, 3]

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, __file__, str(killed), str(torch.get_num_threads())], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert sorted(p.name for p in killed.iterdir() if p.name.startswith("self_play_checkpoint")) == [
        "self_play_checkpoint-1"]
    assert (killed / "round_2").is_dir() and not (killed / "round_2" / "best").exists()  # round 2 was cut short

    # A checkpoint of other settings or another architecture is refused before any work, naming what differs.
    with pytest.raises(ValueError, match="`alpha`: 1.0 there, 2.0 now"):
        run(killed, resume_from_checkpoint=True, alpha=2.0)
    with pytest.raises(ValueError, match="`num_rounds`: 3 there, 4 now"):
        run(killed, resume_from_checkpoint=True, num_rounds=4)
    with pytest.raises(ValueError, match="self_play_state.json.*another `model` architecture"):
        run(killed, model=tiny_llama(hidden_size=32), resume_from_checkpoint=True)
    with pytest.raises(ValueError, match="holds no self_play_checkpoint"):
        run(tmp_path / "empty", resume_from_checkpoint=True)
    with pytest.raises(ValueError, match="has no self_play_state.json"):
        run(killed, resume_from_checkpoint=str(killed / "round_1"))

    replayed = []
    resumed = run(killed, resume_from_checkpoint=True, round_callback=lambda r, m: replayed.append(r.round))
    assert replayed == [2, 3]  # round 1 was restored, not re-run
    assert records(resumed, killed) == records(unbroken, tmp_path / "unbroken")
    expected, actual = unbroken.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    saved = [json.loads((root / "self_play.json").read_text()) for root in (tmp_path / "unbroken", killed)]
    assert [[{**r, "best_model_path": None} for r in s] for s in saved][0] == [
        {**r, "best_model_path": None} for r in saved[1]]
    assert [p.name for p in killed.iterdir() if p.name.startswith("self_play_checkpoint")] == ["self_play_checkpoint-3"]
    assert {p.name for p in (killed / "self_play_checkpoint-3").iterdir()} == {
        "model.safetensors", "self_play_state.json", "hfgen_checksums.json"}  # no pickle

    # Resuming a finished run re-runs nothing and returns the last round's best model.
    done = run(killed, resume_from_checkpoint=True, round_callback=lambda r, m: replayed.append(r.round))
    assert replayed == [2, 3] and records(done, killed) == records(unbroken, tmp_path / "unbroken")
    assert all(torch.equal(v, done.model.state_dict()[k]) for k, v in expected.items())


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[2]))
    run(sys.argv[1], callbacks=[KillAt(round_index=2, step=2)])
    sys.exit("the worker was not killed")
