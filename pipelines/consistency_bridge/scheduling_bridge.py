"""Samplers for diffusion bridges: DDBM's hybrid Heun, DBIM (``eta``) and CDBM consistency sampling.

The model is a DDBM-preconditioned network ``F`` (DDBM Sec. 4)::

    D(x_t, t, y) = c_skip(t) x_t + c_out(t) F([c_in(t) x_t, y], c_noise(t))

and, for ``solver="consistency"``, the consistency function of CDBM (arXiv 2410.22637, Sec. 3.3)
uses the same network with the scalings at the shifted time ``t - t_min``::

    h(x_t, t, y) = c_skip(t - t_min) x_t + c_out(t - t_min) F([c_in(t) x_t, y], c_noise(t))

so that ``h(x, t_min, y) = x`` exactly (``c_skip(0) = 1``, ``c_out(0) = 0``).

A pipeline calls, for every entry of ``timesteps`` (one network evaluation each)::

    model_input = cat([scheduler.scale_model_input(x, t), y], dim=1)
    x = scheduler.step(unet(model_input, scheduler.c_noise(t)).sample, t, x, y).prev_sample
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from hfgen.validation import check_arguments

from ..utils import HfgenSchedulerMixin
from .bridges import BRIDGE_SCHEDULES, _bcast, make_bridge_schedule

SOLVERS = ("heun", "dbim", "consistency")


@dataclass
class BridgeSchedulerOutput(BaseOutput):
    """
    Args:
        prev_sample (`torch.Tensor`): the state at the next time (the final image after the last step).
        pred_original_sample (`torch.Tensor`): the model's clean estimate ``x_0`` at this step.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class BridgeScheduler(HfgenSchedulerMixin, SchedulerMixin, ConfigMixin):
    """Scheduler for denoising diffusion bridge models (DDBM) and consistency bridge models (CDBM).

    Args:
        noise_schedule (`str`, defaults to `"vp"`): reference SDE, `"vp"` or `"ve"` (see `hfgen.pipelines.consistency_bridge.bridges`).
        beta_min (`float`, defaults to 0.1), beta_d (`float`, defaults to 2.0): VP schedule parameters.
        sigma_max (`float`, defaults to 80.0): terminal time `T` of the VE schedule (VP uses `T = 1`).
        t_min (`float`, defaults to 1e-4): smallest time; also CDBM's `epsilon` (time shift of `h`).
        gamma (`float`, defaults to 1e-3): DBIM/CDBM start the ODE at `T - gamma` after a booting step at `T`.
        sigma_data (`float`, defaults to 0.5), cov_xy (`float`, defaults to 0.0): DDBM preconditioning.
        solver (`str`, defaults to `"dbim"`): `"heun"` (DDBM hybrid sampler, ~3 NFE a step), `"dbim"`
            (diffusion bridge implicit model, 1 NFE a step; `eta=0` is the first-order ODE solver of CDBM
            Eq. 16) or `"consistency"` (CDBM: every step evaluates the consistency function).
        eta (`float`, defaults to 0.0): stochasticity. `"dbim"`: DBIM's eta (0 = ODE, 1 = Markovian
            bridge posterior). `"consistency"`: fraction of fresh noise when re-noising between consistency
            steps (1 = fresh noise as in multistep consistency sampling, 0 = reuse the implied noise).
        churn_step_ratio (`float`, defaults to 0.33), rho (`float`, defaults to 7.0): DDBM Heun sampler's
            SDE fraction of each step and Karras grid exponent.
        clip_denoised (`bool`, defaults to `True`): clamp the clean estimate to [-1, 1].
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        noise_schedule: str = "vp",
        beta_min: float = 0.1,
        beta_d: float = 2.0,
        sigma_max: float = 80.0,
        t_min: float = 1e-4,
        gamma: float = 1e-3,
        sigma_data: float = 0.5,
        cov_xy: float = 0.0,
        solver: str = "dbim",
        eta: float = 0.0,
        churn_step_ratio: float = 0.33,
        rho: float = 7.0,
        clip_denoised: bool = True,
    ):
        check_arguments(BridgeScheduler.__init__, locals())  # types and finiteness, from the signature
        if noise_schedule not in BRIDGE_SCHEDULES:
            raise ValueError(f"`noise_schedule` must be one of {BRIDGE_SCHEDULES}, got {noise_schedule!r}.")
        if solver not in SOLVERS:
            raise ValueError(f"`solver` must be one of {SOLVERS}, got {solver!r}.")
        if not 0 <= eta <= 1:  # also refuses NaN
            raise ValueError(f"`eta` must be in [0, 1], got {eta}.")
        for name, value in (("beta_min", beta_min), ("beta_d", beta_d), ("sigma_max", sigma_max), ("t_min", t_min),
                            ("gamma", gamma), ("sigma_data", sigma_data), ("cov_xy", cov_xy),
                            ("churn_step_ratio", churn_step_ratio), ("rho", rho)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
                raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
        if not sigma_data > 0 or not rho > 0:
            raise ValueError(f"`sigma_data` and `rho` must be > 0, got {sigma_data}, {rho}.")
        if beta_min < 0 or beta_d < 0 or beta_min + beta_d <= 0:  # beta(t) = beta_min + beta_d t must be > 0
            raise ValueError(f"`beta_min` and `beta_d` must be >= 0 with a positive sum, got {beta_min}, {beta_d}.")
        if not 0 <= churn_step_ratio <= 1:
            raise ValueError(f"`churn_step_ratio` must be in [0, 1] (a fraction of each step), got {churn_step_ratio}.")
        self.schedule = make_bridge_schedule(
            noise_schedule, T=sigma_max if noise_schedule == "ve" else 1.0, beta_min=beta_min, beta_d=beta_d
        )
        if not (t_min > 0 and gamma > 0 and t_min < self.schedule.T - gamma):
            raise ValueError(f"Need `t_min` > 0, `gamma` > 0 and t_min < T - gamma (T={self.schedule.T}), got t_min={t_min}, gamma={gamma}.")
        self.timesteps = None
        self.num_inference_steps = None

    @property
    def T(self) -> float:
        return self.schedule.T

    @property
    def nfe(self) -> int:
        """Network evaluations of the current plan (one per entry of `timesteps`)."""
        return len(self.timesteps)

    # ----------------------------------------------------------------------------- preconditioning

    def scalings(self, t, consistency: bool | None = None):
        """``(c_skip, c_out, c_in)`` at ``t``; for the consistency function ``c_skip, c_out`` use ``t - t_min``."""
        consistency = self.config.solver == "consistency" if consistency is None else consistency
        c = self.config
        _, _, c_in = self.schedule.ddbm_scalings(t, c.sigma_data, c.cov_xy)
        t = torch.as_tensor(t, dtype=torch.float64, device=c_in.device)  # a Python float would become float32 below
        t_out = t - c.t_min if consistency else t
        c_skip, c_out, _ = self.schedule.ddbm_scalings(t_out.clamp_min(0.0), c.sigma_data, c.cov_xy)
        return c_skip, c_out, c_in

    def c_noise(self, t) -> torch.Tensor:
        """The network's timestep input ``250 log t`` (float32)."""
        return self.schedule.c_noise(t).float()

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        """``c_in(t) x_t``; the pipeline concatenates the source image ``y`` after it."""
        c_in = _bcast(self.schedule.ddbm_scalings(timestep, self.config.sigma_data, self.config.cov_xy)[2], sample)
        return (c_in * sample.double()).to(sample.dtype)

    def precondition_outputs(self, sample, model_output, timestep, consistency: bool | None = None) -> torch.Tensor:
        """``c_skip x_t + c_out F``: the DDBM denoiser, or CDBM's consistency function ``h``."""
        c_skip, c_out, _ = (_bcast(v, sample) for v in self.scalings(timestep, consistency))
        return (c_skip * sample.double() + c_out * model_output.double()).to(sample.dtype)

    def add_noise(self, original_samples, noise, timesteps, source) -> torch.Tensor:
        """Bridge marginal ``x_t = a_t y + b_t x_0 + c_t z`` (the analogue of diffusion's ``add_noise``)."""
        return self.schedule.bridge_sample(original_samples, source, timesteps, noise)

    def first_order_step(self, sample, denoised, s, t, source) -> torch.Tensor:
        """The general-form first-order ODE solver of CDBM (Eq. 16), DBIM's ``eta = 0`` step, ``s -> t``::

            x_t = (c_t / c_s) x_s + (b_t - b_s c_t / c_s) x0 + (a_t - a_s c_t / c_s) y

        ``s`` and ``t`` are scalars or per-sample ``(B,)``; used by CBD to move ``x_t`` with the teacher.
        """
        (a_s, b_s, c_s), (a_t, b_t, c_t) = ([_bcast(v, sample) for v in self.schedule.abc(u)] for u in (s, t))
        ratio = c_t / c_s
        x_t = ratio * sample.double() + (b_t - b_s * ratio) * denoised.double() + (a_t - a_s * ratio) * source.double()
        return x_t.to(sample.dtype)

    # ------------------------------------------------------------------------------------- timesteps

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None):
        """Plan ``num_inference_steps`` solver steps; ``timesteps`` lists every network evaluation.

        - `"dbim"` / `"consistency"`: a booting evaluation at ``T`` then ``N - 1`` evaluations on
          ``linspace(T - gamma, t_min, N)``; NFE = N. DBIM's last step lands on ``t_min``, the
          consistency sampler returns its last clean estimate.
        - `"heun"`: a Karras grid of N times from ``T - 1e-4`` to ``t_min`` then 0; each step is an
          Euler-Maruyama SDE step then a Heun ODE step (Euler on the last); NFE = 3N - 1.
        """
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an int >= 1, got {num_inference_steps!r}.")
        c, T, n = self.config, self.T, num_inference_steps
        if c.solver == "heun":
            cpu = {"dtype": torch.float64, "device": "cpu"}  # the plan is made on the host, once
            ramp = torch.linspace(0, 1, n, **cpu) if n > 1 else torch.zeros(1, **cpu)
            hi, lo = (T - 1e-4) ** (1 / c.rho), c.t_min ** (1 / c.rho)
            grid = torch.cat([(hi + ramp * (lo - hi)) ** c.rho, torch.zeros(1, **cpu)])
            times, targets, stages = [], [], []
            for t_cur, t_next in zip(grid[:-1].tolist(), grid[1:].tolist()):
                t_hat = t_cur + c.churn_step_ratio * (t_next - t_cur)
                if c.churn_step_ratio > 0:
                    times, targets, stages = times + [t_cur], targets + [t_hat], stages + ["sde"]
                times, targets, stages = times + [t_hat], targets + [t_next], stages + ["ode"]
                if t_next > 0:
                    times, targets, stages = times + [t_next], targets + [t_next], stages + ["heun"]
        else:
            cpu = {"dtype": torch.float64, "device": "cpu"}  # the plan is made on the host, once
            grid = torch.linspace(T - c.gamma, c.t_min, n, **cpu) if n > 1 else torch.tensor([c.t_min], **cpu)
            times, targets = [T] + grid[:-1].tolist(), grid.tolist()
            stages = ["boot"] + ["step"] * (n - 1)
        self.timesteps = torch.tensor(times, dtype=torch.float64, device=device)
        self._times, self._targets, self._stages = times, targets, stages
        self.num_inference_steps = n
        self._step_index = 0
        self._heun_state = None

    @property
    def step_index(self) -> int | None:
        return getattr(self, "_step_index", None)

    # ------------------------------------------------------------------------------------------ step

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        source: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float | None = None,
        return_dict: bool = True,
    ) -> BridgeSchedulerOutput | tuple:
        """Advance ``sample`` from ``timestep`` to the next planned time, given the raw network output.

        Args:
            model_output: network output ``F`` at ``(scale_model_input(sample, timestep), source)``.
            timestep: the current entry of ``timesteps``.
            sample: current state ``x_t`` (``source`` itself at the booting step).
            source: the bridge's terminal image ``y = x_T`` in [-1, 1].
            generator: one generator or one per sample.
            eta: overrides the configured ``eta``.
        """
        if self.timesteps is None:
            raise ValueError("Call `set_timesteps` before `step`.")
        if self._step_index >= len(self.timesteps):
            raise ValueError("All planned steps have been taken; call `set_timesteps` again.")
        eta = self.config.eta if eta is None else eta
        if not 0 <= eta <= 1:  # also refuses NaN
            raise ValueError(f"`eta` must be in [0, 1], got {eta}.")
        if model_output.shape != sample.shape or source.shape != sample.shape:
            raise ValueError(f"`model_output`, `sample` and `source` must have one shape, got {tuple(model_output.shape)}, "
                             f"{tuple(sample.shape)}, {tuple(source.shape)}.")
        i, t = self._step_index, self._times[self._step_index]
        if torch.is_tensor(timestep) and timestep.device.type != "cpu":  # checked without waiting for the device
            torch._assert_async((timestep - t).abs().max() <= 1e-9 * max(1.0, t), "`timestep` is not the planned time.")
        elif abs(float(timestep) - t) > 1e-9 * max(1.0, t):
            raise ValueError(f"`timestep` {float(timestep)} is not the planned time {t} of step {i}.")
        t_next, stage, last = self._targets[i], self._stages[i], i == len(self.timesteps) - 1
        x0 = self.precondition_outputs(sample, model_output, t)
        if self.config.clip_denoised:
            x0 = x0.clamp(-1, 1)

        if self.config.solver == "heun":
            prev = self._heun_step(stage, x0, t, t_next, sample, source, generator)
        elif self.config.solver == "consistency" and last:
            prev = x0
        else:
            prev = self._bridge_step(x0, t, t_next, sample, source, generator, eta, stage == "boot", last)
        self._step_index += 1
        if not return_dict:
            return (prev, x0)
        return BridgeSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def _noise(self, like, generator):
        return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    def _bridge_step(self, x0, s, t, x_s, y, generator, eta, boot, last):
        """DBIM step ``s -> t`` (DBIM Eq. 13 / CDBM Eq. 16 at ``eta=0``) with DBIM's or CDBM's noise level::

            x_t = a_t y + b_t x0 + sqrt(c_t^2 - omega^2) z_hat + omega eps,   z_hat = (x_s - a_s y - b_s x0) / c_s

        The booting step from ``s = T`` (where ``c_T = 0``) draws ``z_hat`` fresh: ``x_t ~ q(x_t | x0, y)``.
        On the last step the fresh noise ``omega eps`` is dropped but ``z_hat`` keeps the weight
        ``sqrt(c_t^2 - omega^2)``, as the official ``sample_dbim`` does (thu-ml/DiffusionBridge).
        """
        schedule = self.schedule
        a_t, b_t, c_t = (v.item() for v in schedule.abc(t))
        if boot:
            z_hat, omega = self._noise(x0, generator), 0.0
        else:
            a_s, b_s, c_s = (v.item() for v in schedule.abc(s))
            z_hat = (x_s.double() - a_s * y.double() - b_s * x0.double()) / c_s
            if self.config.solver == "dbim":
                _, _, rho_s, _ = schedule.alpha_rho(s)
                alpha_t, _, rho_t, _ = schedule.alpha_rho(t)
                omega = eta * (alpha_t * rho_t * (1 - rho_t**2 / rho_s**2).clamp_min(0).sqrt()).item()
            else:
                omega = eta * c_t
        x_t = a_t * y.double() + b_t * x0.double() + max(c_t**2 - omega**2, 0.0) ** 0.5 * z_hat
        if omega > 0 and not last:
            x_t = x_t + omega * self._noise(x0, generator).double()
        return x_t.to(x0.dtype)

    def _heun_step(self, stage, x0, t, t_next, x, y, generator):
        """DDBM's hybrid sampler: Euler-Maruyama on the reverse SDE, then Heun on the PF-ODE (DDBM Alg. 1)."""
        dt = t_next - t
        if stage == "sde":
            drift, g2 = self.schedule.pf_ode_drift(x, t, x0, y, stochastic=True)
            return x + drift * dt + self._noise(x, generator) * (abs(dt) * g2).sqrt().to(x.dtype)
        drift, _ = self.schedule.pf_ode_drift(x, t, x0, y)
        if stage == "ode":
            self._heun_state = (x, drift, dt)
            return x + drift * dt
        x_prev, drift_prev, dt_prev = self._heun_state
        return x_prev + 0.5 * (drift_prev + drift) * dt_prev
