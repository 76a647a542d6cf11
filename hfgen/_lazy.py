"""Lazy package exports (``from hfgen.trainers import NFTTrainer`` imports only the NFT module)."""

import importlib


def lazy_exports(package: str, exports=None):
    """Return ``__getattr__`` and ``__dir__`` for a package exporting ``name -> submodule`` (a module path starting
    with ``hfgen.`` is absolute).

    ``exports`` is a dict, or a function returning one, called at each lookup (so a manifest added at run time is
    seen; [`hfgen.methods.package_exports`] reads imported manifests only once each).
    """
    current = exports if callable(exports) else (lambda: exports)

    def __getattr__(name):
        table = current()
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = table[name] if table[name].startswith("hfgen.") else f"{package}.{table[name]}"
        value = getattr(importlib.import_module(module), name)
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__():
        return sorted(current())

    return __getattr__, __dir__
