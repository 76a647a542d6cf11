"""Exact resume: a run killed with SIGKILL and resumed with ``resume_from_checkpoint`` ends bitwise equal to an
unbroken run, for every hfgen trainer, including the state beyond the model (ConsistencyBridge's EMA target,
DDO's reference model, the teacher statistics of analytic preconditioning).

``tests/_reliability_workers/resume_worker.py`` trains each tiny trainer 6 steps (16 examples, 4 a batch, so the
run crosses an epoch boundary) with a checkpoint every 2 steps, three times, each leg in a fresh Python process
started without ``PYTHONHASHSEED`` (so each has its own hash seed): unbroken; killed at the end of step 3
(checkpoint-2 on disk, step 3 lost); resumed from checkpoint-2 to step 6. NFT runs 8 steps (4 an epoch) and is
killed after step 7, so it resumes from checkpoint-6, inside the second epoch: before the fix every tensor differed
(27 of 27: TRL's ``RepeatSampler`` seeds its generator once, so a resumed process shuffled the second epoch
differently; measured by disabling ``make_epochs_resumable``).
Everything runs on CPU with one thread, where these trainers are deterministic, so equality is bitwise.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKERS = Path(__file__).parent / "_reliability_workers"
sys.path.insert(0, str(WORKERS))
from builders import TRAINERS  # noqa: E402  (every trainer of hfgen's manifests has a builder)

FAST = ["consistency_bridge"]  # the fixed EMA target; ~30 s
SLOW = [name for name in TRAINERS if name not in FAST]


def _kill_and_resume(root: Path, names: list[str]) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONHASHSEED", None)
    result = subprocess.run([sys.executable, str(WORKERS / "resume_worker.py"), str(root), *names], env=env,
                            capture_output=True, text=True, timeout=900 * len(names))  # 3 fresh processes per trainer
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return root


@pytest.fixture(scope="module")
def fast_runs(tmp_path_factory):
    return _kill_and_resume(tmp_path_factory.mktemp("resume-fast"), FAST)


@pytest.fixture(scope="module")
def slow_runs(tmp_path_factory):
    return _kill_and_resume(tmp_path_factory.mktemp("resume-slow"), SLOW)


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_killed_and_resumed_run_equals_the_unbroken_run_bitwise(request, name):
    root = request.getfixturevalue("fast_runs" if name in FAST else "slow_runs") / name
    kill = json.loads((root / "kill.json").read_text())
    steps, every, killed_at = (8, 2, 7) if name == "nft" else (6, 2, 3)
    assert kill["signal"] == 9 and kill["killed_at_step"] == killed_at and kill["max_steps"] == steps
    assert kill["checkpoints_at_kill"] == [f"checkpoint-{s}" for s in range(every, killed_at, every)]

    unbroken = load_file(root / "uninterrupted" / "final.safetensors")
    resumed = load_file(root / "killed" / "final.safetensors")
    initial = load_file(root / "uninterrupted" / "initial.safetensors")
    assert unbroken.keys() == resumed.keys()
    differ = [k for k in unbroken if not torch.equal(unbroken[k], resumed[k])]
    assert not differ, f"{len(differ)} of {len(unbroken)} tensors differ after resuming, e.g. {differ[:3]}"
    moved = [k for k in initial if not torch.equal(initial[k], unbroken[f"model.{k}"])]
    assert moved, "training did not change the model: the comparison would prove nothing"

    logs = [json.loads((root / run / "logs.json").read_text()) for run in ("uninterrupted", "killed")]
    assert sorted(logs[0], key=int) == [str(s) for s in range(1, steps + 1)]
    assert logs[0] == logs[1]  # every logged number of every step, the lost step 3 redone identically

    if name == "consistency_bridge":  # the EMA target is its own network, restored from the checkpoint
        target = {k[len("ema_target."):]: v for k, v in unbroken.items() if k.startswith("ema_target.")}
        assert target and any(not torch.equal(v, unbroken[f"model.{k}"]) for k, v in target.items())
    if name == "ddo":  # the reference stays the initial model
        reference = {k[len("ref_model."):]: v for k, v in unbroken.items() if k.startswith("ref_model.")}
        assert reference.keys() == initial.keys() and all(torch.equal(v, initial[k]) for k, v in reference.items())
    if name == "consistency_distillation":
        assert {"statistics.log_t", "statistics.l", "statistics.s"} <= unbroken.keys()


def test_resuming_without_the_ema_target_is_refused(fast_runs, tmp_path):
    """A checkpoint that lost its EMA target cannot resume exactly: a clear error, not a silent restart of it."""
    import shutil

    sys.path.insert(0, str(WORKERS))
    from builders import build

    checkpoint = tmp_path / "checkpoint-2"
    shutil.copytree(fast_runs / "consistency_bridge" / "killed" / "checkpoint-2", checkpoint)
    (checkpoint / "ema_target.safetensors").unlink()
    trainer = build("consistency_bridge", tmp_path, max_steps=4)
    with pytest.raises(ValueError, match="ema_target"):
        trainer.train(resume_from_checkpoint=str(checkpoint))


@pytest.fixture(scope="module")
def nft_rollout_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-rollout")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONHASHSEED", None)
    result = subprocess.run([sys.executable, str(WORKERS / "resume_worker.py"), "--every-checkpoint", str(root)],
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return root / "nft-rollout"


@pytest.mark.slow
def test_nft_resumes_exactly_from_every_checkpoint_inside_a_rollout(nft_rollout_runs):
    """NFT with ``steps_per_generation=3`` (one rollout serves 3 optimizer steps; refills on) and a checkpoint after
    every step: a fresh process resumed from each checkpoint (1, 2, 4, 5 inside a rollout; 3 at its end), and a run
    killed with SIGKILL after step 5 and resumed from checkpoint-4, end bitwise equal to the unbroken run, with the
    same logged numbers at every step after the checkpoint. Without the saved rollout state (TRL regenerates on
    resume, and its micro-step counter, which also seeds the refill draws, restarts at 0) all 27 tensors differ
    from every checkpoint."""
    root = nft_rollout_runs
    unbroken = load_file(root / "uninterrupted" / "final.safetensors")
    unbroken_logs = json.loads((root / "uninterrupted" / "logs.json").read_text())
    assert sorted(unbroken_logs, key=int) == [str(s) for s in range(1, 7)]
    refills = [unbroken_logs[str(s)].get("nft/refill_rounds", 0) for s in (1, 4)]
    assert any(refills), "no refill happened: the refill state would go untested"
    kill = json.loads((root / "kill.json").read_text())
    assert kill["signal"] == 9 and kill["checkpoints_at_kill"] == [f"checkpoint-{s}" for s in range(1, 5)]

    runs = {f"from-{c}": c for c in range(1, 6)} | {"killed": 4}
    for run, checkpoint in runs.items():
        rollout = json.loads((root / ("uninterrupted" if run != "killed" else "killed") / f"checkpoint-{checkpoint}"
                              / "nft_rollout_0.json").read_text())
        assert rollout["step"] == checkpoint and (rollout["buffered"] is not None) == (checkpoint % 3 != 0)
        resumed = load_file(root / run / "final.safetensors")
        differ = [k for k in unbroken if not torch.equal(unbroken[k], resumed[k])]
        assert not differ, f"{run}: {len(differ)} of {len(unbroken)} tensors differ, e.g. {differ[:3]}"
        logs = json.loads((root / run / "logs.json").read_text())
        assert logs == unbroken_logs, run  # the steps up to the checkpoint come from its trainer_state.json
