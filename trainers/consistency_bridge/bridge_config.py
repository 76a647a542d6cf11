"""Configs for diffusion-bridge training (DDBM) and consistency-bridge training / distillation (CDBM)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.guards import check_numeric_fields
from hfgen.pipelines.consistency_bridge.bridges import BRIDGE_SCHEDULES

from ..options import TRAINING_ARGUMENTS_OPTIONS

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
BRIDGE_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(refused={
    "remove_unused_columns": "it must stay False: the bridge trainers read the image columns (the model's signature does not name them)",
})


@dataclass
class BridgeConfig(TrainingArguments):
    r"""Arguments of [`BridgeTrainer`]: DDBM denoiser training on paired images ``(x_0, y)``.

    The loss is DDBM's ``E_t lambda(t) ||D(x_t, t, y) - x_0||^2`` with ``lambda = 1 / c_out^2`` and
    ``t ~ U[t_min, T]``, written as the unit-variance regression of the raw network output.

    Parameters:
        noise_schedule (`str`, *optional*, defaults to `"vp"`):
            Bridge reference SDE: 'vp' or 've'.
        beta_min (`float`, *optional*, defaults to `0.1`):
            VP schedule beta_min.
        beta_d (`float`, *optional*, defaults to `2.0`):
            VP schedule beta_d (beta_max = beta_min + beta_d).
        sigma_max (`float`, *optional*, defaults to `80.0`):
            Terminal time T of the VE schedule.
        t_min (`float`, *optional*, defaults to `0.0001`):
            Smallest training/sampling time (CDBM's epsilon).
        sigma_data (`float`, *optional*, defaults to `0.5`):
            Data std of the DDBM preconditioning.
        cov_xy (`float`, *optional*, defaults to `0.0`):
            Covariance of x_0 and y assumed by the DDBM preconditioning.
        source_column (`str`, *optional*, defaults to `"source"`):
            Data set column of the source image y = x_T.
        target_column (`str`, *optional*, defaults to `"target"`):
            Data set column of the target image x_0.
        save_safetensors (`bool`, *optional*, defaults to `True`):
            Always safetensors.
    """

    noise_schedule: str = field(default="vp", metadata={"help": "Bridge reference SDE: 'vp' or 've'."})
    beta_min: float = field(default=0.1, metadata={"help": "VP schedule beta_min."})
    beta_d: float = field(default=2.0, metadata={"help": "VP schedule beta_d (beta_max = beta_min + beta_d)."})
    sigma_max: float = field(default=80.0, metadata={"help": "Terminal time T of the VE schedule."})
    t_min: float = field(default=1e-4, metadata={"help": "Smallest training/sampling time (CDBM's epsilon)."})
    sigma_data: float = field(default=0.5, metadata={"help": "Data std of the DDBM preconditioning."})
    cov_xy: float = field(default=0.0, metadata={"help": "Covariance of x_0 and y assumed by the DDBM preconditioning."})
    source_column: str = field(default="source", metadata={"help": "Data set column of the source image y = x_T."})
    target_column: str = field(default="target", metadata={"help": "Data set column of the target image x_0."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the image columns (no model signature)."})
    save_safetensors: bool = field(default=True, metadata={"help": "Always safetensors."})

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        BRIDGE_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        if self.noise_schedule not in BRIDGE_SCHEDULES:
            raise ValueError(f"`noise_schedule` must be one of {BRIDGE_SCHEDULES}, got {self.noise_schedule!r}.")
        if self.t_min <= 0:
            raise ValueError(f"`t_min` must be > 0, got {self.t_min}.")
        if self.sigma_data <= 0 or abs(self.cov_xy) > self.sigma_data**2:
            raise ValueError(f"Need `sigma_data` > 0 and |`cov_xy`| <= sigma_data^2, got {self.sigma_data}, {self.cov_xy}.")
        super().__post_init__()

    def scheduler_kwargs(self, **overrides) -> dict:
        """Arguments of the matching [`BridgeScheduler`]."""
        kwargs = dict(
            noise_schedule=self.noise_schedule, beta_min=self.beta_min, beta_d=self.beta_d, sigma_max=self.sigma_max,
            t_min=self.t_min, sigma_data=self.sigma_data, cov_xy=self.cov_xy,
        )
        return {**kwargs, **overrides}


@dataclass
class ConsistencyBridgeConfig(BridgeConfig):
    r"""Arguments of [`ConsistencyBridgeTrainer`] (CDBM, arXiv 2410.22637, Sec. 3.4).

    ``mode="distillation"`` (CBD, Eq. 17) makes the target input with one first-order ODE step of a
    DDBM teacher from ``x_t`` to ``r``; ``mode="training"`` (CBT, Eq. 19-20) uses the teacher-free
    estimate ``x_r = a_r y + b_r x_0 + c_r z`` with the noise ``z`` of ``x_t``. The loss is
    ``lambda(t) d(h_theta(x_t, t, y), h_target(x_r, r, y))`` with ``t ~ U[t_min, T - gamma]``.

    Parameters:
        mode (`str`, *optional*, defaults to `"training"`):
            'training' (CBT) or 'distillation' (CBD, needs a teacher).
        gamma (`float`, *optional*, defaults to `0.001`):
            The consistency function lives on [t_min, T - gamma].
        time_schedule (`str`, *optional*, defaults to `"sigmoid"`):
            r(t): 'constant' (r = t - delta_t, lambda = 1) or 'sigmoid' (ECT-style shrinking gap, t - r = t
            (1 + k sigmoid(-b t)) / q^(stage + 1), lambda = 1 / (t - r)).
        delta_t (`float`, *optional*, defaults to `0.03333333333333333`):
            Gap t - r of the 'constant' schedule, in bridge time.
        sigmoid_b (`float`, *optional*, defaults to `20.0`):
            b of the 'sigmoid' schedule (CDBM: 1..50; 20 or 50 for CBT).
        sigmoid_k (`float`, *optional*, defaults to `8.0`):
            k of the 'sigmoid' schedule (ECT default 8).
        sigmoid_q (`float`, *optional*, defaults to `2.0`):
            Gap shrink factor per stage of the 'sigmoid' schedule.
        stage_steps (`int`, *optional*, defaults to `1000`):
            Optimizer steps per stage of the 'sigmoid' schedule.
        target_network (`str`, *optional*, defaults to `"stopgrad"`):
            'stopgrad' (same weights, no grad) or 'ema'.
        target_ema_decay (`float`, *optional*, defaults to `0.999`):
            EMA decay of the target when target_network='ema'.
        distance (`str`, *optional*, defaults to `"l2"`):
            'l2' (mean squared error) or 'pseudo_huber'.
        huber_c (`float | None`, *optional*, defaults to `None`):
            Pseudo-Huber c; default 0.00054 * sqrt(dimension) as in iCT.
    """

    mode: str = field(default="training", metadata={"help": "'training' (CBT) or 'distillation' (CBD, needs a teacher)."})
    gamma: float = field(default=1e-3, metadata={"help": "The consistency function lives on [t_min, T - gamma]."})
    time_schedule: str = field(
        default="sigmoid",
        metadata={"help": "r(t): 'constant' (r = t - delta_t, lambda = 1) or 'sigmoid' (ECT-style shrinking gap, "
                  "t - r = t (1 + k sigmoid(-b t)) / q^(stage + 1), lambda = 1 / (t - r))."},
    )
    delta_t: float = field(default=1 / 30, metadata={"help": "Gap t - r of the 'constant' schedule, in bridge time."})
    sigmoid_b: float = field(default=20.0, metadata={"help": "b of the 'sigmoid' schedule (CDBM: 1..50; 20 or 50 for CBT)."})
    sigmoid_k: float = field(default=8.0, metadata={"help": "k of the 'sigmoid' schedule (ECT default 8)."})
    sigmoid_q: float = field(default=2.0, metadata={"help": "Gap shrink factor per stage of the 'sigmoid' schedule."})
    stage_steps: int = field(default=1000, metadata={"help": "Optimizer steps per stage of the 'sigmoid' schedule."})
    target_network: str = field(default="stopgrad", metadata={"help": "'stopgrad' (same weights, no grad) or 'ema'."})
    target_ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the target when target_network='ema'."})
    distance: str = field(default="l2", metadata={"help": "'l2' (mean squared error) or 'pseudo_huber'."})
    huber_c: float | None = field(
        default=None, metadata={"help": "Pseudo-Huber c; default 0.00054 * sqrt(dimension) as in iCT."}
    )

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        if self.mode not in ("training", "distillation"):
            raise ValueError(f"`mode` must be 'training' or 'distillation', got {self.mode!r}.")
        if self.time_schedule not in ("constant", "sigmoid"):
            raise ValueError(f"`time_schedule` must be 'constant' or 'sigmoid', got {self.time_schedule!r}.")
        if self.target_network not in ("stopgrad", "ema"):
            raise ValueError(f"`target_network` must be 'stopgrad' or 'ema', got {self.target_network!r}.")
        if self.distance not in ("l2", "pseudo_huber"):
            raise ValueError(f"`distance` must be 'l2' or 'pseudo_huber', got {self.distance!r}.")
        if self.gamma <= 0 or self.delta_t <= 0:
            raise ValueError(f"`gamma` and `delta_t` must be > 0, got {self.gamma}, {self.delta_t}.")
        if not 0 <= self.target_ema_decay < 1:
            raise ValueError(f"`target_ema_decay` must be in [0, 1), got {self.target_ema_decay}.")
        if self.sigmoid_q <= 1 or self.stage_steps < 1:
            raise ValueError(f"Need `sigmoid_q` > 1 and `stage_steps` >= 1, got {self.sigmoid_q}, {self.stage_steps}.")
        super().__post_init__()

    def scheduler_kwargs(self, **overrides) -> dict:
        return {**super().scheduler_kwargs(gamma=self.gamma, solver="consistency", eta=1.0), **overrides}
