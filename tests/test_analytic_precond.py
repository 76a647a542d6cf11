"""Analytic-Precond (arXiv 2502.02922): the coefficients' exact facts (Euler limit, boundary, Gaussian gap)."""

import math

import pytest
import torch

from hfgen.pipelines.consistency_trajectory.scheduling_consistency_trajectory import (
    AnalyticTables,
    estimate_linear_statistic,
    estimate_trend_statistic,
    outer_scalings,
)

SIGMA_D = 0.5
PAIRS = [(2.0, 0.3), (80.0, 0.002), (1.0, 0.5), (10.0, 1.0), (0.01, 0.005)]


def grid(n):
    return torch.linspace(math.log(0.002), math.log(80.0), n, dtype=torch.float64)


def gaussian_tables(n):
    log_t = grid(n)
    return AnalyticTables(log_t, SIGMA_D**2 / (SIGMA_D**2 + log_t.exp() ** 2))


def test_analytic_coefficients_reduce_to_euler_when_the_statistics_vanish():
    log_t = grid(120)
    tables = AnalyticTables(log_t, torch.zeros(120), torch.zeros(120))
    for t, s in PAIRS:
        f, g = outer_scalings(t, s, "analytic", tables=tables)
        assert f.item() == pytest.approx(s / t, abs=1e-12) and g.item() == pytest.approx(1 - s / t, abs=1e-12)


@pytest.mark.parametrize("long_jump", ["forward", "euler", "implicit"])
@pytest.mark.parametrize("preconditioning", ["euler", "variance", "analytic"])
def test_boundary_condition_G_of_x_t_t_is_x_for_every_preconditioning(preconditioning, long_jump):
    gen = torch.Generator().manual_seed(0)
    tables = AnalyticTables(grid(50), torch.rand(50, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen, dtype=torch.float64))
    t = torch.exp(torch.empty(20, dtype=torch.float64).uniform_(math.log(0.002), math.log(80.0), generator=gen))
    f, g = outer_scalings(t, t, preconditioning, tables=tables, long_jump=long_jump, long_jump_ratio=1.0)
    assert torch.equal(f, torch.ones_like(t)) and torch.equal(g, torch.zeros_like(t))


def test_long_jump_rules_apply_only_beyond_the_ratio_and_reduce_to_euler_without_statistics():
    tables = gaussian_tables(480)
    t, s = torch.tensor([2.0, 2.0, 80.0]), torch.tensor([0.5, 0.1, 0.002])  # t/s = 4, 20, 40000
    forward = outer_scalings(t, s, "analytic", tables=tables)
    fallback = outer_scalings(t, s, "analytic", tables=tables, long_jump="euler", long_jump_ratio=10.0)
    assert torch.equal(fallback[0][0], forward[0][0]) and torch.equal(fallback[1][0], forward[1][0])
    assert torch.allclose(fallback[0][1:], s[1:].double() / t[1:]) and torch.allclose(fallback[1][1:], 1 - s[1:].double() / t[1:])
    zero = AnalyticTables(grid(120), torch.zeros(120))
    for t_, s_ in PAIRS:
        f, g = outer_scalings(t_, s_, "analytic", tables=zero, long_jump="implicit", long_jump_ratio=1.0)
        assert f.item() == pytest.approx(s_ / t_, abs=1e-12) and g.item() == pytest.approx(1 - s_ / t_, abs=1e-12)


def test_implicit_long_jump_is_exact_for_gaussian_data_with_the_end_point_denoiser():
    # Backward-Euler form: x_s = A x_t + K (D(x_s, s) - l_s x_s). Gaussian data: D(x_s, s) = l_s x_s and the exact
    # jump x_s = r x_t, so f + g l_s r = r must hold; the long jumps also keep g <= 1 (no error amplification).
    tables = gaussian_tables(480)
    for t, s in PAIRS[:4]:
        r = math.sqrt((SIGMA_D**2 + s**2) / (SIGMA_D**2 + t**2))
        f, g = (v.item() for v in outer_scalings(t, s, "analytic", tables=tables, long_jump="implicit", long_jump_ratio=1.0))
        assert f + g * SIGMA_D**2 / (SIGMA_D**2 + s**2) * r == pytest.approx(r, abs=1e-4) and 0 < g <= 1


