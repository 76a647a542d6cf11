"""Exact facts of diffusion bridges (DDBM), their samplers (DDBM Heun, DBIM) and CDBM's consistency function."""

import math

import numpy as np
import pytest
import torch

from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline
from hfgen.pipelines.consistency_bridge.bridges import VEBridgeSchedule, VPBridgeSchedule, make_bridge_schedule
from hfgen.testing.tiny_models import tiny_unet2d

SCHEDULES = [VPBridgeSchedule(), VEBridgeSchedule()]


def tiny_unet(channels=1, size=8, seed=0):
    return tiny_unet2d(seed, sample_size=size, in_channels=2 * channels, out_channels=channels)


def oracle_output(scheduler, x, t, denoised, consistency=False):
    """The network output F that makes c_skip x + c_out F equal ``denoised`` (t > 0 or t > t_min)."""
    c_skip, c_out, _ = (v.item() for v in scheduler.scalings(t, consistency))
    return ((denoised.double() - c_skip * x.double()) / c_out).to(x.dtype)


def gaussian_posterior(schedule, t, y, mu, s):
    """x_0 | y ~ N(mu, s^2): m_t, v_t of x_t | y and the exact denoiser E[x_0 | x_t, y]."""
    a, b, c = (v.item() for v in schedule.abc(t))
    m, v = a * y + b * mu, b**2 * s**2 + c**2
    return m, v, (lambda x: mu + b * s**2 / v * (x - m))


def exact_flow(schedule, x, t, r, y, mu, s):
    """Exact PF-ODE flow t -> r for Gaussian data: x_r = m_r + sqrt(v_r / v_t) (x_t - m_t)."""
    m_t, v_t, _ = gaussian_posterior(schedule, t, y, mu, s)
    m_r, v_r, _ = gaussian_posterior(schedule, r, y, mu, s)
    return m_r + math.sqrt(v_r / v_t) * (x - m_t)


def rk4_flow(schedule, x, t, r, y, mu, s, n=400):
    """Fine RK4 on the DDBM PF-ODE drift with the exact denoiser (independent of the solvers).

    Steps are uniform in theta with t = T sin^2(theta), which resolves the sqrt-singularities of the
    bridge at both ends (c_t^2 ~ t near 0 and ~ T - t near T).
    """
    T = schedule.T
    theta_t, theta_r = math.asin(math.sqrt(t / T)), math.asin(math.sqrt(r / T))
    h = (theta_r - theta_t) / n

    def drift(x, theta):
        t = T * math.sin(theta) ** 2
        dx_dt = schedule.pf_ode_drift(x, t, gaussian_posterior(schedule, t, y, mu, s)[2](x), y)[0]
        return dx_dt * 2 * T * math.sin(theta) * math.cos(theta)

    for i in range(n):
        th = theta_t + i * h
        k1 = drift(x, th)
        k2 = drift(x + h / 2 * k1, th + h / 2)
        k3 = drift(x + h / 2 * k2, th + h / 2)
        k4 = drift(x + h * k3, th + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


# ------------------------------------------------------------------------------------------ bridges


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["vp", "ve"])
def test_bridge_marginal_is_x0_at_t0_and_y_at_T(schedule):
    a, b, c = (v.item() for v in schedule.abc(0.0))
    assert (a, b, c) == (0.0, 1.0, 0.0)
    a, b, c = (v.item() for v in schedule.abc(schedule.T))
    assert (a, c) == (1.0, 0.0) and abs(b) < 1e-12
    x0, y, z = torch.randn(3, 4, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(schedule.bridge_sample(x0, y, 0.0, z), x0, rtol=0, atol=0)
    torch.testing.assert_close(schedule.bridge_sample(x0, y, schedule.T, z), y, rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["vp", "ve"])
def test_bridge_coefficients_equal_gaussian_conditioning_of_the_reference_sde(schedule):
    # x_t | x_0 ~ N(alpha_t x_0, alpha_t^2 rho_t^2) and x_T = (alpha_T / alpha_t) x_t + indep. noise, so
    # conditioning on x_T = y is plain Gaussian conditioning: mean alpha_t x0 + k (y - alpha_T x0), k = Cov/Var.
    for t in np.linspace(0.05, 0.95, 7) * schedule.T:
        alpha_t, _, rho_t, _ = (v.item() for v in schedule.alpha_rho(t))
        alpha_T, _, rho_T, _ = (v.item() for v in schedule.alpha_rho(schedule.T))
        cov, var_T = alpha_t * alpha_T * rho_t**2, alpha_T**2 * rho_T**2
        k = cov / var_T
        a, b, c = (v.item() for v in schedule.abc(t))
        assert a == pytest.approx(k, rel=1e-12)
        assert b == pytest.approx(alpha_t - k * alpha_T, rel=1e-10)
        assert c**2 == pytest.approx(alpha_t**2 * rho_t**2 - cov**2 / var_T, rel=1e-10)


def test_ve_bridge_variance_peaks_at_T_over_sqrt2():
    schedule = VEBridgeSchedule(T=80.0)
    t = torch.linspace(1, 79, 7801, dtype=torch.float64)
    assert t[schedule.abc(t)[2].argmax()].item() == pytest.approx(80 / math.sqrt(2), abs=0.02)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["vp", "ve"])
