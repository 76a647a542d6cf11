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

  ``l_t = E tr(grad_x D_phi) / d`` (the i-DODE / DPM-Solver-v3 criterion) and the trend
  ``s_t = E<g_phi, dg_phi/dtau> / E||g_phi||^2`` (least-squares fit of ``dg_phi/dtau = s g_phi`` along the
  teacher ODE). With ``l = s = 0`` this is exactly the Euler form; for Gaussian data ``D_phi = l_t x`` and
  ``f + g l_t`` is the exact ODE jump, so the optimal student equals the teacher (zero consistency gap).
  Those two facts are the tests.

  The forward form is a local (``s ~ t``) approximation: its error bound grows with ``t / s`` and for jumps
  into the low-noise region (``l ~ 1``) ``g`` exceeds 1 (about 4 for ``80 -> 0.002`` on a 2-D mixture),
  whereas the paper reports near-CTM coefficients there. Jumps with ``t / s > long_jump_ratio`` therefore
  use ``long_jump``: ``"forward"`` (no change), ``"euler"`` (CTM's scalings) or ``"implicit"`` (``g_phi``
  taken at the end point, one backward-Euler step: ``f = A / (1 + K_s l_s)``, ``g = K_s / (1 + K_s l_s)``).
  The paper's own long-jump rule (its Sec. 3.3) could not be read; these are documented substitutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from hfgen.validation import check_arguments, check_step_in_plan

from ..utils import HfgenSchedulerMixin

PRECONDITIONINGS = ("euler", "variance", "analytic")
LONG_JUMPS = ("forward", "euler", "implicit")


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
        """``(l, Lambda, S, I)`` at ``tau`` (clamped to the grid), on ``tau``'s device."""
        tau = torch.as_tensor(tau, dtype=torch.float64)
        log_t, lin, s, lam_table, s_table, i_table = (
            v.to(tau.device) for v in (self.log_t, self.l, self.s, self.Lambda, self.S, self.I))
        tau = tau.clamp(log_t[0], log_t[-1])
        i = (torch.searchsorted(log_t, tau, right=True) - 1).clamp(0, len(log_t) - 2)
        h, d = log_t[i + 1] - log_t[i], tau - log_t[i]
        w = d / h
        l_tau = lin[i] + w * (lin[i + 1] - lin[i])
        s_tau = s[i] + w * (s[i + 1] - s[i])
        lam = lam_table[i] + d * (1 - (lin[i] + l_tau) / 2)
        big_s = s_table[i] + d * (s[i] + s_tau) / 2
        e0 = s_table[i] - lam_table[i]
        return l_tau, lam, big_s, i_table[i] + _int_exp_pair(e0, big_s - lam, d)


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
                   tables: AnalyticTables | None = None, long_jump: str = "forward", long_jump_ratio: float = 10.0):
    """``(f(t, s), g(t, s))`` of ``G = f x_t + g D_theta`` for each preconditioning (float64, on ``t``'s device).

    ``long_jump`` / ``long_jump_ratio`` select the analytic coefficients of jumps with ``t / s > long_jump_ratio``
    (see the module docstring).
    """
    t = torch.as_tensor(t, dtype=torch.float64)
    s = torch.as_tensor(s, dtype=torch.float64, device=t.device)
    if torch.any(s > t):
        raise ValueError("The jump target `s` must not exceed `t` (s <= t).")
    if torch.any(s <= 0):
        raise ValueError("The jump target `s` must be > 0.")
    if preconditioning == "euler":
        return s / t, 1 - s / t
    if preconditioning == "variance":
        f = (((s - sigma_min) ** 2 + sigma_data**2) / ((t - sigma_min) ** 2 + sigma_data**2)).sqrt()
        return f, 1 - s / t
    if preconditioning != "analytic":
        raise ValueError(f"`preconditioning` must be one of {PRECONDITIONINGS}, got {preconditioning!r}.")
    if tables is None:
        raise ValueError("preconditioning='analytic' needs the teacher statistics (`tables`).")
    if long_jump not in LONG_JUMPS:
        raise ValueError(f"`long_jump` must be one of {LONG_JUMPS}, got {long_jump!r}.")
    if not long_jump_ratio >= 1:
        raise ValueError(f"`long_jump_ratio` must be >= 1, got {long_jump_ratio}.")
    l_t, lam_t, big_s_t, i_t = tables(torch.log(t))
    l_s, lam_s, big_s_s, i_s = tables(torch.log(s))
    decay = torch.exp(lam_s - lam_t)  # A: the linear part's exact flow
    k = torch.exp(lam_s - big_s_t) * (i_t - i_s)
    f, g = decay - l_t * k, k
    long = t / s > long_jump_ratio
    if long_jump == "forward" or not torch.any(long):
        return f, g
    if long_jump == "euler":
        f_long, g_long = s / t, 1 - s / t
    else:  # x_s = A x_t + K_s (D_s - l_s x_s), K_s normalising the trend at s
        k_s = torch.exp(lam_s - big_s_s) * (i_t - i_s)
        f_long, g_long = decay / (1 + k_s * l_s), k_s / (1 + k_s * l_s)
    return torch.where(long, f_long, f), torch.where(long, g_long, g)


