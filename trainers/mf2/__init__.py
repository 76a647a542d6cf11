"""MF^2 pretraining (arXiv 2504.10351): [`MF2Trainer`], [`MF2TrainingConfig`], [`MF2DataCollator`]."""

from .mf2_config import MF2TrainingConfig
from .mf2_trainer import MF2DataCollator, MF2Trainer

__all__ = ["MF2DataCollator", "MF2Trainer", "MF2TrainingConfig"]
