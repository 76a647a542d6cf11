"""Analytic-Precond / CTM distillation: scheduler, pipeline, trainer, statistics I/O, config validation, demo smoke."""

import json
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
    config = dict(
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
    )
    args = ConsistencyDistillationConfig(**{**config, **overrides})
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
        ("heun_steps_max", 0),
        ("heun_steps_max", 19),
        ("heun_step_strategy", "random"),
        ("target_ema_decay", 1.0),
        ("dsm_weight", -1.0),
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


def test_toy_script_ctm_host_ring_smoke_writes_its_own_record_with_the_host_settings(tmp_path, load_script):
    out = load_script("precond_toy").main(["--part", "ring", "--host", "ctm", "--variants", "euler", "analytic",
                                           "--target-ema-decay", "0.9", *_tiny_args(tmp_path)])
    runs, path = out["ring"]
    assert path == tmp_path / "raw" / "analytic_precond" / "ring_ctm.json"
    record = _check_part_record(path, ["euler", "analytic"], tmp_path / "analytic_precond_ring_ctm.png")
    assert record["settings"]["host"] == "ctm"
    assert record["settings"]["host_config"] == {"heun_steps_max": 18, "heun_step_strategy": "weighted",
                                                 "map_to_sigma_min": True, "target_ema_decay": 0.9, "dsm_weight": 1.0}
    trainer = runs[("analytic", 0)][1]
    assert trainer.args.map_to_sigma_min and trainer.target_model is not None


def test_toy_script_coefficients_reproduce_euler_and_the_gaussian_exact_flow(tmp_path, load_script):
    path = load_script("precond_toy").main(["--part", "coefficients", *_tiny_args(tmp_path)])["coefficients"]
    record = json.loads(path.read_text())
    euler = record["metrics"]["euler"]
    assert euler["f_one_step"] == [pytest.approx(0.002 / 80)] and euler["g_one_step"] == [pytest.approx(1 - 0.002 / 80)]
    assert record["metrics"]["analytic-eulerjump"]["g_one_step"] == euler["g_one_step"]
    check = record["settings"]["gaussian_exact_flow_check"]
    assert check["f + g l_t"] == pytest.approx(check["sqrt((sd^2 + s^2) / (sd^2 + t^2))"], rel=1e-6)
    assert list(record["figures"]) == [str(tmp_path / "analytic_precond_coefficients.png")]


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


# ------------------------------------------------------------------- CTM's host training (sony/ctm ctm_losses)


def test_ctm_host_teacher_solve_is_repeated_heun_steps_along_the_grid(tmp_path):
    trainer = make_trainer(tmp_path, preconditioning="euler", heun_steps_max=5)
    x, i = torch.randn(6, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 10])
    expected = x
    for j in range(3):
        expected = trainer.teacher_step(expected, trainer.grid[i + j], trainer.grid[i + j + 1])
    assert torch.equal(trainer.teacher_solve(x, i, 3), expected)


@pytest.mark.parametrize("h", [1, 4, 18])
def test_ctm_host_indices_keep_t_before_u_before_or_at_s_and_reach_every_allowed_pair(tmp_path, h):
    trainer = make_trainer(tmp_path, preconditioning="euler", heun_steps_max=18)
    torch.manual_seed(0)
    i, k = trainer.sample_indices(20000, h)
    n = len(trainer.grid) - 1
    assert int(i.min()) == 0 and int(i.max()) == n - h  # t = t_i, u = t_{i+h} on the grid
    assert bool((k >= i + h).all()) and int(k.max()) == n  # s at or after u, up to sigma_min
    assert bool((k == i + h).any())  # s = u: G(x_u, u, u) = x_u anchors the student to the teacher


def test_ctm_host_weighted_heun_steps_follow_p_proportional_to_h(tmp_path):
    trainer = make_trainer(tmp_path, preconditioning="euler", heun_steps_max=6)
    torch.manual_seed(0)
    draws = torch.tensor([trainer.sample_heun_steps() for _ in range(21000)])
    expected = torch.arange(1, 7, dtype=torch.float64) / 21 * len(draws)
    observed = torch.bincount(draws, minlength=7)[1:].double()
    chi2 = (((observed - expected) ** 2) / expected).sum().item()
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001
    uniform = make_trainer(tmp_path / "u", preconditioning="euler", heun_steps_max=6, heun_step_strategy="uniform")
    assert {uniform.sample_heun_steps() for _ in range(300)} == set(range(1, 7))


