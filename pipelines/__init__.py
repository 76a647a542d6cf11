"""hfgen's Diffusers pipelines and schedulers, one folder a method (``hfgen.pipelines.masked_diffusion``, ...)."""

from hfgen._lazy import lazy_exports

_EXPORTS = {
    "MaskedDiffusionPipeline": "masked_diffusion.pipeline_masked_diffusion",
    "FirstHittingScheduler": "masked_diffusion.scheduling_first_hitting",
    "AncestralMaskedScheduler": "masked_diffusion.scheduling_ancestral_masked",
    "GuidanceFreePipeline": "gft.pipeline_guidance_free",
    "ConsistencyBridgePipeline": "consistency_bridge.pipeline_consistency_bridge",
    "BridgeScheduler": "consistency_bridge.scheduling_bridge",
    "ConsistencyTrajectoryPipeline": "consistency_trajectory.pipeline_consistency_trajectory",
    "ConsistencyTrajectoryScheduler": "consistency_trajectory.scheduling_consistency_trajectory",
    "PopcornPipeline": "popcorn.pipeline_popcorn",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
