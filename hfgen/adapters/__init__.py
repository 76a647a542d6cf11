"""hfgen's side adapters: decoupled side networks over frozen encoders, saved as PEFT-style folders
(PEFT's file names and JSON layout; PEFT's own loaders refuse them with a message naming hfgen)."""

from hfgen._lazy import lazy_exports

_EXPORTS = {
    "SideAdapterConfig": "side_adapter",
    "SideAdapterModel": "side_adapter",
    "SideAdapterOutput": "side_adapter",
    "IISANConfig": "iisan",
    "IISANModel": "iisan",
    "BackboneItemEncoderConfig": "baselines",
    "BackboneItemEncoder": "baselines",
    "CROSSANConfig": "crossan",
    "CROSSANModel": "crossan",
    "DFNConfig": "dfn",
    "DFNModel": "dfn",
    "DFNOutput": "dfn",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
