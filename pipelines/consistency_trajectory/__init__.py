"""Consistency trajectory models with Euler, variance or analytic (Analytic-Precond) preconditioning."""

from .modeling_trajectory_mlp import TrajectoryMLP, TrajectoryMLPOutput
from .pipeline_consistency_trajectory import ConsistencyTrajectoryPipeline, ConsistencyTrajectoryPipelineOutput
from .scheduling_consistency_trajectory import (
    PRECONDITIONINGS,
    AnalyticTables,
    ConsistencyTrajectoryScheduler,
    ConsistencyTrajectorySchedulerOutput,
    estimate_linear_statistic,
    outer_scalings,
)

__all__ = [
    "PRECONDITIONINGS",
    "AnalyticTables",
    "ConsistencyTrajectoryPipeline",
    "ConsistencyTrajectoryPipelineOutput",
    "ConsistencyTrajectoryScheduler",
    "ConsistencyTrajectorySchedulerOutput",
    "TrajectoryMLP",
    "TrajectoryMLPOutput",
    "estimate_linear_statistic",
    "outer_scalings",
]
