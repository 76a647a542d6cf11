"""hfgen's TRL-style trainers and configs, one folder a method (``hfgen.trainers.nft``, ...).

The exports are every component of hfgen's method manifests (``hfgen/methods/<name>.py``) that lives here,
imported on first use, and the public base of every trainer, hfgen's and a plugin's: [`HfgenTrainerMixin`] and
[`check_args`] (``from hfgen.trainers import HfgenTrainerMixin, check_args``).
"""

from hfgen._lazy import lazy_exports
from hfgen.methods import package_exports

BASE = {"HfgenTrainerMixin": "base", "check_args": "base"}

__getattr__, __dir__ = lazy_exports(__name__, lambda: {**package_exports(__name__), **BASE})
__all__ = sorted({**package_exports(__name__), **BASE})
