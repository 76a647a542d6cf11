"""Training diffusion bridges (DDBM) and consistency bridges (CDBM: CBD distillation, CBT training)."""

from .bridge_config import BridgeConfig
from .bridge_trainer import BridgeTrainer
from .consistency_bridge_config import ConsistencyBridgeConfig
from .consistency_bridge_trainer import ConsistencyBridgeTrainer

__all__ = ["BridgeConfig", "BridgeTrainer", "ConsistencyBridgeConfig", "ConsistencyBridgeTrainer"]
