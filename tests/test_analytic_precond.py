"""Analytic-Precond (arXiv 2502.02922): the coefficients' exact facts (Euler limit, boundary, Gaussian gap)."""

import math

import pytest
import torch
from hfgen.pipelines.consistency_trajectory.scheduling_consistency_trajectory import (
    AnalyticTables,
    estimate_linear_statistic,
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


@pytest.mark.parametrize("preconditioning", ["euler", "variance", "analytic"])
def test_boundary_condition_G_of_x_t_t_is_x_for_every_preconditioning(preconditioning):
    gen = torch.Generator().manual_seed(0)
    tables = AnalyticTables(grid(50), torch.rand(50, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen, dtype=torch.float64))
    t = torch.exp(torch.empty(20, dtype=torch.float64).uniform_(math.log(0.002), math.log(80.0), generator=gen))
    f, g = outer_scalings(t, t, preconditioning, tables=tables)
    assert torch.equal(f, torch.ones_like(t)) and torch.equal(g, torch.zeros_like(t))


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


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"t": 0.5, "s": 1.0, "preconditioning": "euler"}, "s <= t"),
        ({"t": 1.0, "s": 0.5, "preconditioning": "cm"}, "preconditioning"),
        ({"t": 1.0, "s": 0.5, "preconditioning": "analytic"}, "statistics"),
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