def test_doob_h_transform_sde_has_the_bridge_marginals(schedule):
    # Simulate the forward bridge SDE dx = [f x + g^2 h] dt + g dw (h = grad log p(x_T=y | x_t)) with
    # Euler-Maruyama from x_0; its marginal must be N(a_t y + b_t x_0, c_t^2) and it must hit y at T.
    gen = torch.Generator().manual_seed(0)
    x0, y, n, paths = 0.7, -0.4, 1000, 20000
    dt = schedule.T / n
    x = torch.full((paths,), x0, dtype=torch.float64)
    checkpoints = {n // 4: None, n // 2: None, 3 * n // 4: None}
    for i in range(n):
        t = i * dt
        f, g2 = (v.item() for v in schedule.f_g2(t))
        alpha, alpha_bar, _, rho_bar = (v.item() for v in schedule.alpha_rho(t))
        h = -(x - alpha_bar * y) / (alpha**2 * rho_bar**2)
        x = x + (f * x + g2 * h) * dt + math.sqrt(g2 * dt) * torch.randn(paths, generator=gen, dtype=torch.float64)
        if i + 1 in checkpoints:
            a, b, c = (v.item() for v in schedule.abc((i + 1) * dt))
            assert x.mean().item() == pytest.approx(a * y + b * x0, abs=4 * c / math.sqrt(paths) + 2e-3 * schedule.T)
            assert x.std().item() == pytest.approx(c, rel=0.03)
    assert x.mean().item() == pytest.approx(y, abs=0.02 * max(1, schedule.T / 40))


@pytest.mark.parametrize("cov_xy", [0.0, 0.125])
def test_ddbm_preconditioning_is_the_linear_mmse_estimator(cov_xy):
    schedule, sigma = VPBridgeSchedule(), 0.5
    c_skip, c_out, _ = (v.item() for v in schedule.ddbm_scalings(0.0, sigma, cov_xy))
    assert (c_skip, c_out) == (1.0, 0.0)  # D(x, 0) = x: the boundary condition is built in
    gen = torch.Generator().manual_seed(0)
    cov = torch.tensor([[sigma**2, cov_xy], [cov_xy, sigma**2]], dtype=torch.float64)
    x0, y = (torch.linalg.cholesky(cov) @ torch.randn(2, 400_000, generator=gen, dtype=torch.float64))
    for t in (0.1, 0.5, 0.9, 1.0):
        c_skip, c_out, c_in = (v.item() for v in schedule.ddbm_scalings(t, sigma, cov_xy))
        x_t = schedule.bridge_sample(x0, y, t, torch.randn(x0.shape, generator=gen, dtype=torch.float64))
        assert (c_in * x_t).var().item() == pytest.approx(1.0, rel=0.01)
        assert c_skip == pytest.approx((torch.cov(torch.stack([x0, x_t]))[0, 1] / x_t.var()).item(), abs=0.01)
        assert c_out == pytest.approx((x0 - c_skip * x_t).std().item(), rel=0.01)
    assert schedule.ddbm_scalings(1.0, sigma, cov_xy)[0].item() == pytest.approx(cov_xy / sigma**2, abs=1e-12)


# ---------------------------------------------------------------------------------------- samplers


def test_pf_ode_drift_integrates_to_the_exact_gaussian_flow():
    schedule = VPBridgeSchedule()
    y, mu, s, x = torch.tensor(0.3, dtype=torch.float64), -0.2, 0.4, torch.tensor(0.9, dtype=torch.float64)
    x = gaussian_posterior(schedule, 0.95, y, mu, s)[0] + 0.8 * x  # a typical x_t
    expected = exact_flow(schedule, x, 0.95, 0.05, y, mu, s)
    assert rk4_flow(schedule, x, 0.95, 0.05, y, mu, s).item() == pytest.approx(expected.item(), abs=1e-9)


@pytest.mark.parametrize("noise_schedule", ["vp", "ve"])
def test_first_order_solver_is_exact_in_one_step_for_point_mass_data(noise_schedule):
    # x_0 | y = mu (a point mass): the denoiser is mu everywhere, and one DBIM eta=0 step (CDBM Eq. 16)
    # lands exactly on the PF-ODE solution (checked against a fine RK4 integration with s -> 0).
    ve = noise_schedule == "ve"
    scheduler = BridgeScheduler(noise_schedule=noise_schedule, solver="dbim", t_min=2e-3 if ve else 1e-4, gamma=0.08 if ve else 1e-3)
    schedule, T = scheduler.schedule, scheduler.T
    gen = torch.Generator().manual_seed(0)
    y, mu = torch.rand(2, 1, 1, 4, 4, generator=gen, dtype=torch.float64) * 1.8 - 0.9  # inside the clip range
    scheduler.set_timesteps(2)
    t_boot, t0 = scheduler.timesteps.tolist()
    x = scheduler.step(oracle_output(scheduler, y, t_boot, mu), t_boot, y, y, generator=gen).prev_sample
    x_end = scheduler.step(oracle_output(scheduler, x, t0, mu), t0, x, y).prev_sample
    t_end = scheduler.config.t_min
    reference = rk4_flow(schedule, x, t0, t_end, y, mu, 1e-9, n=800 if ve else 400)
    torch.testing.assert_close(x_end, reference, rtol=0, atol=1e-6 * T)
    a, b, c = (v.item() for v in schedule.abc(t_end))
    assert (x_end - mu).abs().max().item() < 5 * c + a * y.abs().max().item() + 1e-9


def test_first_order_solver_converges_at_first_order_to_the_exact_gaussian_flow():
    scheduler = BridgeScheduler(solver="dbim")
    schedule = scheduler.schedule
    y, mu, s = torch.tensor([0.5], dtype=torch.float64), -0.3, 0.4
    errors = []
    for n in (4, 8, 16, 32):
        scheduler.set_timesteps(n + 1)
        times = scheduler.timesteps.tolist()
        # booting step: E[x_0 | x_T = y] = mu, then x_{T - gamma} ~ q(. | mu, y) with a fixed noise draw
        x = scheduler.step(oracle_output(scheduler, y, times[0], torch.full_like(y, mu)), times[0], y, y,
                           generator=torch.Generator().manual_seed(0)).prev_sample
        x_start = x
        for t in times[1:]:
            denoised = gaussian_posterior(schedule, t, y, mu, s)[2](x)
            x = scheduler.step(oracle_output(scheduler, x, t, denoised), t, x, y).prev_sample
        errors.append((x - exact_flow(schedule, x_start, times[1], scheduler.config.t_min, y, mu, s)).abs().item())
    ratios = [e1 / e2 for e1, e2 in zip(errors, errors[1:])]
    assert all(1.6 < r < 2.4 for r in ratios), (errors, ratios)  # error ~ 1/N


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_dbim_step_maps_bridge_marginal_to_bridge_marginal(eta):
    # The booting step with the oracle x_0 draws x_s ~ q(x_s | x_0, y); one DBIM step then gives
    # x_t ~ q(x_t | x_0, y) for every eta (DBIM's non-Markovian bridge keeps the marginals).
    scheduler = BridgeScheduler(solver="dbim", eta=eta)
    schedule, gen = scheduler.schedule, torch.Generator().manual_seed(1)
    scheduler.set_timesteps(4)
    (T, s, t), n = scheduler.timesteps[:3].tolist(), 200_000
    x0, y = torch.full((n,), 0.4, dtype=torch.float64), torch.full((n,), -0.6, dtype=torch.float64)
    x_s = scheduler.step(oracle_output(scheduler, y, T, x0), T, y, y, generator=gen).prev_sample
    x_t = scheduler.step(oracle_output(scheduler, x_s, s, x0), s, x_s, y, generator=gen).prev_sample
    for x, time in ((x_s, s), (x_t, t)):
        a, b, c = (v.item() for v in schedule.abc(time))
        assert x.mean().item() == pytest.approx(a * -0.6 + b * 0.4, abs=4 * c / math.sqrt(n))
        assert x.std().item() == pytest.approx(c, rel=5e-3)


def test_ddbm_heun_sampler_reaches_point_mass_data():
    scheduler = BridgeScheduler(solver="heun")
    gen = torch.Generator().manual_seed(0)
    y, mu = torch.rand(2, 3, 1, 4, 4, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    scheduler.set_timesteps(6)
    assert scheduler.nfe == 3 * 6 - 1
    x = y
    for t in scheduler.timesteps:
        x = scheduler.step(oracle_output(scheduler, x, t.item(), mu), t, x, y, generator=gen).prev_sample
    assert (x - mu).abs().max().item() < 1e-2


# ------------------------------------------------------------------------------- consistency function


def test_consistency_function_is_the_identity_at_t_min_for_any_network():
    scheduler, unet = BridgeScheduler(solver="consistency"), tiny_unet()
    x, y = torch.randn(2, 3, 1, 8, 8)
    t_min = scheduler.config.t_min
    out = unet(torch.cat([scheduler.scale_model_input(x, t_min), y], 1), scheduler.c_noise(t_min).expand(3)).sample
    assert torch.equal(scheduler.precondition_outputs(x, out, t_min), x)
    # the DDBM denoiser (no time shift) is not the identity there, and h is finite at T - gamma and T
    assert not torch.equal(scheduler.precondition_outputs(x, out, 10 * t_min, consistency=False), x)
    for t in (scheduler.T - scheduler.config.gamma, scheduler.T):
        assert torch.isfinite(scheduler.precondition_outputs(x, out, t)).all()


def test_exact_consistency_function_is_self_consistent_along_the_flow():
    # h*(x_t, t) = Phi(x_t, t -> t_min); CDBM learns h_theta(x_t, t) = h_theta(Phi(x_t, t -> r), r).
    schedule, eps = VPBridgeSchedule(), 1e-4
    y, mu, s = torch.tensor(0.2, dtype=torch.float64), 0.5, 0.3
    x_t = torch.tensor(-0.7, dtype=torch.float64)
    h = lambda x, t: exact_flow(schedule, x, t, eps, y, mu, s)  # noqa: E731
    for t, r in ((0.99, 0.5), (0.5, 0.01)):
        assert h(x_t, t).item() == pytest.approx(h(rk4_flow(schedule, x_t, t, r, y, mu, s, n=150), r).item(), abs=1e-8)


# ---------------------------------------------------------------------------------------- scheduler


@pytest.mark.parametrize("solver", ["heun", "dbim", "consistency"])
def test_set_timesteps_plans_decreasing_times_inside_the_bridge(solver):
    scheduler = BridgeScheduler(solver=solver)
    for n in (1, 2, 4, 10):
        scheduler.set_timesteps(n)
        t = scheduler.timesteps
        assert scheduler.nfe == (3 * n - 1 if solver == "heun" else n)
        assert t[0].item() <= scheduler.T and t.min().item() > 0
        if solver == "heun":
            assert t[0].item() == pytest.approx(scheduler.T - 1e-4)
        else:  # booting evaluation at T, then strictly decreasing times in [t_min, T - gamma]
            assert t[0].item() == scheduler.T and torch.all(t[1:-1] > t[2:])
            assert torch.all(t[1:] <= scheduler.T - scheduler.config.gamma + 1e-12)


def test_scheduler_config_round_trip(tmp_path):
    scheduler = BridgeScheduler(noise_schedule="ve", sigma_max=40.0, t_min=2e-3, solver="consistency", eta=0.3)
    scheduler.save_pretrained(tmp_path)
    loaded = BridgeScheduler.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(scheduler.config) and loaded.T == 40.0


@pytest.mark.parametrize("kwargs", [{"solver": "euler"}, {"noise_schedule": "cosine"}, {"eta": -0.1}, {"gamma": 1.0}])
def test_scheduler_rejects_bad_config(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BridgeScheduler(**kwargs)


def test_make_bridge_schedule_rejects_unknown_name():
    with pytest.raises(ValueError, match="noise_schedule"):
        make_bridge_schedule("i2sb")


# ----------------------------------------------------------------------------------------- pipeline


@pytest.fixture
def pipe():
    pipe = ConsistencyBridgePipeline(tiny_unet(), BridgeScheduler(solver="consistency"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def source_images(n=3):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_pipeline_save_load_round_trip_is_bitwise(tmp_path, pipe):
    before = pipe(source_images(), num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt").images
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ConsistencyBridgePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    after = loaded(source_images(), num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert torch.equal(before, after)


def test_pipeline_generators_give_per_sample_determinism(pipe):
    src = source_images(3)
    batch = pipe(src, num_inference_steps=2, generator=[torch.Generator().manual_seed(i) for i in range(3)], output_type="pt").images
    single = pipe(src[1:2], num_inference_steps=2, generator=[torch.Generator().manual_seed(1)], output_type="pt").images
    torch.testing.assert_close(batch[1:2], single, rtol=0, atol=1e-6)
    other = pipe(src, num_inference_steps=2, generator=torch.Generator().manual_seed(5), output_type="pt").images
    assert not torch.equal(batch, other)


@pytest.mark.parametrize("solver,steps,nfe", [("consistency", 2, 2), ("dbim", 4, 4), ("heun", 2, 5)])
def test_pipeline_outputs_and_nfe(solver, steps, nfe):
    pipe = ConsistencyBridgePipeline(tiny_unet(), BridgeScheduler(solver=solver))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(source_images(2), num_inference_steps=steps, output_type="np")
    assert out.nfe == nfe and out.images.shape == (2, 8, 8, 1) and 0 <= out.images.min() and out.images.max() <= 1
    pil = pipe(source_images(2), num_inference_steps=steps, output_type="pil").images
    assert len(pil) == 2 and pil[0].size == (8, 8)
    images, n = pipe(source_images(1), num_inference_steps=steps, output_type="pt", return_dict=False)
    assert images.shape == (1, 1, 8, 8) and n == nfe


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image": torch.rand(1, 1, 16, 16)}, "pixels"),
        ({"image": torch.rand(1, 3, 8, 8)}, "channels"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"eta": -0.5}, "eta"),
        ({"output_type": "tensor"}, "output_type"),
        ({"generator": [torch.Generator()]}, "generators"),
    ],
)
def test_pipeline_rejects_bad_input(pipe, kwargs, match):
    kwargs = {"image": source_images(2), **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)
