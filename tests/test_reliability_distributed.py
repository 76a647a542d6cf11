"""Multi-process training: ``torchrun --nproc_per_node 2`` (CPU, gloo) against one process with the same global
batch, for a TRL-based trainer (NFT) and a diffusion trainer (masked diffusion); and the accelerate configs
shipped in ``scripts/accelerate``, read by accelerate's own loader and launcher.

The workers are in ``tests/_reliability_workers``. Tolerances: the two ranks hold bitwise-equal parameters; the
one-process run differs only by float summation order (gradients all-reduced over two half batches), so its
parameters match to ``atol=1e-5, rtol=1e-4`` (measured: below 1e-6) and its logged numbers to ``rel=1e-5``.

Every other hfgen trainer (GFT, DDO with an EMA, bridge, consistency bridge with an EMA target, consistency
distillation, MF², sequential rec) runs under the same ``torchrun --nproc_per_node 2`` (one launch for all of
them) with checkpoints on, and is resumed from one under 2 processes. For these, equality with a single-process
run is *not* required (their noise draws depend on the number of processes); what is checked is that the ranks
stay bitwise equal, that checkpoints written by 2 ranks are complete and written by rank 0 alone, and that the
resumed run equals the unbroken one bitwise.
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

MATCHED = ("nft", "masked_diffusion")  # compared with one process with the same global batch
CONFIGS = Path(__file__).parents[1] / "scripts" / "accelerate"
TIMEOUT = 400


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "TOKENIZERS_PARALLELISM": "false"}


def _run_both(name, out, global_batch):
    """The 2-process job and the 1-process reference, side by side; returns their output folders."""
    worker = str(WORKERS / "dist_worker.py")
    args = ["--global-batch", str(global_batch), "--steps", "3"]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", worker, name,
           str(out / "two"), *args]
    one = [sys.executable, worker, name, str(out / "one"), *args]
    procs = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in (two, one)]
    for proc in procs:
        try:
            output, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, output[-4000:]
    return out / "two", out / "one"


@pytest.mark.slow  # two interpreters with torch + transformers (+ trl) each: ~40-60 s on 2 shared cores
@pytest.mark.parametrize("name,global_batch", list(zip(MATCHED, (16, 8))))
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, name, global_batch):
    two, one = _run_both(name, tmp_path, global_batch)
    info = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    single = json.loads((one / "rank0.json").read_text())
    for rank_info in info:
        assert rank_info["world_size"] == 2 and rank_info["backend"] == "gloo"
        assert rank_info["distributed_type"].endswith("MULTI_CPU")
        assert rank_info["per_device_train_batch_size"] == global_batch // 2
    assert single["world_size"] == 1 and single["per_device_train_batch_size"] == global_batch

    rank0, rank1 = load_file(two / "rank0.safetensors"), load_file(two / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "the ranks' parameters differ"

    reference, initial = load_file(one / "rank0.safetensors"), load_file(one / "rank0_initial.safetensors")
    moved = max((reference[k].double() - initial[k].double()).abs().max().item() for k in reference)
    assert moved > 1e-3  # training moved the parameters far beyond the tolerance below
    for key in reference:
        torch.testing.assert_close(rank0[key], reference[key], rtol=1e-4, atol=1e-5, msg=key)

    logs_two, logs_one = info[0]["logs"], single["logs"]
    assert logs_two.keys() == logs_one.keys() == {"1", "2", "3"}
    for step, logged in logs_one.items():
        assert logged.keys() == logs_two[step].keys()
        for key, value in logged.items():  # loss, grad norm and the method's metrics, averaged over processes
            assert logs_two[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)


# ---------------------------------------------------------------------------------- every other trainer

OTHERS = tuple(name for name in TRAINERS if name not in MATCHED)
EXTRA = {"ddo": ("ref_model.", "ema_model."), "consistency_bridge": ("ema_target.",),
         "consistency_distillation": ("statistics.",)}  # the state beyond the model that the ranks must share
MOVING = ("ema_model.", "ema_target.")  # EMAs follow the weights (a reference or teacher statistics stay fixed)
MAX_STEPS, SAVE_STEPS, RESUME_FROM = 4, 2, 2


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """One ``torchrun`` job that trains, checkpoints and resumes every trainer of ``OTHERS`` in turn."""
    out = tmp_path_factory.mktemp("two_process_runs")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKERS / "dist_checkpoint_worker.py"), str(out), *OTHERS, "--max-steps", str(MAX_STEPS),
           "--save-steps", str(SAVE_STEPS), "--resume-from", str(RESUME_FROM)]
    proc = subprocess.run(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return out


@pytest.mark.slow  # one torchrun job for the 7 trainers: ~40 s on 2 shared cores
@pytest.mark.parametrize("name", OTHERS)
def test_every_trainer_trains_checkpoints_and_resumes_under_two_processes(two_process_runs, name):
    from hfgen.hub import CHECKSUMS_NAME
    from hfgen.trainers.checkpointing import checkpoint_problem

    out = two_process_runs / name
    info = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank_info in info:
        assert rank_info["world_size"] == 2 and rank_info["backend"] == "gloo"
        assert rank_info["distributed_type"].endswith("MULTI_CPU")
        assert len(rank_info["batches"]) == MAX_STEPS
        # the resumed run skips the batches of the steps before its checkpoint and sees the same ones after
        assert rank_info["resumed_batches"] == rank_info["batches"][RESUME_FROM:]
    assert all(a != b for a, b in zip(info[0]["batches"], info[1]["batches"])), "the ranks trained on the same data"

    run = [load_file(out / f"rank{r}_run.safetensors") for r in (0, 1)]
    resumed = [load_file(out / f"rank{r}_resumed.safetensors") for r in (0, 1)]
    initial = load_file(out / "rank0_initial.safetensors")
    for prefix in EXTRA.get(name, ()):
        assert any(k.startswith(prefix) for k in initial), f"no {prefix}* state"
    for tensors in (run[1], *resumed):
        assert tensors.keys() == run[0].keys()
        assert all(torch.equal(tensors[k], run[0][k]) for k in run[0]), "the ranks (or the resumed run) differ"
    for prefix in ("model.", *(p for p in EXTRA.get(name, ()) if p in MOVING)):
        moved = max((run[0][k].double() - initial[k].double()).abs().max().item() for k in run[0]
                    if k.startswith(prefix))
        assert moved > 1e-4, f"{prefix}* did not train"
    assert info[0]["resumed_logs"] == info[0]["logs"]  # steps 1-2 from the checkpoint, 3-4 recomputed: bitwise

    checkpoints = [f"run/checkpoint-{s}" for s in range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS)]
    checkpoints.append(f"resumed/checkpoint-{MAX_STEPS}")
    for checkpoint in checkpoints:
        folder = out / checkpoint
        assert checkpoint_problem(folder) is None, checkpoint
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in folder.iterdir()}, checkpoint
        assert json.loads((folder / CHECKSUMS_NAME).read_text())["files"], f"{checkpoint} holds no weights"
    assert info[0]["atomic_saves"] == checkpoints and info[1]["atomic_saves"] == [], "only rank 0 writes weights"


# ---------------------------------------------------------------------------------- accelerate configs

EXPECTED = {
    "multi_gpu.yaml": ("MULTI_GPU", {}),
    "fsdp.yaml": ("FSDP", {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
                           "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP"}),
    "deepspeed_zero2.yaml": ("DEEPSPEED", {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}),
    "deepspeed_zero3.yaml": ("DEEPSPEED", {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                                           "ACCELERATE_DEEPSPEED_ZERO3_INIT": "true",
                                           "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true"}),
}


def test_every_shipped_accelerate_config_is_checked():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_accelerate_config_loads_and_launches_as_intended(filename):
    """accelerate's own ``ClusterConfig`` loader (unknown keys refused) and the environment that ``accelerate launch
    --config_file`` would give the processes (computed, not launched: these need GPUs)."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = CONFIGS / filename
    distributed_type, expected_env = EXPECTED[filename]
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type.value == distributed_type
    assert config.compute_environment.value == "LOCAL_MACHINE" and config.use_cpu is False
    assert config.num_machines == 1 and config.num_processes >= 2 and config.mixed_precision == "bf16"

    args, defaults, mixed_precision_from_config = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(path), "train.py"]))
    assert args.num_processes == config.num_processes and args.mixed_precision == "bf16"
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (
        distributed_type == "MULTI_GPU", distributed_type == "FSDP", distributed_type == "DEEPSPEED")
    if args.use_deepspeed:  # as accelerate.commands.launch.launch_command does before deepspeed_launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mixed_precision_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert {k: env.get(k) for k in expected_env} == expected_env
    if distributed_type == "DEEPSPEED":
        assert env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "none"
