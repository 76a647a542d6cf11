"""Consistency trajectory distillation with Euler (CTM), variance or analytic (Analytic-Precond) preconditioning."""

from .consistency_distillation_config import ConsistencyDistillationConfig
from .consistency_distillation_trainer import (
    ConsistencyDistillationTrainer,
    load_teacher_statistics,
    teacher_fingerprint,
)

__all__ = [
    "ConsistencyDistillationConfig",
    "ConsistencyDistillationTrainer",
    "load_teacher_statistics",
    "teacher_fingerprint",
]
