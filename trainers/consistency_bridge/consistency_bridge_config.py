"""Config of consistency-bridge training and distillation (CDBM): [`ConsistencyBridgeConfig`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.validation import check_numeric_fields

from .bridge_config import BRIDGE_OPTIONS, BridgeConfig

__all__ = ["BRIDGE_OPTIONS", "ConsistencyBridgeConfig"]


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
