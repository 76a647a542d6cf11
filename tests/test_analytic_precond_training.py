"""Analytic-Precond / CTM distillation: scheduler, pipeline, trainer, statistics I/O, config validation, demo smoke."""

import math

import pytest
import torch
from datasets import Dataset

import hfgen
from hfgen.demos.analytic_precond import GaussianMixtureDenoiser, ring_teacher, sliced_wasserstein
from hfgen.pipelines import ConsistencyTrajectoryPipeline, ConsistencyTrajectoryScheduler
from hfgen.pipelines.consistency_trajectory import TrajectoryMLP, outer_scalings
from hfgen.testing.tiny_models import tiny_unet2d
from hfgen.trainers import ConsistencyDistillationConfig, ConsistencyDistillationTrainer
from hfgen.trainers.consistency_distillation import load_teacher_statistics

GRID = torch.linspace(math.log(0.002), math.log(80.0), 40, dtype=torch.float64)


def analytic_scheduler(**kwargs):
    l_t = 0.25 / (0.25 + GRID.exp() ** 2)
    return ConsistencyTrajectoryScheduler(
        preconditioning="analytic", statistics_log_t=GRID.tolist(), statistics_l=l_t.tolist(), **kwargs
    )


def schedulers():
    return [
        ConsistencyTrajectoryScheduler(preconditioning="euler"),
        ConsistencyTrajectoryScheduler(preconditioning="variance"),
        analytic_scheduler(),
    ]


@pytest.mark.parametrize("index", range(3))
def test_scheduler_jump_to_s_equal_t_is_the_identity(index):
    sched = schedulers()[index]
    gen = torch.Generator().manual_seed(0)
    x, out = torch.randn(16, 2, generator=gen), torch.randn(16, 2, generator=gen)
    t = torch.exp(torch.empty(16, dtype=torch.float64).uniform_(math.log(0.002), math.log(80), generator=gen))
    assert torch.equal(sched.precondition_outputs(x, out, t, t), x)


def test_scheduler_grid_ends_at_sigma_min_and_gamma_zero_step_is_the_deterministic_jump():
    sched = ConsistencyTrajectoryScheduler()
    sched.set_timesteps(3)
    assert sched.timesteps[0].item() == pytest.approx(80.0) and sched.targets[-1].item() == pytest.approx(0.002)
    assert torch.allclose(sched.targets, sched.sigmas[1:])  # gamma = 0: jump straight to t_{i+1}
    x, out = torch.randn(4, 2), torch.randn(4, 2)
    step = sched.step(out, sched.timesteps[0], x)
    assert torch.equal(step.prev_sample, step.jump_sample)
    assert torch.allclose(step.jump_sample, sched.precondition_outputs(x, out, sched.timesteps[0], sched.targets[0]))