def test_gaussian_data_analytic_precond_has_zero_consistency_gap_while_euler_does_not():
    # Data N(0, sd^2 I): D_phi(x, t) = l_t x with l_t = sd^2/(sd^2 + t^2) and the exact ODE jump is
    # x_s = sqrt((sd^2 + s^2)/(sd^2 + t^2)) x_t. The optimal student D* = (x_s - f x_t)/g; its gap to D_phi:
    tables = gaussian_tables(480)
    for t, s in PAIRS[:4]:
        exact, l_t = math.sqrt((SIGMA_D**2 + s**2) / (SIGMA_D**2 + t**2)), SIGMA_D**2 / (SIGMA_D**2 + t**2)
        f, g = (v.item() for v in outer_scalings(t, s, "analytic", tables=tables))
        assert abs((exact - f) / g - l_t) < 1e-4
        f, g = (v.item() for v in outer_scalings(t, s, "euler"))
        assert abs((exact - f) / g - l_t) > 5e-3


def test_analytic_tables_converge_as_the_grid_is_refined():
    errors = []
    exact = math.sqrt((SIGMA_D**2 + 0.3**2) / (SIGMA_D**2 + 2.0**2))
    for n in (60, 120, 240, 480):
        f, g = outer_scalings(2.0, 0.3, "analytic", tables=gaussian_tables(n))
        errors.append(abs((f + g * SIGMA_D**2 / (SIGMA_D**2 + 4.0)).item() - exact))
    assert all(e2 < e1 / 3 for e1, e2 in zip(errors, errors[1:])), errors  # second order in the grid step


def test_hutchinson_linear_statistic_matches_the_exact_jacobian_trace():
    # 2-D two-Gaussian mixture with its exact (nonlinear) denoiser.
    means, s2 = torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=torch.float64), 0.1

    def denoiser(x, t):
        v = s2 + t**2
        logits = -((x[:, None, :] - means) ** 2).sum(-1) / (2 * v)
        w = torch.softmax(logits, -1)
        posterior_means = means + s2 / v * (x[:, None, :] - means)
        return (w[..., None] * posterior_means).sum(1)

    gen = torch.Generator().manual_seed(0)
    x0 = means[torch.randint(0, 2, (20000,), generator=gen)] + math.sqrt(s2) * torch.randn(20000, 2, generator=gen, dtype=torch.float64)
    t = 0.7
    estimate = estimate_linear_statistic(denoiser, x0, t, num_probes=4, generator=gen).item()
    x_t = x0[:2000] + t * torch.randn(2000, 2, generator=gen, dtype=torch.float64)
    jac = torch.func.vmap(torch.func.jacrev(lambda x: denoiser(x[None], t)[0]))(x_t)
    exact = (jac.diagonal(dim1=-2, dim2=-1).sum(-1) / 2).mean().item()
    assert estimate == pytest.approx(exact, abs=0.02)


def ring_denoiser(x, t, std=0.05, radius=0.7, modes=8):
    angles = torch.arange(modes, dtype=torch.float64) * 2 * math.pi / modes
    means = radius * torch.stack([angles.cos(), angles.sin()], 1)
    v = std**2 + torch.as_tensor(t, dtype=x.dtype) ** 2
    diff = x[:, None, :] - means
    w = torch.softmax(-(diff**2).sum(-1) / (2 * v), -1)
    return (w[..., None] * (means + std**2 / v * diff)).sum(1)


