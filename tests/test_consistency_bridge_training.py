"""CDBM training: the CBT target identity, the time schedules, the trainers, the paired data loaders."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_consistency_bridge import tiny_unet

import hfgen
from hfgen.data.paired_digits import edge_map, load_paired_digits, load_paired_image_folder, paired_digits_dataset
from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline
from hfgen.testing.tiny_models import tiny_unet2d
from hfgen.trainers import BridgeConfig, BridgeTrainer, ConsistencyBridgeConfig, ConsistencyBridgeTrainer


def small_args(cls, tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, report_to=[],
                    save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, dataloader_num_workers=0)
    return cls(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def data():
    return paired_digits_dataset(size=8, split="test").select(range(16))


@pytest.mark.parametrize("noise_schedule", ["vp", "ve"])
def test_cbt_target_is_the_first_order_ode_step_with_the_oracle_x0(noise_schedule):
    # CDBM Eq. 20: replacing the teacher's x_0-prediction by the oracle x_0 in the first-order solver
    # (Eq. 16) gives x_r = a_r y + b_r x_0 + c_r z with the same noise z as x_t.
    scheduler = BridgeScheduler(noise_schedule=noise_schedule, t_min=2e-3 if noise_schedule == "ve" else 1e-4)
    gen = torch.Generator().manual_seed(0)
    x0, y, z = torch.randn(3, 5, 1, 4, 4, generator=gen, dtype=torch.float64)
    t = torch.rand(5, generator=gen, dtype=torch.float64) * 0.9 * scheduler.T + 0.05 * scheduler.T
    r = t * torch.rand(5, generator=gen, dtype=torch.float64)
    x_t = scheduler.add_noise(x0, z, t, y)
    torch.testing.assert_close(scheduler.first_order_step(x_t, x0, t, r, y), scheduler.add_noise(x0, z, r, y), rtol=1e-10, atol=1e-10)


def test_first_order_step_matches_the_dbim_eta0_sampler_step():
    scheduler = BridgeScheduler(solver="dbim", eta=0.0)
    scheduler.set_timesteps(3)
    gen = torch.Generator().manual_seed(0)
    x, y, x0 = torch.rand(3, 2, 1, 4, 4, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    T, s, t = scheduler.timesteps.tolist()
    x_s = scheduler.step(torch.zeros_like(x), T, y, y, generator=gen).prev_sample
    c_skip, c_out, _ = (v.item() for v in scheduler.scalings(s))
    stepped = scheduler.step((x0 - c_skip * x_s) / c_out, s, x_s, y).prev_sample
    torch.testing.assert_close(stepped, scheduler.first_order_step(x_s, x0, s, t, y), rtol=0, atol=1e-12)


def test_sigmoid_time_schedule_gap_is_positive_and_shrinks_by_q_per_stage(tmp_path, data):
    args = small_args(ConsistencyBridgeConfig, tmp_path, sigmoid_b=20.0, stage_steps=10)
    trainer = ConsistencyBridgeTrainer(tiny_unet(), args, train_dataset=data)
    torch.manual_seed(0)
    t, r, weight = trainer.sample_times(1000)
    assert torch.all(r < t) and torch.all(r >= args.t_min) and torch.all(t <= trainer.bridge_scheduler.T - args.gamma)
    torch.testing.assert_close(weight, 1 / (t - r))
    trainer.state.global_step = 10  # next stage
    torch.manual_seed(0)
    t2, r2, _ = trainer.sample_times(1000)
    unclamped = (r > args.t_min) & (r2 > args.t_min)
    torch.testing.assert_close((t2 - r2)[unclamped], (t - r)[unclamped] / args.sigmoid_q)


def test_bridge_trainer_saves_a_loadable_pipeline_with_card(tmp_path, data):
    trainer = BridgeTrainer(tiny_unet(), small_args(BridgeConfig, tmp_path, max_steps=3, learning_rate=1e-3), train_dataset=data)
    trainer.train()
    assert np.isfinite(trainer.state.log_history[-1]["train_loss"])
    trainer.save_model()
    out = tmp_path / "out"
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file() and not list(out.rglob("*.bin"))
    assert "hfgen-consistency-bridge" in (out / "README.md").read_text()
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["solver"] == "dbim"
    pipe = hfgen.load(out)
    assert isinstance(pipe, ConsistencyBridgePipeline)
    torch.testing.assert_close(pipe.unet.state_dict(), trainer.model.state_dict())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "training"},
        {"mode": "distillation", "time_schedule": "constant"},
        {"mode": "training", "target_network": "ema", "distance": "pseudo_huber"},
    ],
)
def test_consistency_bridge_trainer_modes_train_and_save(tmp_path, data, kwargs):
    teacher = tiny_unet(seed=1)
    student = tiny_unet(seed=1)
    args = small_args(ConsistencyBridgeConfig, tmp_path, learning_rate=1e-3, **kwargs)
    trainer = ConsistencyBridgeTrainer(student, args, teacher=teacher, train_dataset=data)
    before = [p.clone() for p in teacher.parameters()]
    trainer.train()
    assert np.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))  # the teacher is frozen
    if kwargs.get("target_network") == "ema":
        assert not all(torch.equal(a, b) for a, b in zip(trainer.target_model.parameters(), before))
    trainer.save_model()
    pipe = ConsistencyBridgePipeline.from_pretrained(tmp_path / "out")
    assert pipe.scheduler.config.solver == "consistency"


def test_consistency_loss_vanishes_when_r_is_t_min_and_the_student_is_exact(tmp_path, data):
    # With r = t_min the target is h(x_r, t_min) = x_r exactly; CBT's x_r at t_min is ~x_0, so the loss is
    # the student's error to x_r (no network in the target).
    args = small_args(ConsistencyBridgeConfig, tmp_path, time_schedule="constant", delta_t=10.0)
    trainer = ConsistencyBridgeTrainer(tiny_unet(), args, train_dataset=data)
    x0, y = data[:4]["target"], data[:4]["source"]
    z = torch.randn_like(x0)
    t = torch.full((4,), 0.5, dtype=torch.float64)
    r = torch.full((4,), args.t_min, dtype=torch.float64)
    x_r = trainer.target_input(x0, y, z, None, t, r)
    assert torch.equal(trainer.consistency_function(trainer.model, x_r, r, y), x_r)


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (BridgeConfig, {"noise_schedule": "cosine"}, "noise_schedule"),
        (BridgeConfig, {"t_min": 0.0}, "t_min"),
        (BridgeConfig, {"remove_unused_columns": True}, "remove_unused_columns"),
        (ConsistencyBridgeConfig, {"mode": "adversarial"}, "mode"),
        (ConsistencyBridgeConfig, {"time_schedule": "karras"}, "time_schedule"),
        (ConsistencyBridgeConfig, {"target_network": "teacher"}, "target_network"),
        (ConsistencyBridgeConfig, {"distance": "lpips"}, "distance"),
        (ConsistencyBridgeConfig, {"sigmoid_q": 1.0}, "sigmoid_q"),
    ],
)
def test_configs_reject_bad_values(tmp_path, cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_args(cls, tmp_path, **kwargs)


def test_trainers_reject_bad_models(tmp_path, data):
    unconditional = tiny_unet2d(in_channels=1)
    with pytest.raises(ValueError, match="in_channels"):
        BridgeTrainer(unconditional, small_args(BridgeConfig, tmp_path), train_dataset=data)
    with pytest.raises(ValueError, match="teacher"):
        ConsistencyBridgeTrainer(tiny_unet(), small_args(ConsistencyBridgeConfig, tmp_path, mode="distillation"), train_dataset=data)


# -------------------------------------------------------------------------------------------- data


def test_paired_digits_are_edges_of_the_digits():
    edges, digits = load_paired_digits(size=16, split="test")
    assert edges.shape == digits.shape == (len(digits), 1, 16, 16)
    assert edges.min() >= -1 and edges.max() <= 1 and torch.allclose(edges.amax(dim=(1, 2, 3)), torch.ones(len(edges)))
    flat = -torch.ones(1, 1, 8, 8)
    assert torch.equal(edge_map(flat), -torch.ones_like(flat))  # a constant image has no edges


@pytest.mark.parametrize("layout", ["aligned", "folders"])
def test_paired_image_folder_reads_both_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(2))
    if layout == "aligned":
        Image.fromarray(np.concatenate([a, b], axis=1)).save(tmp_path / "0.png")
    else:
        for name, array in (("A", a), ("B", b)):
            (tmp_path / name).mkdir()
            Image.fromarray(array).save(tmp_path / name / "0.png")
    row = load_paired_image_folder(tmp_path, layout=layout)[0]
    torch.testing.assert_close(row["source"], torch.from_numpy(a.transpose(2, 0, 1) / 127.5 - 1).float())
    torch.testing.assert_close(row["target"], torch.from_numpy(b.transpose(2, 0, 1) / 127.5 - 1).float())


# ------------------------------------------------------------------------------- registry and script


def test_registry_entry_resolves_every_component_and_renders_the_card():
    from hfgen.hub import render_model_card

    info = hfgen.get_method("consistency_bridge")
    assert info.paper.arxiv_id == "2410.22637"
    for name in info.components:
        assert info.load_component(name).__name__ == name
    card = str(render_model_card("consistency_bridge", model_name="cdbm-digits", solver="consistency"))
    assert "num_inference_steps=2" in card and "@inproceedings{he2024consistency" in card and "CDBM sampling" in card


def test_digits_script_runs_end_to_end_with_tiny_settings(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    metrics, path = load_script("bridge_digits").main(
        teacher_steps=2, student_steps=1, size=8, width=8, n_eval=8, seeds=(0, 1), out_dir=tmp_path / "run",
        figure=tmp_path / "f.png", heun_steps=(2,), dbim_steps=(2,), cdbm_steps=(1, 2), raw_dir=tmp_path / "raw")
    record = read_record(path)
    # a boot-only evaluation (1 NFE) is not CDBM's sampler: its arms are named apart (issue 19, gap 8)
    arms = ["DDBM teacher, Heun, 5 NFE", "DDBM teacher, DBIM (ODE-1), 2 NFE", "CDBM (CBD), 1 NFE, boot-only", "CDBM (CBD), 2 NFE",
            "CDBM (CBT), 1 NFE, boot-only", "CDBM (CBT), 2 NFE"]
    assert list(record["metrics"]) == arms and record["seeds"] == [0, 1]
    check_arms(record, arms, ["fd", "mse", "psnr", "nfe", "seconds"])
    assert record["metrics"]["DDBM teacher, Heun, 5 NFE"]["fd"][0] != record["metrics"]["DDBM teacher, Heun, 5 NFE"]["fd"][1]
    assert set(record["figures"]) == {str(tmp_path / "f.png"), str(tmp_path / "f_nfe.png")}
    assert record["settings"]["claim"]["margin"] == 0.5 and len(record["settings"]["train_seconds"]) == 2
    assert (tmp_path / "run" / "seed1" / "cbt" / "model_index.json").is_file()

    bench = load_script("bench_bridge").main(tmp_path / "run" / "seed0", batch=4, repeats=1, plan=(("dbim", 2),),
                                             raw_dir=tmp_path / "raw")
    record = read_record(bench["record"])
    check_arms(record, ["CDBM (CBD), consistency", "CDBM (CBT), consistency", "DDBM teacher, dbim"],
               ["seconds_per_image", "nfe", "fd", "mse"])
    assert record["metrics"]["DDBM teacher, dbim"]["nfe"] == [2] and record["settings"]["repeats"] == 1
