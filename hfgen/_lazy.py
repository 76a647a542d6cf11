"""Lazy package exports (``from hfgen.trainers import NFTTrainer`` imports only the NFT module)."""

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """Return ``__getattr__`` and ``__dir__`` for a package exporting ``name -> submodule``."""

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value
        return value

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__
