"""Diffusion-bridge noise schedules and the DDBM preconditioning (shared by bridge samplers and trainers).

A reference SDE ``dx = f(t) x dt + g(t) dw`` on ``[0, T]`` pinned at ``x_0`` (data) and ``x_T = y``
(the source image) gives the bridge marginal (DDBM, arXiv 2309.16948, Thm. 1; CDBM Eq. 11-12)::

    q(x_t | x_0, x_T=y) = N(a_t y + b_t x_0, c_t^2 I)
    alpha_t = exp(int_0^t f),   alpha_bar_t = alpha_t / alpha_T
    rho_t^2 = int_0^t g^2 / alpha^2,   rho_bar_t^2 = rho_T^2 - rho_t^2
    a_t = alpha_bar_t rho_t^2 / rho_T^2,   b_t = alpha_t rho_bar_t^2 / rho_T^2,   c_t = alpha_t rho_t rho_bar_t / rho_T

Everything is computed in float64 (the schedule is singular at both ends); callers cast the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BRIDGE_SCHEDULES = ("vp", "ve")


def _t64(t) -> torch.Tensor:
    """``t`` in float64: a tensor stays on its device, a number becomes a CPU tensor."""
    return torch.as_tensor(t, dtype=torch.float64, device=t.device if torch.is_tensor(t) else "cpu")


@dataclass(frozen=True)
class BridgeSchedule:
    """Base class: subclasses give ``f``, ``g^2``, ``alpha_t`` and ``rho_t`` of the reference SDE."""

    T: float

    def f_g2(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _alpha_rho2(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def alpha_rho(self, t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(alpha_t, alpha_bar_t, rho_t, rho_bar_t)`` in float64."""
        t = _t64(t)
        alpha, rho2 = self._alpha_rho2(t)
        alpha_T, rho2_T = self._alpha_rho2(_t64(self.T))
        rho_bar2 = (rho2_T - rho2).clamp_min(0.0)
        return alpha, alpha / alpha_T, rho2.clamp_min(0.0).sqrt(), rho_bar2.sqrt()

    def abc(self, t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bridge-marginal coefficients ``(a_t, b_t, c_t)``: ``x_t = a_t y + b_t x_0 + c_t z``."""
        alpha, alpha_bar, rho, rho_bar = self.alpha_rho(t)
        rho_T2 = self._alpha_rho2(_t64(self.T))[1]
        a = alpha_bar * rho**2 / rho_T2
        b = alpha * rho_bar**2 / rho_T2
        c = alpha * rho * rho_bar / rho_T2.sqrt()
        return a, b, c

    def bridge_sample(self, x0: torch.Tensor, y: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0, y)`` with the given standard-normal ``noise``; ``t`` is a scalar or ``(B,)``."""
        a, b, c = (_bcast(v, x0) for v in self.abc(t))
        return (a * y.double() + b * x0.double() + c * noise.double()).to(x0.dtype)

    def ddbm_scalings(self, t, sigma_data: float = 0.5, cov_xy: float = 0.0, sigma_data_end: float | None = None):
        """DDBM preconditioning ``(c_skip, c_out, c_in)`` (DDBM Sec. 4; DBIM's ``DDBMPreCond``).

        With ``(x_0, y)`` jointly Gaussian (std ``sigma_data`` / ``sigma_data_end``, covariance
        ``cov_xy``): ``c_in = 1/std(x_t)``, ``c_skip = Cov(x_0, x_t)/Var(x_t)`` and ``c_out`` is the
        residual std of that linear estimate, so ``D = c_skip x_t + c_out F`` has a unit-variance target.
        At ``t = 0``: ``c_skip = 1``, ``c_out = 0`` (the denoiser is the identity).
        """
        s0, sT = sigma_data, sigma_data if sigma_data_end is None else sigma_data_end
        a, b, c = self.abc(t)
        var = a**2 * sT**2 + b**2 * s0**2 + 2 * a * b * cov_xy + c**2
        c_in = var.rsqrt()
        c_skip = (b * s0**2 + a * cov_xy) / var
        c_out = (a**2 * (sT**2 * s0**2 - cov_xy**2) + s0**2 * c**2).sqrt() * c_in
        return c_skip, c_out, c_in

    @staticmethod
    def c_noise(t) -> torch.Tensor:
        """The network's time input, ``1000 * 0.25 * log(t)`` (DDBM / EDM convention)."""
        return 250.0 * torch.log(_t64(t) + 1e-44)

    def pf_ode_drift(self, x, t, denoised, y, stochastic: bool = False):
        """Drift of the bridge PF-ODE ``dx = [f x - g^2 (s/2 - h)] dt`` (DDBM Eq. 10), or of the reverse
        SDE ``dx = [f x - g^2 (s - h)] dt + g dw`` when ``stochastic``; returns ``(drift, g^2)``.

        ``s = -(x - a y - b D)/c^2`` is the score of ``q(x_t | y)`` through the denoiser ``D`` and
        ``h = -(x - alpha_bar y)/(alpha^2 rho_bar^2)`` is Doob's h-transform term.
        """
        f, g2 = (_bcast(v, x) for v in self.f_g2(t))
        a, b, c = (_bcast(v, x) for v in self.abc(t))
        alpha, alpha_bar, _, rho_bar = (_bcast(v, x) for v in self.alpha_rho(t))
        x64, d64, y64 = x.double(), denoised.double(), y.double()
        score = -(x64 - a * y64 - b * d64) / c**2
        h = -(x64 - alpha_bar * y64) / (alpha**2 * rho_bar**2)
        weight = 1.0 if stochastic else 0.5
        drift = f * x64 - g2 * (weight * score - h)
        return drift.to(x.dtype), g2


@dataclass(frozen=True)
class VPBridgeSchedule(BridgeSchedule):
    """VP reference SDE: ``f = -(beta_min + beta_d t)/2``, ``g^2 = beta_min + beta_d t`` on ``[0, T]``."""

    T: float = 1.0
    beta_min: float = 0.1
    beta_d: float = 2.0

    def f_g2(self, t):
        beta = self.beta_min + self.beta_d * _t64(t)
        return -0.5 * beta, beta

    def _alpha_rho2(self, t):
        log_alpha = -0.5 * self.beta_min * t - 0.25 * self.beta_d * t**2
        return log_alpha.exp(), torch.expm1(-2.0 * log_alpha)


@dataclass(frozen=True)
class VEBridgeSchedule(BridgeSchedule):
    """VE reference SDE: ``f = 0``, ``g^2 = 2t`` on ``[0, T = sigma_max]`` (``alpha = 1``, ``rho_t = t``)."""

    T: float = 80.0

    def f_g2(self, t):
        t = _t64(t)
        return torch.zeros_like(t), 2.0 * t

    def _alpha_rho2(self, t):
        return torch.ones_like(t), t**2


def make_bridge_schedule(name: str, *, T: float | None = None, beta_min: float = 0.1, beta_d: float = 2.0) -> BridgeSchedule:
    """Build a schedule by name (``"vp"`` or ``"ve"``); ``T`` defaults to 1 (VP) or 80 (VE)."""
    if name == "vp":
        return VPBridgeSchedule(T=1.0 if T is None else float(T), beta_min=beta_min, beta_d=beta_d)
    if name == "ve":
        return VEBridgeSchedule(T=80.0 if T is None else float(T))
    raise ValueError(f"`noise_schedule` must be one of {BRIDGE_SCHEDULES}, got {name!r}.")


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-sample ``(B,)`` coefficient broadcast against ``like`` (kept in float64)."""
    v = v.to(like.device)
    return v.reshape(-1, *([1] * (like.ndim - 1))) if v.ndim else v