def estimate_linear_statistic(denoiser, samples, t, num_probes: int = 1, generator=None) -> torch.Tensor:
    """``l_t = E tr(grad_x D(x_t, t)) / d`` with Hutchinson probes ``v^T J v`` (one vector-Jacobian product each,
    reverse mode, so any module works), ``x_t = x_0 + t z``.

    Args:
        denoiser: ``D(x, t)`` of the teacher, ``x`` of shape ``(B, ...)``, ``t`` a float.
        samples: data ``x_0`` of shape ``(B, ...)``.
    """
    noise = randn_tensor(samples.shape, generator=generator, device=samples.device, dtype=samples.dtype)
    x_t = samples + t * noise
    d = samples[0].numel()
    probe_device = generator.device if generator is not None else samples.device
    total = 0.0
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        denoised = denoiser(x, t)
        for i in range(num_probes):
            v = torch.randint(0, 2, samples.shape, generator=generator, device=probe_device).to(samples) * 2 - 1  # Rademacher
            (vjp,) = torch.autograd.grad(denoised, x, v, retain_graph=i < num_probes - 1)
            total = total + (v * vjp).flatten(1).sum(1).mean().detach() / d
    return total / num_probes


def estimate_trend_statistic(denoiser, samples, t: float, l_t: float, dl_dtau: float, generator=None) -> torch.Tensor:
    """``s_t = E<g, dg/dtau> / E||g||^2`` with ``g = D(x, t) - l_t x`` and ``dg/dtau`` its total derivative along
    the teacher ODE ``dx/dtau = x - D`` (``tau = log t``)::

        <g, dg/dtau> = <J_x^T g, x - D> + <g, dD/dtau> - dl/dtau <g, x> - l_t <g, x - D>

    (one vector-Jacobian product with cotangent ``g`` in ``(x, tau)``). ``dl_dtau`` is the slope of the
    (smooth, common-random-numbers) ``l`` table at ``t``; ``x_t = x_0 + t z``. Returns 0 where ``g`` vanishes
    (e.g. Gaussian data, where the trend is undefined and irrelevant).
    """
    noise = randn_tensor(samples.shape, generator=generator, device=samples.device, dtype=samples.dtype)
    x_t = samples + t * noise
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        tau = torch.tensor(float(t), dtype=x.dtype, device=x.device).log().requires_grad_(True)
        denoised = denoiser(x, tau.exp())
        g = (denoised - l_t * x).detach()
        grad_x, grad_tau = torch.autograd.grad(denoised, (x, tau), g)
    velocity = (x_t - denoised).detach()
    g64, x64, v64 = g.double(), x_t.double(), velocity.double()
    norm = g64.pow(2).sum()
    if norm <= 1e-12 * x64.pow(2).sum():
        return torch.zeros((), dtype=torch.float64, device="cpu")
    inner = (grad_x.double() * v64).sum() + grad_tau.double() - dl_dtau * (g64 * x64).sum() - l_t * (g64 * v64).sum()
    return (inner / norm).cpu()


@dataclass
class ConsistencyTrajectorySchedulerOutput(BaseOutput):
    """
    Args:
        prev_sample (`torch.Tensor`): the sample at the next time ``t_{i+1}`` (re-noised when ``gamma > 0``).
        jump_sample (`torch.Tensor`): the student's jump ``G(x_t, t, s)`` before re-noising.
    """

    prev_sample: torch.Tensor
    jump_sample: torch.Tensor


