"""hfgen's Diffusers pipelines, schedulers and their models, one folder a method (``hfgen.pipelines.gft``, ...).

The exports are every component of hfgen's method manifests (``hfgen/methods/<name>.py``) that lives here,
imported on first use, and the public base of every pipeline, hfgen's and a plugin's: [`HfgenPipelineMixin`]
(``from hfgen.pipelines import HfgenPipelineMixin``).
"""

from hfgen._lazy import lazy_exports
from hfgen.methods import package_exports

BASE = {"HfgenPipelineMixin": "hfgen.hub.mixins"}

__getattr__, __dir__ = lazy_exports(__name__, lambda: {**package_exports(__name__), **BASE})
__all__ = sorted({**package_exports(__name__), **BASE})
