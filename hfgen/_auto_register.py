"""Register hfgen's transformers models with the Auto classes without importing transformers at ``import hfgen``.

``import hfgen`` must stay cheap, yet ``AutoModelForMaskedLM.from_pretrained(folder)`` on a folder with
``model_type="hfgen_mdlm_dit"`` must work after it. So: if transformers' auto models are already imported,
register now; else register right after transformers' ``configuration_auto`` or ``modeling_auto`` is first imported
(a one-shot import hook that wraps that module's loader).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

TRIGGERS = ("transformers.models.auto.configuration_auto", "transformers.models.auto.modeling_auto")
MODULES = ("hfgen.models.mdlm_dit",)


def register_now() -> None:
    for name in MODULES:
        importlib.import_module(name)


class _RegisterAfterAutoImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in TRIGGERS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            register_now()

        spec.loader.exec_module = exec_and_register
        return spec


def install() -> None:
    if any(name in sys.modules for name in TRIGGERS):
        register_now()
    elif not any(isinstance(f, _RegisterAfterAutoImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterAutoImport())
