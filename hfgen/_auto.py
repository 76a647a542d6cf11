"""Register hfgen's transformers models with ``AutoConfig`` / ``AutoModel*`` without importing them at ``import hfgen``.

``import hfgen`` must stay cheap (``hfgen list`` imports no torch), yet ``AutoConfig`` / ``AutoModel``
``.from_pretrained(folder)`` of a saved hfgen model must work after a plain ``import hfgen``. So ``import hfgen``
only makes transformers' ``CONFIG_MAPPING`` aware of the ``model_type`` names that the method manifests declare
(``MethodInfo.auto_models``: hfgen's own, then the installed plugins'): the first time one of them is looked up
(which every Auto class does first) and transformers does not know it yet, the module of the component it names is
imported and registers itself (each ends with ``AutoConfig.register`` / ``AutoModel*.register``). If transformers'
Auto module is not imported yet, a one-shot import hook does this right after it is. Nothing is imported while
transformers itself is importing (its Auto modules import each other), only at a lookup; the plugins' manifests are
read only for a name that neither transformers nor hfgen's manifests know.

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

TRIGGER = "transformers.models.auto.configuration_auto"

_lock = threading.Lock()
_registered: set[str] = set()


def auto_modules() -> dict[str, str]:
    """``{model_type: module}`` of every installed method's ``auto_models`` (hfgen's own win a clash)."""
    from hfgen.methods import auto_model_modules, installed_methods

    return auto_model_modules(installed_methods())


def module_for(model_type) -> str | None:
    """The module whose import registers ``model_type``: hfgen's manifests first, the plugins' only if needed."""
    from hfgen.methods import auto_model_modules

    if not isinstance(model_type, str):
        return None
    return auto_model_modules().get(model_type) or auto_modules().get(model_type)


def register_auto_classes(model_type: str) -> None:
    """Import the module that registers ``model_type`` with transformers' Auto classes (once)."""
    with _lock:
        if model_type in _registered:
            return
        _registered.add(model_type)
    module = module_for(model_type)
    if module is not None:
        importlib.import_module(module)


def _make_aware(config_mapping) -> None:
    """Let ``config_mapping`` (transformers' ``CONFIG_MAPPING``) register a declared type on a lookup of its name."""
    base = type(config_mapping)
    if getattr(base, "_hfgen_aware", False):
        return

    class HfgenAwareConfigMapping(base):
        _hfgen_aware = True

        def _register_unknown(self, key) -> bool:
            """Register ``key`` if a manifest declares it; True if that was tried now (then look it up again)."""
            if key in _registered or super().__contains__(key) or module_for(key) is None:
                return False
            register_auto_classes(key)
            return True

        def __getitem__(self, key):
            self._register_unknown(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            return super().__contains__(key) or (self._register_unknown(key) and super().__contains__(key))

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