def test_gamma_one_renoises_from_the_clean_jump_to_t_next_with_fresh_noise():
    sched = ConsistencyTrajectoryScheduler(gamma=1.0)
    sched.set_timesteps(2)
    assert sched.targets[0].item() == pytest.approx(0.002)  # CM-style: jump to sigma_min, re-noise to t_1
    x, out = torch.zeros(20000, 1), torch.zeros(20000, 1)
    step = sched.step(out, sched.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    noise_std = (step.prev_sample - step.jump_sample).std().item()
    expected = math.sqrt(sched.sigmas[1].item() ** 2 - 0.002**2)
    assert noise_std == pytest.approx(expected, rel=0.03)


def test_scheduler_rejects_bad_input():
    with pytest.raises(ValueError, match="preconditioning"):
        ConsistencyTrajectoryScheduler(preconditioning="heun")
    with pytest.raises(ValueError, match="statistics"):
        ConsistencyTrajectoryScheduler(preconditioning="analytic")
    with pytest.raises(ValueError, match="s <= t"):
        ConsistencyTrajectoryScheduler().precondition_outputs(torch.zeros(1, 2), torch.zeros(1, 2), 1.0, 2.0)


class CountingMLP(TrajectoryMLP):
    calls = 0

    def forward(self, *args, **kwargs):
        type(self).calls += 1
        return super().forward(*args, **kwargs)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_pipeline_uses_one_network_call_per_step(steps):
    torch.manual_seed(0)
    pipe = ConsistencyTrajectoryPipeline(CountingMLP(dim=2, hidden_dim=16), analytic_scheduler(gamma=0.3))
    pipe.set_progress_bar_config(disable=True)
    CountingMLP.calls = 0
    out = pipe(batch_size=5, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
    assert CountingMLP.calls == steps and out.nfe == steps and out.samples.shape == (5, 2)


def test_pipeline_save_load_round_trip_reproduces_samples_and_statistics(tmp_path):
    torch.manual_seed(0)
    pipe = ConsistencyTrajectoryPipeline(TrajectoryMLP(dim=2, hidden_dim=16), analytic_scheduler(gamma=0.5))
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    before = pipe(batch_size=3, num_inference_steps=3, generator=gens).samples
    pipe.save_pretrained(tmp_path)
    loaded = ConsistencyTrajectoryPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    assert torch.equal(loaded(batch_size=3, num_inference_steps=3, generator=gens).samples, before)
    assert torch.equal(loaded.scheduler.tables.l, pipe.scheduler.tables.l)
    assert "Elucidating the Preconditioning" in (tmp_path / "README.md").read_text()
    with pytest.raises(ValueError, match="output_type"):
        pipe(output_type="pil")


def test_gaussian_mixture_teacher_is_the_exact_posterior_mean_for_one_component():
    teacher = GaussianMixtureDenoiser(torch.zeros(1, 2), 0.5)
    x = torch.randn(8, 2)
    assert torch.allclose(teacher(x, 2.0), 0.25 / (0.25 + 4.0) * x, atol=1e-6)


def make_trainer(tmp_path, preconditioning="analytic", **overrides):
    teacher = ring_teacher()
    data = teacher.sample(256, torch.Generator().manual_seed(0))
    dataset = Dataset.from_dict({"sample": data.tolist()}).with_format("torch")
    torch.manual_seed(0)
    args = ConsistencyDistillationConfig(
        output_dir=str(tmp_path),
        preconditioning=preconditioning,
        max_steps=3,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        statistics_grid_size=16,
        statistics_samples=64,
        **overrides,
    )
    return ConsistencyDistillationTrainer(
        TrajectoryMLP(dim=2, hidden_dim=16), args, teacher=teacher, train_dataset=dataset
    )


def test_trainer_loss_is_finite_student_changes_and_teacher_stays_bitwise_frozen(tmp_path):
    trainer = make_trainer(tmp_path)
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    student_before = [p.detach().clone() for p in trainer.model.parameters()]
    loss = trainer.compute_loss(trainer.model, {"sample": trainer.train_dataset[:32]["sample"]})
    assert torch.isfinite(loss)
    trainer.train()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(student_before, trainer.model.parameters()))
    assert all(torch.equal(v, trainer.teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert not any(p.requires_grad for p in trainer.teacher.parameters())


def test_analytic_statistics_are_estimated_saved_and_reloaded_equal(tmp_path):
    trainer = make_trainer(tmp_path)
    l_t = trainer.statistics.l
    assert l_t[0] > 0.9 and l_t[-1] < 0.1  # D ~ x at tiny noise, ~ E[x_0] (flat) at large noise
    trainer.save_model(str(tmp_path))
    reloaded = load_teacher_statistics(str(tmp_path / "teacher_statistics.safetensors"), trainer.teacher)
    assert torch.equal(reloaded.l, l_t) and torch.equal(reloaded.log_t, trainer.statistics.log_t)
    pipe = hfgen.load(tmp_path)
    assert isinstance(pipe, ConsistencyTrajectoryPipeline) and torch.equal(pipe.scheduler.tables.l, l_t)
    assert (tmp_path / "README.md").is_file()
    reused = make_trainer(tmp_path / "again", statistics_path=str(tmp_path / "teacher_statistics.safetensors"))
    assert torch.equal(reused.statistics.l, l_t)


def test_statistics_of_another_teacher_are_rejected(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.save_model(str(tmp_path))
    other = GaussianMixtureDenoiser(torch.zeros(1, 2), 0.3)
    with pytest.raises(ValueError, match="another teacher"):
        load_teacher_statistics(str(tmp_path / "teacher_statistics.safetensors"), other)


@pytest.mark.parametrize(
    "field, value",
    [
        ("preconditioning", "heun"),
        ("sigma_min", 0.0),
        ("sigma_data", -1.0),
        ("num_discretization_steps", 1),
        ("statistics_grid_size", 1),
        ("sampler_gamma", 2.0),
        ("remove_unused_columns", True),
    ],
)
def test_config_validation_names_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        ConsistencyDistillationConfig(output_dir=str(tmp_path), report_to=[], **{field: value})


def test_sliced_wasserstein_is_zero_for_equal_clouds_and_sees_a_shift():
    x = torch.randn(500, 2)
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x + torch.tensor([1.0, 0.0])) > 0.3


def test_demo_smoke(tmp_path):
    from hfgen.demos.analytic_precond import run

    result = run(tmp_path, steps=3, num_eval=64)
    assert math.isfinite(result.baseline_value) and math.isfinite(result.method_value)
    assert all(p.endswith(".png") for p in result.figures)


def _tiny_args(tmp_path):
    return ["--ring-steps", "2", "--ring-eval-every", "1", "--ring-num-eval", "32", "--digits-steps", "1",
            "--digits-eval-every", "1", "--digits-num-eval", "16", "--teacher-steps", "1", "--teacher-channels", "8",
            "16", "--batch-size", "8", "--statistics-grid-size", "4", "--statistics-samples", "8", "--bench-rounds", "1",
            "--bench-iterations", "1", "--seeds", "0", "--raw-dir", str(tmp_path / "raw"), "--fig-dir", str(tmp_path),
            "--workdir", str(tmp_path / "w")]


def _check_part_record(path, variants, figure):
    from hfgen.results import check_arms, read_record

    record = read_record(path)
    check_arms(record, variants, ["final_1step", "final_2step", "best_2step", "setup_seconds"])
    for arm in variants:  # every variant trained and was evaluated along the way (step 0 and the end at least)
        assert all(len(curve) >= 2 and curve[-1][0] > 0 for curve in record["metrics"][arm]["curve"])
    assert set(record["settings"]["cost"]["median_iteration_seconds"]) == {"euler", "analytic", "euler (A/A)"}
    assert list(record["figures"]) == [str(figure)]
    assert record["settings"]["claim"]["arm"] == "analytic" and record["settings"]["claim"]["baseline"] == "euler"
    return record


def test_toy_script_ring_smoke_records_every_variant(tmp_path, load_script):
    out = load_script("precond_toy").main(["--part", "ring", "--variants", "euler", "analytic", *_tiny_args(tmp_path)])
    runs, path = out["ring"]
    assert len(runs) == 2 and path == tmp_path / "raw" / "analytic_precond" / "ring.json"
    _check_part_record(path, ["euler", "analytic"], tmp_path / "analytic_precond_training.png")


@pytest.mark.slow
def test_toy_script_smoke_both_parts_record_every_variant(tmp_path, load_script):
    out = load_script("precond_toy").main(["--part", "all", *_tiny_args(tmp_path)])
    _check_part_record(out["ring"][1], ["euler", "variance", "analytic"], tmp_path / "analytic_precond_training.png")
    record = _check_part_record(out["digits"][1], ["euler", "variance", "analytic"],
                                tmp_path / "analytic_precond_digits.png")
    assert set(record["settings"]["teacher_fid_heun"]) == {"2 intervals", "18 intervals"}


def test_unet_student_trainer_starts_at_the_teacher_trains_and_saves_a_loadable_pipeline(tmp_path):
    from diffusers import EDMEulerScheduler

    from hfgen.demos.analytic_precond import EDMTeacher, digits_student, digits_unet, distillation_trainer

    teacher = EDMTeacher(digits_unet((8, 16), seed=0).eval().requires_grad_(False), EDMEulerScheduler())
    student = digits_student(teacher, seed=1)
    data = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    trainer = distillation_trainer(
        teacher, "analytic", tmp_path, steps=2, batch_size=8, lr=1e-3, student=student, data=data,
        statistics_grid_size=4, statistics_samples=8, disable_tqdm=True, logging_steps=1,
    )
    assert trainer.statistics.l.shape == (4,) and torch.isfinite(trainer.statistics.l).all()
    i, k = torch.triu_indices(len(trainer.grid), len(trainer.grid))  # the per-step (f, g) lookup table
    f_grid, g_grid = trainer.trajectory_scheduler.outer_scalings(trainer.grid[i], trainer.grid[k])
    assert torch.equal(trainer.grid_f[i, k], f_grid) and torch.equal(trainer.grid_g[i, k], g_grid)
    # CTM init: D_theta(x, t, s) = D_phi(x, t) for every s, so G = f x + g D_phi exactly at step 0.
    x, t, s = data[:4] + 2.0 * torch.randn(4, 1, 8, 8), torch.full((4,), 2.0, dtype=torch.float64), torch.tensor(
        [1.0, 0.5, 0.1, 0.002], dtype=torch.float64)
    f, g = (v.float().reshape(-1, 1, 1, 1) for v in outer_scalings(t, s, "analytic", tables=trainer.statistics))
    with torch.no_grad():
        assert torch.allclose(trainer.trajectory(trainer.model, x, t, s), f * x + g * teacher(x, t.float()), atol=1e-5)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    loss = trainer.compute_loss(trainer.model, {"sample": data[:8]})
    assert torch.isfinite(loss) and loss.requires_grad
    trainer.save_model(str(tmp_path))
    pipe = ConsistencyTrajectoryPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=3, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (3, 1, 8, 8) and torch.isfinite(out.samples).all()
    assert torch.equal(pipe.scheduler.tables.l, trainer.statistics.l)


def test_analytic_trainer_without_data_or_with_bad_long_jump_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="`long_jump`"):
        ConsistencyDistillationConfig(output_dir=str(tmp_path), report_to=[], long_jump="backward")
    with pytest.raises(ValueError, match="`long_jump_ratio`"):
        ConsistencyDistillationConfig(output_dir=str(tmp_path), report_to=[], long_jump_ratio=0.5)
    args = ConsistencyDistillationConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="train_dataset"):
        ConsistencyDistillationTrainer(TrajectoryMLP(dim=2, hidden_dim=8), args, teacher=ring_teacher())


def test_unet_student_gets_the_target_time_as_class_label_and_returns_images():
    unet = tiny_unet2d(0, in_channels=1, class_embed_type="timestep")
    pipe = ConsistencyTrajectoryPipeline(unet, ConsistencyTrajectoryScheduler())
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pil"
    ).samples
    assert len(images) == 2 and images[0].size == (8, 8)
