"""Consistency diffusion bridge models (CDBM, arXiv 2410.22637) and their DDBM/DBIM teachers."""

from .pipeline_consistency_bridge import BridgePipelineOutput, ConsistencyBridgePipeline
from .scheduling_bridge import BridgeScheduler, BridgeSchedulerOutput

__all__ = ["BridgePipelineOutput", "BridgeScheduler", "BridgeSchedulerOutput", "ConsistencyBridgePipeline"]
