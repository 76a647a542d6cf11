"""Register hfgen's transformers models with ``AutoConfig`` / ``AutoModel*`` without importing them at ``import hfgen``.

``import hfgen`` must stay cheap (``hfgen list`` imports no torch), yet ``AutoConfig`` / ``AutoModel``
``.from_pretrained(folder)`` of a saved hfgen model must work after a plain ``import hfgen``. So ``import hfgen``
only makes transformers' ``CONFIG_MAPPING`` aware of hfgen's ``model_type`` names: the first time one of them is
looked up (which every Auto class does first), its module below is imported and registers itself (each ends
with ``AutoConfig.register`` / ``AutoModel*.register``). If transformers' Auto module is not imported yet, a
one-shot import hook does this right after it is. Nothing is imported while transformers itself is importing
(its Auto modules import each other), only at a lookup.

Diffusers models (e.g. ``TrajectoryMLP``) are not here: ``diffusers.AutoModel`` resolves only classes that
Diffusers itself defines (or remote code, which hfgen never uses); load them with their own class's
``from_pretrained`` or ``hfgen.load``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading

# model_type -> module whose import registers (config, model) with transformers' Auto classes
AUTO_MODULES = {
    "hfgen_mf2": "hfgen.models.mf2",  # AutoConfig + AutoModel
    "hfgen_sasrec": "hfgen.models.sasrec",  # AutoConfig + AutoModel
    "hfgen_popularity": "hfgen.pipelines.popcorn.modeling_popularity",  # AutoConfig + AutoModel
    "hfgen_gft_causal_lm": "hfgen.pipelines.gft.modeling_gft",  # AutoConfig + AutoModelForCausalLM
    "hfgen_mdlm_dit": "hfgen.models.mdlm_dit",  # AutoConfig + AutoModelForMaskedLM
}
TRIGGER = "transformers.models.auto.configuration_auto"

_lock = threading.Lock()
_registered: set[str] = set()


def register_auto_classes(model_type: str | None = None) -> None:
    """Import the module of ``model_type`` (all of [`AUTO_MODULES`] when ``None``); each registers its classes."""
    for key in [model_type] if model_type is not None else list(AUTO_MODULES):
        with _lock:
            if key in _registered:
                continue
            _registered.add(key)
        importlib.import_module(AUTO_MODULES[key])


def _make_aware(config_mapping) -> None:
    """Let ``config_mapping`` (transformers' ``CONFIG_MAPPING``) register hfgen's classes on a lookup of their name."""
    base = type(config_mapping)
    if getattr(base, "_hfgen_aware", False):
        return

    class HfgenAwareConfigMapping(base):
        _hfgen_aware = True

        def __getitem__(self, key):
            if key in AUTO_MODULES:
                register_auto_classes(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            if key in AUTO_MODULES:
                register_auto_classes(key)
            return super().__contains__(key)

    config_mapping.__class__ = HfgenAwareConfigMapping


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; for [`TRIGGER`], wraps the real loader to patch ``CONFIG_MAPPING`` after it runs."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TRIGGER:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one shot, and lets the real finders answer below
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            _make_aware(module.CONFIG_MAPPING)

        spec.loader.exec_module = exec_then_patch
        return spec


def install() -> None:
    """Called by ``import hfgen``: patch transformers' ``CONFIG_MAPPING`` now if it is loaded, else when it is."""
    if TRIGGER in sys.modules:
        _make_aware(sys.modules[TRIGGER].CONFIG_MAPPING)
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
