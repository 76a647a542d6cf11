"""Consistency trajectory distillation (CTM, arXiv 2310.02279) with Analytic-Precond (arXiv 2502.02922)."""

from __future__ import annotations

import hashlib
import math
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer

from hfgen.pipelines.consistency_trajectory import (
    AnalyticTables,
    ConsistencyTrajectoryPipeline,
    ConsistencyTrajectoryScheduler,
    estimate_linear_statistic,
    estimate_trend_statistic,
)
from hfgen.pipelines.consistency_trajectory.pipeline_consistency_trajectory import trajectory_network

from ..base import HfgenTrainerMixin, check_args
from ..utils import EMA, StepEndCallback, to_training_device
from .consistency_distillation_config import ConsistencyDistillationConfig

STATISTICS_FILE = "teacher_statistics.safetensors"


def teacher_fingerprint(teacher: torch.nn.Module) -> str:
    """SHA-256 of the teacher's parameters and buffers (names, shapes, bytes): ties statistics to one teacher."""
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_teacher_statistics(path: str, tables: AnalyticTables, fingerprint: str):
    save_file(
        {"log_t": tables.log_t, "l_t": tables.l, "s_t": tables.s}, path, metadata={"teacher_fingerprint": fingerprint}
    )


def load_teacher_statistics(path: str, teacher: torch.nn.Module | None = None) -> AnalyticTables:
    """Load saved statistics; with ``teacher``, raise if they were estimated for another teacher."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        saved = (f.metadata() or {}).get("teacher_fingerprint")
    if teacher is not None and saved != teacher_fingerprint(teacher):
        raise ValueError(f"The statistics in {path} were estimated for another teacher (fingerprint {saved}).")
    tensors = load_file(path)
    return AnalyticTables(tensors["log_t"], tensors["l_t"], tensors["s_t"])


class ConsistencyDistillationTrainer(HfgenTrainerMixin, Trainer):
    r"""Distil an EDM teacher denoiser ``D_phi(x, t)`` into a trajectory student (CTM, Sec. 4)::

        G_theta(x_t, t, s) = f(t, s) x_t + g(t, s) D_theta(x_t, t, s)
        D_theta = c_skip(t) x_t + c_out(t) F_theta(c_in(t) x_t, c_noise(t), c_noise(s))        (EDM scalings)

    Each step draws grid indices ``t = t_i``, ``u = t_{i+h}``, ``s = t_k`` (``k >= i + h``), ``x_t = x_0 + t z``,
    and minimises ``||G_theta(x_t, t, s) - G_sg(x_u, u, s)||^2`` with ``x_u`` ``h`` Heun steps of the teacher
    PF-ODE ``dx/dt = (x - D_phi(x, t)) / t`` (``h = 1`` by default; CTM draws ``h`` per batch); ``k = i + h``
    anchors ``G_theta`` to the teacher's solution because ``G(x_u, u, u) = x_u``. With ``map_to_sigma_min``
    both sides are first carried on to ``sigma_min`` by a target network ``G_{theta^-}(., s, sigma_min)``
    (gradients flow through its input, not its weights; ``theta^-`` an EMA of ``theta``), as CTM compares them;
    ``dsm_weight`` adds CTM's denoising term ``w(sigma) ||D_theta(x_sigma, sigma, sigma) - x_0||^2``.
    ``(f, g)`` are CTM's Euler scalings, the variance ones, or Analytic-Precond's,
    built from ``l_t = E tr(grad D_phi) / d`` and the trend ``s_t`` of ``g_phi = D_phi - l_t x`` along the
    teacher ODE, estimated on ``statistics_grid_size`` times before training (``estimate_trend=False``: ``s_t = 0``).
    CTM's GAN term and its LPIPS feature distance are not used (squared error instead).

    Args:
        model ([`TrajectoryMLP`] or [`UNet2DModel`] with ``class_embed_type="timestep"``): the student ``F_theta``.
        args ([`ConsistencyDistillationConfig`]).
        teacher (`torch.nn.Module`): the frozen EDM denoiser, called as ``teacher(x, sigma)`` with ``sigma`` a
            float or a ``(B,)`` tensor, returning ``D_phi(x, sigma)``.
        train_dataset: rows with ``args.data_column`` tensors (e.g. a `datasets.Dataset` in torch format).

    The output directory holds a [`ConsistencyTrajectoryPipeline`] (student in safetensors; the scheduler's
    config carries the statistics), ``teacher_statistics.safetensors`` and an hfgen model card.
    """

    _tag_names = ["hfgen", "hfgen-analytic-precond", "consistency-trajectory-models"]
    method_name = "analytic_precond"
    card_args = ("preconditioning", "num_discretization_steps", "statistics_grid_size", "statistics_samples",
                 "sigma_data", "learning_rate", "max_steps", "per_device_train_batch_size")

    def __init__(
        self,
        model,
        args: ConsistencyDistillationConfig,
        teacher: torch.nn.Module = None,
        train_dataset=None,
        eval_dataset=None,
        **kwargs,
    ):
        args = check_args(args, ConsistencyDistillationConfig)
        if teacher is None:
            raise ValueError("`teacher` (an EDM denoiser D(x, sigma)) is required.")
        # theta^- of the sigma_min map: an EMA updated after each optimizer step (decay 0: a copy of the weights)
        self._target = EMA(model, args.target_ema_decay) if args.map_to_sigma_min else None
        self.target_model = None if self._target is None else self._target.model
        if self._target is not None:
            kwargs["callbacks"] = [StepEndCallback(self.update_target), *(kwargs.get("callbacks") or [])]
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        if self.target_model is not None:
            self.target_model.to(args.device)
        self.teacher = to_training_device(teacher, args.device).eval().requires_grad_(False)
        self.statistics = None
        if args.preconditioning == "analytic":
            if args.statistics_path is not None:
                self.statistics = load_teacher_statistics(args.statistics_path, self.teacher)
            else:
                self.statistics = self.estimate_statistics(train_dataset)
        statistics = {}
        if self.statistics is not None:  # shipped in the scheduler config so that sampling uses the same (f, g)
            tables = self.statistics
            statistics = dict(
                statistics_log_t=tables.log_t.tolist(), statistics_l=tables.l.tolist(), statistics_s=tables.s.tolist()
            )
        self.trajectory_scheduler = ConsistencyTrajectoryScheduler(**args.scheduler_kwargs(), **statistics)
        self.grid = self.trajectory_scheduler.karras_sigmas(args.num_discretization_steps + 1)
        # (f, g) of every grid pair t_i >= t_k, computed once: a training step only indexes them, so every
        # preconditioning costs the same per iteration.
        n = len(self.grid)
        i, k = torch.triu_indices(n, n)
        f, g = self.trajectory_scheduler.outer_scalings(self.grid[i], self.grid[k])
        self.grid_f = torch.ones(n, n, dtype=torch.float64).index_put_((i, k), f).to(args.device)
        self.grid_g = torch.zeros(n, n, dtype=torch.float64).index_put_((i, k), g).to(args.device)

    @torch.no_grad()
    def estimate_statistics(self, dataset) -> AnalyticTables:
        """``l_t`` (Hutchinson JVPs) and, with ``estimate_trend``, ``s_t`` (one JVP along the ODE) on a log-spaced grid.

        Every grid time reuses the same ``x_0``, noise and probes (common random numbers), so the ``l`` table is
        a smooth function of ``t`` and its slope ``dl/dtau``, which ``s_t`` needs, is not swamped by noise.
        """
        args = self.args
        if dataset is None:
            raise ValueError("preconditioning='analytic' needs a `train_dataset` (or `statistics_path`).")
        data = torch.as_tensor(dataset[: args.statistics_samples][args.data_column]).to(args.device)
        log_t = torch.linspace(
            math.log(args.sigma_min), math.log(args.sigma_max), args.statistics_grid_size, dtype=torch.float64
        )
        times = log_t.exp().tolist()
        l_t = torch.stack(
            [
                estimate_linear_statistic(
                    self.teacher, data, t, args.statistics_probes, torch.Generator().manual_seed(args.seed)
                ).double().cpu()
                for t in times
            ]
        )
        if not args.estimate_trend:
            return AnalyticTables(log_t, l_t)
        dl_dtau = torch.gradient(l_t, spacing=(log_t,))[0]
        s_t = torch.stack(
            [
                estimate_trend_statistic(
                    self.teacher, data, t, lin.item(), dl.item(), torch.Generator().manual_seed(args.seed)
                ).cpu()
                for t, lin, dl in zip(times, l_t, dl_dtau)
            ]
        )
        return AnalyticTables(log_t, l_t, s_t)

    # ------------------------------------------------------------------------------------ the method

    def trajectory(self, model, x_t, t, s, scalings=None):
        """``G_theta(x_t, t, s)`` (``t``, ``s`` float64 ``(B,)``; ``scalings``: their ``(f, g)`` if precomputed)."""
        sched = self.trajectory_scheduler
        output = trajectory_network(model, sched.scale_model_input(x_t, t), sched.c_noise(t), sched.c_noise(s))
        return sched.precondition_outputs(x_t, output, t, s, scalings=scalings)

    def teacher_step(self, x_t, t, u):
        """One Heun step of ``dx/dt = (x - D_phi) / t`` from ``t`` to ``u`` (EDM Alg. 1)."""
        shape = (-1, *([1] * (x_t.ndim - 1)))
        t_, u_ = t.to(x_t).reshape(shape), u.to(x_t).reshape(shape)
        d = (x_t - self.teacher(x_t, t.to(x_t))) / t_
        x_euler = x_t + (u_ - t_) * d
        d_next = (x_euler - self.teacher(x_euler, u.to(x_t))) / u_
        return x_t + (u_ - t_) * (d + d_next) / 2

    def teacher_solve(self, x_t, i, h: int):
        """``h`` Heun steps along the training grid, from ``t_i`` to ``t_{i+h}`` (CTM's ``heun_solver``)."""
        for j in range(h):
            x_t = self.teacher_step(x_t, self.grid[i + j], self.grid[i + j + 1])
        return x_t

    def sample_heun_steps(self) -> int:
        """``h`` in 1..heun_steps_max, one per batch: p(h) proportional to h ('weighted') or uniform (CTM)."""
        h_max = self.args.heun_steps_max
        if h_max == 1:
            return 1
        weights = torch.arange(1, h_max + 1, dtype=torch.float64)
        if self.args.heun_step_strategy == "uniform":
            weights = torch.ones_like(weights)
        return int(torch.multinomial(weights, 1)) + 1

    def sample_indices(self, batch_size: int, h: int = 1):
        """Grid indices ``(i, k)`` of ``t = t_i``, ``s = t_k``: ``i`` uniform in ``[0, N - h]``, ``k`` uniform in
        ``[i + h, N]`` (CTM's ``sample_t`` / ``sample_s``, 'uniform')."""
        n = len(self.grid) - 1
        i = torch.randint(0, n - h + 1, (batch_size,))
        k = i + h + (torch.rand(batch_size) * (n - i - h + 1)).long().clamp_max(n - i - h)
        return i, k

    def sample_times(self, batch_size: int, h: int = 1):
        """Grid times ``(t, u, s)``: ``t = t_i``, ``u = t_{i+h}``, ``s = t_k`` (see [`sample_indices`])."""
        i, k = self.sample_indices(batch_size, h)
        return self.grid[i], self.grid[i + h], self.grid[k]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        x0 = inputs[self.args.data_column]
        h = self.sample_heun_steps()
        i, k = self.sample_indices(x0.shape[0], h)  # on the host, like the time grid
        t, u, s = self.grid[i], self.grid[i + h], self.grid[k]
        i_, k_ = i.to(self.grid_f.device), k.to(self.grid_f.device)  # one copy each, to index the (f, g) tables
        x_t = x0 + t.to(x0).reshape(-1, *([1] * (x0.ndim - 1))) * torch.randn_like(x0)
        prediction = self.trajectory(model, x_t, t, s, scalings=(self.grid_f[i_, k_], self.grid_g[i_, k_]))
        with torch.no_grad():
            x_u = self.teacher_solve(x_t, i, h)
            target = self.trajectory(model, x_u, u, s, scalings=(self.grid_f[i_ + h, k_], self.grid_g[i_ + h, k_]))
        if self.args.map_to_sigma_min:  # CTM: G_{theta^-}(., s, sigma_min) on both sides
            to_end, sigma_min = (self.grid_f[k_, -1], self.grid_g[k_, -1]), self.grid[-1].expand(len(k))
            prediction = self.trajectory(self.target_model, prediction, s, sigma_min, scalings=to_end)
            with torch.no_grad():
                target = self.trajectory(self.target_model, target, s, sigma_min, scalings=to_end)
        loss = torch.nn.functional.mse_loss(prediction, target)
        if self.args.dsm_weight > 0:
            loss = loss + self.args.dsm_weight * self.denoising_loss(model, x0)
        return (loss, None) if return_outputs else loss

    def dsm_sigmas(self, batch_size: int) -> torch.Tensor:
        """CTM's ``HalfLogNormalHalfUniformSampler``: half ``log sigma ~ N(-1.2, 1.2^2)``, half the Karras map of
        ``U[0, 0.7]`` (``diffusion_mult``), float64."""
        args, half = self.args, batch_size // 2
        log_normal = (-1.2 + 1.2 * torch.randn(half, dtype=torch.float64)).exp()
        r = 1 / args.rho
        ramp = torch.rand(batch_size - half, dtype=torch.float64) * 0.7
        karras = (args.sigma_max**r + ramp * (args.sigma_min**r - args.sigma_max**r)) ** args.rho
        return torch.cat([log_normal, karras])

    def denoising_loss(self, model, x0):
        """CTM's DSM term: ``mean w(sigma) ||D_theta(x_sigma, sigma, sigma) - x_0||^2`` per element, Karras weight
        ``w = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2``."""
        sigma = self.dsm_sigmas(x0.shape[0]).to(x0.device)
        shape = (-1, *([1] * (x0.ndim - 1)))
        x_sigma = x0 + sigma.to(x0).reshape(shape) * torch.randn_like(x0)
        ones, zeros = torch.ones_like(sigma), torch.zeros_like(sigma)
        denoised = self.trajectory(model, x_sigma, sigma, sigma, scalings=(zeros, ones))  # f = 0, g = 1: D_theta
        sd = self.args.sigma_data
        weight = ((sigma**2 + sd**2) / (sigma * sd) ** 2).to(x0).reshape(shape)
        return (weight * (denoised - x0) ** 2).mean()

    def update_target(self) -> None:
        """``theta^- <- d theta^- + (1 - d) theta`` after each optimizer step (``d = target_ema_decay``)."""
        self._target.update(self.accelerator.unwrap_model(self.model))

    def checkpointed_modules(self) -> dict[str, torch.nn.Module]:
        """The target network is training state: saved with each checkpoint and restored on resume."""
        return {} if self.target_model is None else {"ctm_target": self.target_model}

    # ---------------------------------------------------------------------------------------- saving

    def pipeline(self) -> ConsistencyTrajectoryPipeline:
        """The student as a sampling pipeline (shares the trainer's model and scheduler)."""
        return ConsistencyTrajectoryPipeline(
            denoiser=self.accelerator.unwrap_model(self.model), scheduler=self.trajectory_scheduler
        )

    def save_extras(self, output_dir: str) -> None:
        """The teacher statistics the student was trained with, next to it (with the teacher's fingerprint)."""
        if self.statistics is not None:
            save_teacher_statistics(
                os.path.join(output_dir, STATISTICS_FILE), self.statistics, teacher_fingerprint(self.teacher)
            )

    def card_tags(self) -> list[str]:
        return self._tag_names[2:]

    def card_vars(self) -> dict:
        return {"preconditioning": self.args.preconditioning}
