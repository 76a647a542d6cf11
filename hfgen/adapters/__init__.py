"""hfgen's side adapters: decoupled side networks over frozen encoders, saved as PEFT-style folders
(PEFT's file names and JSON layout; PEFT's own loaders refuse them with a message naming hfgen).

The exports are every component of hfgen's method manifests (``hfgen/methods/<name>.py``) that lives here,
imported on first use, and the public base of every side adapter, hfgen's and a plugin's: [`SideAdapterConfig`],
[`SideAdapterModel`] and [`SideAdapterOutput`] (``from hfgen.adapters import SideAdapterModel``).
"""

from hfgen._lazy import lazy_exports
from hfgen.methods import package_exports

BASE = {"SideAdapterConfig": "side_adapter", "SideAdapterModel": "side_adapter", "SideAdapterOutput": "side_adapter"}

__getattr__, __dir__ = lazy_exports(__name__, lambda: {**package_exports(__name__), **BASE})
__all__ = sorted({**package_exports(__name__), **BASE})
