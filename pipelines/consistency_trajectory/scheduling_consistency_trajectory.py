"""Preconditioning of consistency trajectory models: Euler (CTM), variance, and Analytic-Precond.

A trajectory student jumps along the teacher's EDM PF-ODE ``dx/dtau = x - D_phi(x, t)`` (``tau = log t``)::

    G(x_t, t, s) = f(t, s) x_t + g(t, s) D_theta(x_t, t, s),        f(t, t) = 1, g(t, t) = 0

- ``"euler"`` (CTM, ``get_outer_scalings``): ``f = s/t``, ``g = 1 - s/t``, the first-order (DDIM) step.
- ``"variance"`` (CTM): ``f = sqrt(((s - s_min)^2 + sd^2) / ((t - s_min)^2 + sd^2))``, ``g = 1 - s/t``.
- ``"analytic"`` (Analytic-Precond, arXiv 2502.02922, Sec. 3; our derivation, see below): rewrite the
  teacher ODE with a linear part ``l_t`` (a statistic of the teacher) and a trend ``s_t``::

      dx/dtau = (1 - l) x - g_phi,   g_phi = D_phi - l x,   g_phi(x_u, u) ~ exp(S(u) - S(tau_t)) g_phi(x_t, t)

  and integrate exactly (variation of constants) with ``Lambda = int (1 - l)``, ``S = int s``,
  ``I = int exp(S - Lambda)``::

      K(t, s) = exp(Lambda(tau_s) - S(tau_t)) (I(tau_t) - I(tau_s))
      f(t, s) = exp(Lambda(tau_s) - Lambda(tau_t)) - l_t K(t, s),     g(t, s) = K(t, s)

  ``l_t = E tr(grad_x D_phi) / d`` (the i-DODE / DPM-Solver-v3 criterion). With ``l = s = 0`` this is
  exactly the Euler form; for Gaussian data ``D_phi = l_t x`` and ``f + g l_t`` is the exact ODE jump,
  so the optimal student equals the teacher (zero consistency gap). Those two facts are the tests.
"""

from __future__ import annotations

import torch

PRECONDITIONINGS = ("euler", "variance", "analytic")


class AnalyticTables:
    """Teacher statistics ``l_t`` (and trend ``s_t``) on an increasing ``log t`` grid, and their integrals.

    Within a grid cell ``l`` and ``s`` are linear, so ``Lambda`` and ``S`` are integrated exactly, and
    ``I`` is integrated exactly for an exponent linear in the cell (exact whenever ``l``, ``s`` are constant
    there, e.g. the Euler case ``l = s = 0``).
    """

    def __init__(self, log_t, l_t, s_t=None):
        self.log_t = torch.as_tensor(log_t, dtype=torch.float64)
        self.l = torch.as_tensor(l_t, dtype=torch.float64)
        self.s = torch.zeros_like(self.l) if s_t is None else torch.as_tensor(s_t, dtype=torch.float64)
        if self.log_t.ndim != 1 or len(self.log_t) < 2 or not torch.all(self.log_t[1:] > self.log_t[:-1]):
            raise ValueError("`log_t` must be a strictly increasing 1-D grid with at least 2 points.")
        if self.l.shape != self.log_t.shape or self.s.shape != self.log_t.shape:
            raise ValueError(f"`l_t` and `s_t` must have the grid's shape {tuple(self.log_t.shape)}.")
        h = self.log_t.diff()
        lam = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(h * (1 - (self.l[1:] + self.l[:-1]) / 2), 0)])
        big_s = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(h * (self.s[1:] + self.s[:-1]) / 2, 0)])
        self.Lambda, self.S = lam, big_s
        self.I = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(_int_exp_linear(big_s - lam, h), 0)])

    def __call__(self, tau):
        """``(l, Lambda, S, I)`` at ``tau`` (clamped to the grid)."""
        tau = torch.as_tensor(tau, dtype=torch.float64).clamp(self.log_t[0], self.log_t[-1])
        i = (torch.searchsorted(self.log_t, tau, right=True) - 1).clamp(0, len(self.log_t) - 2)
        h, d = self.log_t[i + 1] - self.log_t[i], tau - self.log_t[i]
        w = d / h
        l_tau = self.l[i] + w * (self.l[i + 1] - self.l[i])
        s_tau = self.s[i] + w * (self.s[i + 1] - self.s[i])
        lam = self.Lambda[i] + d * (1 - (self.l[i] + l_tau) / 2)
        big_s = self.S[i] + d * (self.s[i] + s_tau) / 2
        e0 = self.S[i] - self.Lambda[i]
        return l_tau, lam, big_s, self.I[i] + _int_exp_pair(e0, big_s - lam, d)


def _int_exp_pair(e0, e1, h):
    """``int_0^h exp(e0 + (e1 - e0) u / h) du``, stable when ``e1 ~ e0``."""
    de = e1 - e0
    small = de.abs() < 1e-8
    safe = torch.where(small, torch.ones_like(de), de)
    return torch.where(small, h * torch.exp((e0 + e1) / 2), h * torch.exp(e0) * torch.expm1(safe) / safe)


def _int_exp_linear(values, h):
    """Cell integrals of ``exp`` of the piecewise-linear interpolant of ``values`` (cells of width ``h``)."""
    return _int_exp_pair(values[:-1], values[1:], h)


def outer_scalings(t, s, preconditioning: str = "euler", sigma_data: float = 0.5, sigma_min: float = 0.002,
                   tables: AnalyticTables | None = None):
    """``(f(t, s), g(t, s))`` of ``G = f x_t + g D_theta`` for each preconditioning (float64)."""
    t, s = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    if torch.any(s > t):
        raise ValueError("The jump target `s` must not exceed `t` (s <= t).")
    if preconditioning == "euler":
        return s / t, 1 - s / t
    if preconditioning == "variance":
        f = (((s - sigma_min) ** 2 + sigma_data**2) / ((t - sigma_min) ** 2 + sigma_data**2)).sqrt()
        return f, 1 - s / t
    if preconditioning == "analytic":
        if tables is None:
            raise ValueError("preconditioning='analytic' needs the teacher statistics (`tables`).")
        l_t, lam_t, s_t, i_t = tables(torch.log(t))
        _, lam_s, _, i_s = tables(torch.log(s))
        k = torch.exp(lam_s - s_t) * (i_t - i_s)
        return torch.exp(lam_s - lam_t) - l_t * k, k
    raise ValueError(f"`preconditioning` must be one of {PRECONDITIONINGS}, got {preconditioning!r}.")


def estimate_linear_statistic(denoiser, samples, t, num_probes: int = 1, generator=None) -> torch.Tensor:
    """``l_t = E tr(grad_x D(x_t, t)) / d`` with Hutchinson probes (one JVP each), ``x_t = x_0 + t z``.

    Args:
        denoiser: ``D(x, t)`` of the teacher, ``x`` of shape ``(B, ...)``, ``t`` a float.
        samples: data ``x_0`` of shape ``(B, ...)``.
    """
    noise = torch.randn(samples.shape, generator=generator, dtype=samples.dtype)
    x_t = samples + t * noise
    d = samples[0].numel()
    total = 0.0
    for _ in range(num_probes):
        v = torch.randint(0, 2, samples.shape, generator=generator).to(samples.dtype) * 2 - 1  # Rademacher
        _, jv = torch.func.jvp(lambda x: denoiser(x, t), (x_t,), (v,))
        total = total + (v * jv).flatten(1).sum(1).mean() / d
    return total / num_probes