class ConsistencyTrajectoryScheduler(HfgenSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""Multi-step sampler of a consistency trajectory model (CTM, arXiv 2310.02279, Alg. "gamma-sampling").

    On the Karras grid ``sigma_max = t_0 > ... > t_N = sigma_min`` each step jumps with the student
    ``G(x, t_i, s_i) = f(t_i, s_i) x + g(t_i, s_i) D_theta``, ``s_i = sqrt(1 - gamma^2) t_{i+1}``, then
    re-noises ``x_{t_{i+1}} = G + sqrt(t_{i+1}^2 - s_i^2) z`` (``gamma = 0``: deterministic jumps;
    ``gamma = 1``: CM-style multistep). The last step jumps to ``sigma_min`` without noise.
    ``D_theta = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t), c_noise(s))`` uses the EDM scalings.

    Args:
        sigma_min, sigma_max (`float`): time range of the EDM PF-ODE (``x_t = x_0 + t z``).
        sigma_data (`float`): data std of the EDM scalings.
        rho (`float`): Karras grid exponent.
        preconditioning (`str`): ``"euler"`` (CTM), ``"variance"`` or ``"analytic"`` (Analytic-Precond).
        gamma (`float`): re-noising strength in [0, 1].
        statistics_log_t, statistics_l, statistics_s (`list[float]`, *optional*): the teacher statistics of
            ``"analytic"`` (see [`AnalyticTables`]); stored in the config so they ship with the pipeline.
        long_jump (`str`): analytic coefficients of jumps with ``t / s > long_jump_ratio``: ``"forward"``,
            ``"euler"`` or ``"implicit"`` (module docstring).
        long_jump_ratio (`float`): the ``t / s`` above which ``long_jump`` applies.
    """

    order = 1

    @register_to_config
    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5, rho: float = 7.0,
                 preconditioning: str = "euler", gamma: float = 0.0, statistics_log_t: list | None = None,
                 statistics_l: list | None = None, statistics_s: list | None = None, long_jump: str = "forward",
                 long_jump_ratio: float = 10.0):
        check_arguments(ConsistencyTrajectoryScheduler.__init__, locals())  # types and finiteness, from the signature
        if preconditioning not in PRECONDITIONINGS:
            raise ValueError(f"`preconditioning` must be one of {PRECONDITIONINGS}, got {preconditioning!r}.")
        if long_jump not in LONG_JUMPS:
            raise ValueError(f"`long_jump` must be one of {LONG_JUMPS}, got {long_jump!r}.")
        if not long_jump_ratio >= 1:
            raise ValueError(f"`long_jump_ratio` must be >= 1, got {long_jump_ratio}.")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"Need 0 < `sigma_min` < `sigma_max`, got {sigma_min}, {sigma_max}.")
        if not 0 <= gamma <= 1:
            raise ValueError(f"`gamma` must be in [0, 1], got {gamma}.")
        for name, value in (("rho", rho), ("sigma_data", sigma_data)):
            if not value > 0:
                raise ValueError(f"`{name}` must be > 0, got {value}.")
        self.tables = None if statistics_log_t is None else AnalyticTables(statistics_log_t, statistics_l, statistics_s)
        if preconditioning == "analytic" and self.tables is None:
            raise ValueError("preconditioning='analytic' needs the teacher statistics (`statistics_log_t`, `statistics_l`).")
        self.init_noise_sigma = sigma_max
        self.set_timesteps(1)
        self._plan_set = False  # `step` refuses to run until the caller calls set_timesteps

    def karras_sigmas(self, num_points: int) -> torch.Tensor:
        """``num_points`` decreasing times from ``sigma_max`` to ``sigma_min`` (EDM Eq. 5), float64 on the CPU."""
        c = self.config
        ramp = torch.linspace(0, 1, num_points, dtype=torch.float64, device="cpu")
        lo, hi = c.sigma_min ** (1 / c.rho), c.sigma_max ** (1 / c.rho)
        return (hi + ramp * (lo - hi)) ** c.rho

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None, gamma: float | None = None):
        """Jump times ``t_i`` (``self.timesteps``) and targets ``s_i`` (``self.targets``) for ``num_inference_steps`` jumps."""
        self._plan_set = True
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an int >= 1, got {num_inference_steps!r}.")
        gamma = self.config.gamma if gamma is None else gamma
        if not 0 <= gamma <= 1:
            raise ValueError(f"`gamma` must be in [0, 1], got {gamma}.")
        self.num_inference_steps = num_inference_steps
        sigmas = self.karras_sigmas(num_inference_steps + 1)
        targets = ((1 - gamma**2) ** 0.5 * sigmas[1:]).clamp_min(self.config.sigma_min)
        targets[-1] = self.config.sigma_min
        # everything a step needs, computed here once: the steps read it by index, with no host sync
        self._plan = {"sigmas": sigmas, "targets": targets, "scalings": self.outer_scalings(sigmas[:-1], targets),
                      "renoise": [i < num_inference_steps - 1 and bool(sigmas[i + 1] > targets[i])
                                  for i in range(num_inference_steps)]}
        self.sigmas, self.targets = sigmas.to(device), targets.to(device)
        self.timesteps = self.sigmas[:-1]
        self._step_index = 0

    # ---------------------------------------------------------------------------------- the student

    def _scalar(self, t, like):
        t = torch.as_tensor(t, dtype=torch.float64, device=like.device)  # coefficients in float64, then cast to `like`
        return t.reshape(-1, *([1] * (like.ndim - 1))) if t.ndim else t

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        """``c_in(t) x = x / sqrt(t^2 + sigma_d^2)``."""
        t = self._scalar(timestep, sample)
        return sample / (t**2 + self.config.sigma_data**2).sqrt().to(sample)

    @staticmethod
    def c_noise(timestep) -> torch.Tensor:
        """EDM noise conditioning ``log(t) / 4`` (float32)."""
        return (torch.as_tensor(timestep, dtype=torch.float64).log() / 4).float()

    def outer_scalings(self, timestep, target):
        """``(f(t, s), g(t, s))`` of this scheduler's preconditioning (float64, on ``timestep``'s device)."""
        c = self.config
        return outer_scalings(
            timestep, target, c.preconditioning, c.sigma_data, c.sigma_min, self.tables, c.long_jump, c.long_jump_ratio
        )

    def precondition_outputs(self, sample: torch.Tensor, model_output: torch.Tensor, timestep, target,
                             scalings: tuple | None = None) -> torch.Tensor:
        """``G(x_t, t, s) = f(t, s) x_t + g(t, s) (c_skip(t) x_t + c_out(t) F)``; ``G(x, t, t) = x`` exactly.

        ``scalings``: precomputed ``(f, g)`` of ``(timestep, target)`` (e.g. a trainer's table on its time grid).
        """
        t, s = self._scalar(timestep, sample), self._scalar(target, sample)
        sd = self.config.sigma_data
        c_skip, c_out = sd**2 / (t**2 + sd**2), t * sd / (t**2 + sd**2).sqrt()
        denoised = c_skip.to(sample) * sample + c_out.to(sample) * model_output
        f, g = self.outer_scalings(t, s) if scalings is None else scalings
        shape = (-1, *([1] * (sample.ndim - 1)))
        f, g = (v.to(sample).reshape(shape) if v.ndim else v.to(sample) for v in (f, g))
        return f * sample + g * denoised

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: torch.Generator | list[torch.Generator] | None = None,
             return_dict: bool = True) -> ConsistencyTrajectorySchedulerOutput | tuple:
        """Jump ``x_{t_i} -> G(x_{t_i}, t_i, s_i)`` and re-noise to ``t_{i+1}``; ``model_output`` is ``F``."""
        if not getattr(self, "_plan_set", True):
            raise ValueError("Call `set_timesteps` before `step`: the scheduler has no sampling plan yet.")
        check_step_in_plan(self._step_index, len(self.timesteps))
        i, plan = self._step_index, self._plan
        t, s, t_next = self.timesteps[i], self.targets[i], self.sigmas[i + 1]
        given = torch.as_tensor(timestep, dtype=torch.float64)
        if given.device.type == "cpu":  # a device tensor is checked without waiting for it
            if not torch.isclose(given, plan["sigmas"][i]).all():
                raise ValueError(f"`timestep` {timestep} is not the scheduler's current time {plan['sigmas'][i]:.6g}.")
        else:
            torch._assert_async(torch.isclose(given, t.to(given.device)).all(), "`timestep` is not the scheduler's current time.")
        if model_output.shape != sample.shape:
            raise ValueError(f"`model_output` {tuple(model_output.shape)} must have the shape of `sample` {tuple(sample.shape)}.")
        f, g = (v[i].to(sample.device) for v in plan["scalings"])
        dtype = torch.promote_types(sample.dtype, torch.float32)  # the jump in float32 at least, as Diffusers' schedulers
        jump = self.precondition_outputs(sample.to(dtype), model_output.to(dtype), t, s, scalings=(f, g))
        prev = jump
        if plan["renoise"][i]:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=dtype)
            prev = jump + (t_next**2 - s**2).sqrt().to(jump) * noise
        prev, jump = prev.to(sample.dtype), jump.to(sample.dtype)
        self._step_index += 1
        if not return_dict:
            return (prev, jump)
        return ConsistencyTrajectorySchedulerOutput(prev_sample=prev, jump_sample=jump)
