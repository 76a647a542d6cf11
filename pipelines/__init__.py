"""hfgen's Diffusers pipelines, schedulers and their models, one folder a method (``hfgen.pipelines.gft``, ...).

The exports are every component of hfgen's method manifests (``hfgen/methods/<name>.py``) that lives here,
imported on first use.
"""

from hfgen._lazy import lazy_exports
from hfgen.methods import package_exports

__getattr__, __dir__ = lazy_exports(__name__, lambda: package_exports(__name__))
__all__ = sorted(package_exports(__name__))
