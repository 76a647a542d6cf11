"""hfgen's own methods: one manifest a module, ``hfgen/methods/<name>.py``, holding ``METHOD`` (a [`MethodInfo`]).

The manifests are the single list of hfgen's methods. Everything else is derived from them: the ``hfgen.methods``
entry points in ``setup.py`` (one per module of this folder), the lazy exports of ``hfgen.trainers`` and
``hfgen.pipelines`` ([`package_exports`]), the order of ``docs/results.md``, the README zoo table and the
reliability tests' coverage (each checked by a test). Manifests hold strings only, so reading them is cheap.
"""

from __future__ import annotations

import importlib
import pkgutil

from hfgen.registry import MethodInfo


def manifest_names() -> list[str]:
    """The module names of this folder (one a method), sorted; modules starting with ``_`` are not manifests."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def builtin_methods() -> list[MethodInfo]:
    """hfgen's own manifests in zoo order (``position``, then name)."""
    infos = [importlib.import_module(f"{__name__}.{name}").METHOD for name in manifest_names()]
    return sorted(infos, key=lambda info: (info.position, info.name))


def package_exports(package: str) -> dict[str, str]:
    """``{public name: submodule}`` of every component of hfgen's manifests that lives under ``package``.

    ``package_exports("hfgen.trainers")`` maps ``"NFTTrainer"`` to ``"nft.nft_trainer"``.
    """
    exports = {}
    for info in builtin_methods():
        for name, target in info.components.items():
            module = target.partition(":")[0]
            if module.startswith(package + "."):
                exports[name] = module[len(package) + 1 :]
    return exports
