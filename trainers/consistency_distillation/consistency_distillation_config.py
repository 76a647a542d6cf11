"""Config of consistency trajectory distillation (CTM, arXiv 2310.02279) with Analytic-Precond (arXiv 2502.02922)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.pipelines.consistency_trajectory.scheduling_consistency_trajectory import LONG_JUMPS, PRECONDITIONINGS
from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS

HEUN_STEP_STRATEGIES = ("weighted", "uniform")

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
CONSISTENCY_DISTILLATION_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(refused={
    "remove_unused_columns": "it must stay False: the trainer reads the data column (the model's signature does not name it)",
})


@dataclass
class ConsistencyDistillationConfig(TrainingArguments):
    r"""Arguments of [`ConsistencyDistillationTrainer`].

    Times ``t > u >= s`` are drawn on the ``num_discretization_steps``-interval Karras grid (``u`` the
    grid point ``h`` steps after ``t``, ``s`` uniform among ``u`` and the later ones); the loss is
    ``||G_theta(x_t, t, s) - G_sg(Heun_phi^h(x_t, t -> u), u, s)||^2``. ``preconditioning`` picks the outer
    scalings ``(f, g)`` of ``G``; ``"analytic"`` estimates the teacher statistics ``l_t`` (and the trend ``s_t``)
    on a grid first.

    The defaults give the simple host (``h = 1``, the distance taken at ``s``). CTM's own host (sony/ctm
    ``ctm_losses``, CIFAR-10 defaults in brackets) is ``heun_steps_max=num_discretization_steps`` [17: every
    interval of its 18-point grid] with
    ``heun_step_strategy="weighted"``, ``map_to_sigma_min=True``, ``target_ema_decay=0.999`` and
    ``dsm_weight > 0`` [1, balanced adaptively there; a fixed weight here].

    Parameters:
        preconditioning (`str`, *optional*, defaults to `"analytic"`):
            Outer scalings of G: one of ('euler', 'variance', 'analytic').
        sigma_min (`float`, *optional*, defaults to `0.002`):
            Smallest time of the EDM PF-ODE.
        sigma_max (`float`, *optional*, defaults to `80.0`):
            Largest time of the EDM PF-ODE.
        sigma_data (`float`, *optional*, defaults to `0.5`):
            Data std of the EDM scalings.
        rho (`float`, *optional*, defaults to `7.0`):
            Karras grid exponent.
        num_discretization_steps (`int`, *optional*, defaults to `18`):
            Intervals N of the training Karras grid (CTM: 18 on CIFAR-10).
        statistics_grid_size (`int`, *optional*, defaults to `120`):
            Log-spaced times on which l_t is estimated (paper: 120).
        statistics_samples (`int`, *optional*, defaults to `1024`):
            Data samples per statistics time (paper: 4096).
        statistics_probes (`int`, *optional*, defaults to `1`):
            Hutchinson probes per sample for tr(grad D).
        estimate_trend (`bool`, *optional*, defaults to `False`):
            Also estimate the trend s_t of g_phi = D_phi - l_t x along the teacher ODE (default: s_t = 0;
            the least-squares s_t inflates g(t, s) by orders of magnitude on intermediate jumps, see the
            results doc).
        long_jump (`str`, *optional*, defaults to `"forward"`):
            Analytic coefficients of jumps with t/s > long_jump_ratio: one of ('forward', 'euler',
            'implicit').
        long_jump_ratio (`float`, *optional*, defaults to `10.0`):
            The t/s above which `long_jump` applies.
        statistics_path (`str | None`, *optional*, defaults to `None`):
            A saved `teacher_statistics.safetensors` to reuse instead of estimating (checked against the
            teacher).
        heun_steps_max (`int`, *optional*, defaults to `1`):
            Most teacher Heun steps ``h`` from ``t`` to ``u``, drawn once per batch (CTM: ``num_heun_step``).
        heun_step_strategy (`str`, *optional*, defaults to `"weighted"`):
            How ``h`` is drawn from 1..heun_steps_max: 'weighted' (p(h) proportional to h, CTM's default) or
            'uniform'.
        map_to_sigma_min (`bool`, *optional*, defaults to `False`):
            Map both sides from ``s`` to ``sigma_min`` with the target network before the distance (CTM).
        target_ema_decay (`float`, *optional*, defaults to `0.0`):
            Decay of the target network of that map (an EMA of the student, CTM: 0.999); 0: the current weights
            (stop-gradient).
        dsm_weight (`float`, *optional*, defaults to `0.0`):
            Weight of CTM's denoising score matching term on ``D_theta(x_t, t, t)`` (Karras weighting, CTM's
            half log-normal / half Karras-grid noise levels); 0 switches it off.
        data_column (`str`, *optional*, defaults to `"sample"`):
            Data set column of the data x_0.
        sampler_gamma (`float`, *optional*, defaults to `0.0`):
            Re-noising gamma of the saved pipeline's scheduler.
        save_safetensors (`bool`, *optional*, defaults to `True`):
            Always safetensors.
    """

    preconditioning: str = field(
        default="analytic", metadata={"help": f"Outer scalings of G: one of {PRECONDITIONINGS}."}
    )
    sigma_min: float = field(default=0.002, metadata={"help": "Smallest time of the EDM PF-ODE."})
    sigma_max: float = field(default=80.0, metadata={"help": "Largest time of the EDM PF-ODE."})
    sigma_data: float = field(default=0.5, metadata={"help": "Data std of the EDM scalings."})
    rho: float = field(default=7.0, metadata={"help": "Karras grid exponent."})
    num_discretization_steps: int = field(
        default=18, metadata={"help": "Intervals N of the training Karras grid (CTM: 18 on CIFAR-10)."}
    )
    statistics_grid_size: int = field(
        default=120, metadata={"help": "Log-spaced times on which l_t is estimated (paper: 120)."}
    )
    statistics_samples: int = field(default=1024, metadata={"help": "Data samples per statistics time (paper: 4096)."})
    statistics_probes: int = field(default=1, metadata={"help": "Hutchinson probes per sample for tr(grad D)."})
    estimate_trend: bool = field(
        default=False,
        metadata={
            "help": "Also estimate the trend s_t of g_phi = D_phi - l_t x along the teacher ODE (default: s_t = 0; the "
            "least-squares s_t inflates g(t, s) by orders of magnitude on intermediate jumps, see the results doc)."
        },
    )
    long_jump: str = field(
        default="forward",
        metadata={"help": f"Analytic coefficients of jumps with t/s > long_jump_ratio: one of {LONG_JUMPS}."},
    )
    long_jump_ratio: float = field(default=10.0, metadata={"help": "The t/s above which `long_jump` applies."})
    statistics_path: str | None = field(
        default=None,
        metadata={
            "help": "A saved `teacher_statistics.safetensors` to reuse instead of estimating (checked against the teacher)."
        },
    )
    heun_steps_max: int = field(
        default=1,
        metadata={"help": "Most teacher Heun steps h from t to u, drawn once per batch (CTM: num_heun_step)."},
    )
    heun_step_strategy: str = field(
        default="weighted",
        metadata={"help": f"How h is drawn from 1..heun_steps_max: one of {HEUN_STEP_STRATEGIES} ('weighted': "
                          "p(h) proportional to h, CTM's default)."},
    )
    map_to_sigma_min: bool = field(
        default=False,
        metadata={"help": "Map both sides from s to sigma_min with the target network before the distance (CTM)."},
    )
    target_ema_decay: float = field(
        default=0.0,
        metadata={"help": "Decay of the target network of that map (an EMA of the student, CTM: 0.999); 0: the "
                          "current weights (stop-gradient)."},
    )
    dsm_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of CTM's denoising score matching term on D_theta(x_t, t, t); 0 switches it off."},
    )
    data_column: str = field(default="sample", metadata={"help": "Data set column of the data x_0."})
    sampler_gamma: float = field(default=0.0, metadata={"help": "Re-noising gamma of the saved pipeline's scheduler."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the data column (no model signature)."})
    save_safetensors: bool = field(default=True, metadata={"help": "Always safetensors."})

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        CONSISTENCY_DISTILLATION_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        if self.preconditioning not in PRECONDITIONINGS:
            raise ValueError(f"`preconditioning` must be one of {PRECONDITIONINGS}, got {self.preconditioning!r}.")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"Need 0 < `sigma_min` < `sigma_max`, got {self.sigma_min}, {self.sigma_max}.")
        if self.sigma_data <= 0:
            raise ValueError(f"`sigma_data` must be > 0, got {self.sigma_data}.")
        if self.num_discretization_steps < 2:
            raise ValueError(f"`num_discretization_steps` must be >= 2, got {self.num_discretization_steps}.")
        if self.statistics_grid_size < 2 or self.statistics_samples < 1 or self.statistics_probes < 1:
            raise ValueError(
                "Need `statistics_grid_size` >= 2, `statistics_samples` >= 1 and `statistics_probes` >= 1, got "
                f"{self.statistics_grid_size}, {self.statistics_samples}, {self.statistics_probes}."
            )
        if self.long_jump not in LONG_JUMPS:
            raise ValueError(f"`long_jump` must be one of {LONG_JUMPS}, got {self.long_jump!r}.")
        if not self.long_jump_ratio >= 1:
            raise ValueError(f"`long_jump_ratio` must be >= 1, got {self.long_jump_ratio}.")
        if not 1 <= self.heun_steps_max <= self.num_discretization_steps:
            raise ValueError(
                f"`heun_steps_max` must lie in [1, num_discretization_steps={self.num_discretization_steps}], got "
                f"{self.heun_steps_max}."
            )
        if self.heun_step_strategy not in HEUN_STEP_STRATEGIES:
            raise ValueError(
                f"`heun_step_strategy` must be one of {HEUN_STEP_STRATEGIES}, got {self.heun_step_strategy!r}."
            )
        if not 0 <= self.target_ema_decay < 1:
            raise ValueError(f"`target_ema_decay` must lie in [0, 1), got {self.target_ema_decay}.")
        if self.target_ema_decay > 0 and not self.map_to_sigma_min:
            raise ValueError("`target_ema_decay` > 0 needs `map_to_sigma_min=True` (the target network maps to sigma_min).")
        if not self.dsm_weight >= 0:
            raise ValueError(f"`dsm_weight` must be >= 0, got {self.dsm_weight}.")
        if not 0 <= self.sampler_gamma <= 1:
            raise ValueError(f"`sampler_gamma` must be in [0, 1], got {self.sampler_gamma}.")
        super().__post_init__()

    def scheduler_kwargs(self) -> dict:
        """Arguments of the matching [`ConsistencyTrajectoryScheduler`] (without statistics)."""
        return dict(
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            sigma_data=self.sigma_data,
            rho=self.rho,
            preconditioning=self.preconditioning,
            gamma=self.sampler_gamma,
            long_jump=self.long_jump,
            long_jump_ratio=self.long_jump_ratio,
        )
