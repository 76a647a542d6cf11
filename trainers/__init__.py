"""hfgen's TRL-style trainers and configs, one folder a method (``hfgen.trainers.nft``, ...)."""

from hfgen._lazy import lazy_exports

_EXPORTS = {
    "NFTConfig": "nft.nft_config",
    "NFTTrainer": "nft.nft_trainer",
    "MaskedDiffusionConfig": "masked_diffusion.masked_diffusion_config",
    "MaskedDiffusionTrainer": "masked_diffusion.masked_diffusion_trainer",
    "GFTConfig": "gft.gft_config",
    "GFTTrainer": "gft.gft_trainer",
    "DDOConfig": "ddo.ddo_config",
    "DDOTrainer": "ddo.ddo_trainer",
    "ddo_self_play": "ddo.self_play",
    "BridgeConfig": "consistency_bridge.bridge_config",
    "BridgeTrainer": "consistency_bridge.bridge_trainer",
    "ConsistencyBridgeConfig": "consistency_bridge.bridge_config",
    "ConsistencyBridgeTrainer": "consistency_bridge.consistency_bridge_trainer",
    "ConsistencyDistillationConfig": "consistency_distillation.consistency_distillation_config",
    "ConsistencyDistillationTrainer": "consistency_distillation.consistency_distillation_trainer",
    "SequentialRecConfig": "sequential_rec.sequential_rec_config",
    "SequentialRecTrainer": "sequential_rec.sequential_rec_trainer",
    "MF2TrainingConfig": "mf2.mf2_config",
    "MF2Trainer": "mf2.mf2_trainer",
    "MF2DataCollator": "mf2.mf2_trainer",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
