"""hfgen's own methods: one manifest a module, ``hfgen/methods/<name>.py``, holding ``METHOD`` (a [`MethodInfo`]).

The manifests are the single list of hfgen's methods. Everything else is derived from them: the ``hfgen.methods``
entry points in ``setup.py`` (one per module of this folder), the lazy exports of ``hfgen.trainers``,
``hfgen.pipelines`` and ``hfgen.adapters`` ([`package_exports`]), the model types that transformers' Auto classes
find after ``import hfgen`` ([`auto_model_modules`]), the kinds of ``hfgen convert`` ([`converters`]), the order of
``docs/results.md``, the README zoo table and the reliability tests' builders (each checked by a test). Manifests hold
strings only, so reading them is cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from hfgen.registry import Converter, MethodInfo


def manifest_names() -> list[str]:
    """The module names of this folder (one a method), sorted; modules starting with ``_`` are not manifests."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def builtin_methods() -> list[MethodInfo]:
    """hfgen's own manifests in zoo order (``position``, then name)."""
    infos = [importlib.import_module(f"{__name__}.{name}").METHOD for name in manifest_names()]
    return sorted(infos, key=lambda info: (info.position, info.name))


def installed_methods() -> list[MethodInfo]:
    """hfgen's own manifests (zoo order), then every other registered method (plugins, ``register``) by name."""
    from hfgen.registry import list_methods

    own = builtin_methods()
    names = {info.name for info in own}
    return own + [info for info in list_methods() if info.name not in names]


def package_exports(package: str, methods: Iterable[MethodInfo] | None = None) -> dict[str, str]:
    """``{public name: submodule}`` of every component of ``methods`` (hfgen's manifests) that lives under ``package``.

    ``package_exports("hfgen.trainers")`` maps ``"NFTTrainer"`` to ``"nft.nft_trainer"``.
    """
    exports = {}
    for info in builtin_methods() if methods is None else methods:
        for name in info.components:
            module = info.component_module(name)
            if module.startswith(package + "."):
                exports[name] = module[len(package) + 1 :]
    return exports


def auto_model_modules(methods: Iterable[MethodInfo] | None = None) -> dict[str, str]:
    """``{model_type: module}`` of the ``auto_models`` of ``methods`` (hfgen's manifests): importing the module
    registers the type with transformers' Auto classes. The first method naming a type wins."""
    modules: dict[str, str] = {}
    for info in builtin_methods() if methods is None else methods:
        for model_type, cls_name in info.auto_models.items():
            modules.setdefault(model_type, info.component_module(cls_name))
    return modules


def converters(methods: Iterable[MethodInfo] | None = None) -> dict[str, Converter]:
    """``{kind: Converter}`` of the ``converters`` of ``methods`` (default: every installed method, hfgen's first,
    so a plugin cannot take over one of hfgen's kinds)."""
    table: dict[str, Converter] = {}
    for info in installed_methods() if methods is None else methods:
        for kind, converter in info.converters.items():
            table.setdefault(kind, converter)
    return table