def ring_data(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    angles = torch.randint(0, 8, (n,), generator=gen).double() * 2 * math.pi / 8
    return 0.7 * torch.stack([angles.cos(), angles.sin()], 1) + 0.05 * torch.randn(n, 2, generator=gen, dtype=torch.float64)


def test_trend_statistic_matches_a_finite_difference_along_the_exact_teacher_ode():
    # s_t = E<g, dg/dtau> / E||g||^2 with dg/dtau the total derivative along dx/dtau = x - D (RK4, tiny step).
    x0, t, l_t, dl = ring_data(512), 0.4, 0.45, -0.3
    estimate = estimate_trend_statistic(ring_denoiser, x0, t, l_t, dl, torch.Generator().manual_seed(1)).item()
    x_t = x0 + t * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def flow(x, tau, h):
        rhs = lambda x, u: x - ring_denoiser(x, math.exp(u))  # noqa: E731
        k1 = rhs(x, tau)
        k2 = rhs(x + h / 2 * k1, tau + h / 2)
        k3 = rhs(x + h / 2 * k2, tau + h / 2)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + rhs(x + h * k3, tau + h))

    h, tau = 1e-4, math.log(t)
    g = lambda x, u: ring_denoiser(x, math.exp(u)) - (l_t + dl * (u - tau)) * x  # noqa: E731
    dg = (g(flow(x_t, tau, h), tau + h) - g(flow(x_t, tau, -h), tau - h)) / (2 * h)
    g_t = g(x_t, tau)
    assert estimate == pytest.approx(((g_t * dg).sum() / (g_t**2).sum()).item(), rel=1e-4)
    gaussian = estimate_trend_statistic(lambda x, t: 0.25 / (0.25 + t**2) * x, x0, t, 0.25 / (0.25 + t**2), 0.0)
    assert gaussian.item() == 0.0  # g_phi = 0: no trend to fit


def test_the_trend_is_omitted_by_default_because_it_inflates_intermediate_jump_coefficients():
    # The documented reason for s_t = 0 by default: on the ring teacher the fitted trend turns the moderate
    # forward-form g(5, 0.5) ~ 1.1 into g > 10, amplifying every student error by g.
    log_t, x0 = grid(120), ring_data(1024)
    times = log_t.exp().tolist()
    l_t = torch.stack([estimate_linear_statistic(ring_denoiser, x0, t, 1, torch.Generator().manual_seed(0)) for t in times])
    dl = torch.gradient(l_t, spacing=(log_t,))[0]
    s_t = torch.stack([estimate_trend_statistic(ring_denoiser, x0, t, a.item(), b.item(), torch.Generator().manual_seed(0))
                       for t, a, b in zip(times, l_t, dl)])
    g_without = outer_scalings(5.0, 0.5, "analytic", tables=AnalyticTables(log_t, l_t))[1].item()
    g_with = outer_scalings(5.0, 0.5, "analytic", tables=AnalyticTables(log_t, l_t, s_t))[1].item()
    assert 0.9 < g_without < 1.3 and g_with > 10


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"t": 0.5, "s": 1.0, "preconditioning": "euler"}, "s <= t"),
        ({"t": 1.0, "s": 0.5, "preconditioning": "cm"}, "preconditioning"),
        ({"t": 1.0, "s": 0.5, "preconditioning": "analytic"}, "statistics"),
        ({"t": 1.0, "s": 0.5, "preconditioning": "analytic", "tables": AnalyticTables(grid(4), torch.zeros(4)),
          "long_jump": "backward"}, "long_jump"),
        ({"t": 1.0, "s": 0.5, "preconditioning": "analytic", "tables": AnalyticTables(grid(4), torch.zeros(4)),
          "long_jump_ratio": 0.5}, "long_jump_ratio"),
    ],
)
def test_bad_inputs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        outer_scalings(**kwargs)


def test_tables_reject_bad_grids():
    with pytest.raises(ValueError, match="log_t"):
        AnalyticTables(torch.tensor([1.0, 0.5]), torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        AnalyticTables(grid(5), torch.zeros(4))
