"""Consistency trajectory models with Euler, variance or analytic (Analytic-Precond) preconditioning."""

from .modeling_trajectory_mlp import TrajectoryMLP, TrajectoryMLPOutput
from .pipeline_consistency_trajectory import ConsistencyTrajectoryPipeline, ConsistencyTrajectoryPipelineOutput
from .scheduling_consistency_trajectory import (
    LONG_JUMPS,
    PRECONDITIONINGS,
    AnalyticTables,
    ConsistencyTrajectoryScheduler,
    ConsistencyTrajectorySchedulerOutput,
    estimate_linear_statistic,
    estimate_trend_statistic,
    outer_scalings,
)

__all__ = [
    "LONG_JUMPS",
    "PRECONDITIONINGS",
    "AnalyticTables",
    "ConsistencyTrajectoryPipeline",
    "ConsistencyTrajectoryPipelineOutput",
    "ConsistencyTrajectoryScheduler",
    "ConsistencyTrajectorySchedulerOutput",
    "TrajectoryMLP",
    "TrajectoryMLPOutput",
    "estimate_linear_statistic",
    "estimate_trend_statistic",
    "outer_scalings",
]