def test_ctm_host_sigma_min_map_passes_gradients_through_its_input_only(tmp_path):
    trainer = make_trainer(tmp_path, preconditioning="analytic", map_to_sigma_min=True, target_ema_decay=0.5)
    x = torch.randn(8, 2)
    end = torch.full((8,), trainer.grid[-1].item(), dtype=torch.float64)
    assert torch.equal(trainer.trajectory(trainer.target_model, x, end, end), x)  # G(x, sigma_min, sigma_min) = x
    calls, trajectory = [], trainer.trajectory

    def spy(network, x_t, t, s, scalings=None):
        calls.append((network, bool((s == trainer.grid[-1]).all()), x_t.requires_grad))
        return trajectory(network, x_t, t, s, scalings)

    trainer.trajectory = spy
    loss = trainer.compute_loss(trainer.model, {"sample": trainer.train_dataset[:32]["sample"]})
    loss.backward()
    assert all(p.grad is not None for p in trainer.model.parameters())
    assert all(p.grad is None and not p.requires_grad for p in trainer.target_model.parameters())
    to_sigma_min = [(network, grad) for network, at_end, grad in calls if at_end]
    assert [network is trainer.target_model for network, _ in to_sigma_min] == [True, True]
    assert [grad for _, grad in to_sigma_min] == [True, False]  # the student's side keeps its graph


def test_ctm_host_target_network_is_an_ema_of_the_student(tmp_path):
    trainer = make_trainer(tmp_path, preconditioning="euler", map_to_sigma_min=True, target_ema_decay=0.5,
                           max_steps=1)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    for start, online, target in zip(before, trainer.model.parameters(), trainer.target_model.parameters()):
        torch.testing.assert_close(target, 0.5 * start + 0.5 * online.detach())
    assert "ctm_target" in trainer.checkpointed_modules()


def test_ctm_host_dsm_term_adds_the_weighted_denoising_loss(tmp_path):
    inputs = lambda trainer: {"sample": trainer.train_dataset[:32]["sample"]}  # noqa: E731
    plain = make_trainer(tmp_path / "a", preconditioning="euler", heun_steps_max=4)
    dsm = make_trainer(tmp_path / "b", preconditioning="euler", heun_steps_max=4, dsm_weight=0.25)
    dsm.model.load_state_dict(plain.model.state_dict())
    torch.manual_seed(3)
    consistency = plain.compute_loss(plain.model, inputs(plain))
    torch.manual_seed(3)
    both = dsm.compute_loss(dsm.model, inputs(dsm))
    denoising = dsm.denoising_loss(dsm.model, inputs(dsm)["sample"])  # RNG continues exactly where `both` left it
    torch.manual_seed(3)
    plain.compute_loss(plain.model, inputs(plain))
    torch.testing.assert_close(both, consistency + 0.25 * plain.denoising_loss(plain.model, inputs(plain)["sample"]))
    assert torch.isfinite(denoising) and denoising > 0
    x0 = inputs(dsm)["sample"]  # CTM's get_DSM_loss written out: Karras weight on D_theta(x_sigma, sigma, sigma)
    torch.manual_seed(5)
    sigma = dsm.dsm_sigmas(len(x0))
    x_sigma = x0 + sigma.float()[:, None] * torch.randn_like(x0)
    sched, sd = dsm.trajectory_scheduler, 0.5
    output = dsm.model(sched.scale_model_input(x_sigma, sigma), sched.c_noise(sigma), sched.c_noise(sigma))
    output = output.sample if hasattr(output, "sample") else output
    denoised = (sd**2 / (sigma**2 + sd**2)).float()[:, None] * x_sigma + (sigma * sd / (sigma**2 + sd**2).sqrt()).float()[:, None] * output
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    torch.manual_seed(5)
    torch.testing.assert_close(dsm.denoising_loss(dsm.model, x0), (weight.float()[:, None] * (denoised - x0) ** 2).mean())
    torch.manual_seed(0)
    sigma = dsm.dsm_sigmas(10000)
    karras_07 = (80.0 ** (1 / 7) + 0.7 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert bool((sigma[5000:] >= karras_07 - 1e-12).all()) and bool((sigma[5000:] <= 80.0).all())
    assert abs(sigma[:5000].log().mean().item() + 1.2) < 0.05 and abs(sigma[:5000].log().std().item() - 1.2) < 0.05


def test_ctm_host_target_network_is_checkpointed_and_resume_is_exact(tmp_path):
    host = dict(preconditioning="euler", heun_steps_max=6, map_to_sigma_min=True, target_ema_decay=0.5,
                dsm_weight=0.5, max_steps=4, save_strategy="steps", save_steps=2, dataloader_num_workers=0)
    unbroken = make_trainer(tmp_path / "a", **host)
    unbroken.train()
    resumed = make_trainer(tmp_path / "b", **host)
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    for module in ("model", "target_model"):
        for (name, a), b in zip(getattr(unbroken, module).state_dict().items(),
                                getattr(resumed, module).state_dict().values()):
            assert torch.equal(a, b), (module, name)
    assert any(not torch.equal(a, b) for a, b in zip(unbroken.model.state_dict().values(),
                                                     unbroken.target_model.state_dict().values()))
