"""The method registry: every hfgen method, built in or third party, is an entry point.

A plugin distribution declares, in its own packaging metadata::

    [project.entry-points."hfgen.methods"]
    my_method = "my_pkg.hfgen_plugin:METHOD"

where ``METHOD`` is a [`MethodInfo`]. hfgen registers its own methods through its own
``setup.py`` in exactly this way. Entry points are read lazily, the first time a name is looked
up; a ``MethodInfo`` holds only strings, so listing methods imports no torch-heavy module, and
components are imported when someone asks for them ([`MethodInfo.load_component`]). A plugin
that fails to load is kept as a [`BrokenMethod`] with its error, and never hides the others.

Environment switches (modelled on pytest and lm-eval):

- ``HFGEN_DISABLE_PLUGIN_AUTOLOAD=1``: read only hfgen's own entry points;
- ``HFGEN_PLUGINS=pkg.mod,other.mod``: import these modules first (they may call [`register`]).
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "hfgen.methods"
COMPONENT_KINDS = ("trainer", "config", "pipeline", "scheduler", "model", "adapter", "metric")


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv_id: str
    citation: str = ""
    code_url: str | None = None

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}"


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about one method. Strings only, so it is cheap to import.

    Args:
        name: registry name (lowercase, ``[a-z0-9_]``), also the card template's and demo's name.
        summary: one line (at most 100 characters), printed by ``hfgen list``.
        paper: the paper the method implements.
        components: public class name -> ``"module.path:Object"``; resolved on demand.
        card_template: ``"package.module:file.md"`` of the Jinja model-card template.
        demo: ``"module.path:function"``; the function takes ``(output_dir, seed=0)`` and returns a
            [`hfgen.demos.DemoResult`].
        tags: extra Hub tags (``hfgen`` and ``hfgen-<name>`` are always added).
        pipeline_tag: the Hub ``pipeline_tag`` for artifacts of this method.
        cli: optional ``"module.path:function"``; the function receives the ``hfgen`` command's
            argparse subparsers and adds the method's own subcommand(s). Keep that module import-cheap.
        description: the longer account printed by ``hfgen info``.
        position: place in the zoo's tables (README, ``docs/results.md``); ties are ordered by name.
    """

    name: str
    summary: str
    paper: Paper
    components: dict[str, str] = field(default_factory=dict)
    card_template: str | None = None
    demo: str | None = None
    tags: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    cli: str | None = None
    status: str = "implemented"
    description: str = ""
    position: int = 1000

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"`name` must be lowercase letters, digits and '_', got {self.name!r}.")
        for cls_name, target in self.components.items():
            if ":" not in target:
                raise ValueError(f"component {cls_name!r} of {self.name!r} must be 'module:Object', got {target!r}.")

    @property
    def broken(self) -> bool:
        return False

    @property
    def hub_tags(self) -> list[str]:
        return ["hfgen", f"hfgen-{self.name.replace('_', '-')}", *self.tags]

    def load_component(self, cls_name: str) -> Any:
        if cls_name not in self.components:
            raise KeyError(
                f"Method {self.name!r} has no component {cls_name!r}; it provides: "
                f"{', '.join(sorted(self.components)) or '(none)'}."
            )
        return _import_object(self.components[cls_name])

    def load_demo(self) -> Callable[..., Any]:
        if self.demo is None:
            raise ValueError(f"Method {self.name!r} has no registered demo.")
        return _import_object(self.demo)


@dataclass(frozen=True)
class BrokenMethod:
    """A plugin entry point that could not be loaded; listed, never raised at listing time."""

    name: str
    target: str
    error: str
    distribution: str | None = None

    @property
    def broken(self) -> bool:
        return True

    @property
    def summary(self) -> str:
        return f"BROKEN: {self.error}"


def _import_object(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Registry:
    def __init__(self):
        self._lock = threading.RLock()
        self._methods: dict[str, MethodInfo | BrokenMethod] = {}
        self._discovered = False

    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for module in filter(None, os.environ.get("HFGEN_PLUGINS", "").split(",")):
                try:
                    importlib.import_module(module.strip())
                except Exception as err:  # reported, never fatal
                    self._methods.setdefault(module, BrokenMethod(module, module, _describe(err)))
            only_builtin = os.environ.get("HFGEN_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")
            eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (not _is_builtin(ep), ep.name))
            for ep in eps:
                if only_builtin and not _is_builtin(ep):
                    continue
                dist = ep.dist.name if ep.dist is not None else None
                if ep.name in self._methods:
                    if not _is_builtin(ep):  # built-ins win; a clash is reported on the plugin
                        self._methods[f"{ep.name}@{dist}"] = BrokenMethod(
                            ep.name, ep.value, f"name clashes with the already registered {ep.name!r}", dist
                        )
                    continue
                try:
                    info = ep.load()
                    if not isinstance(info, MethodInfo):
                        raise TypeError(f"entry point must point at a hfgen.MethodInfo, got {type(info).__name__}")
                    if info.name != ep.name:
                        raise ValueError(f"entry point name {ep.name!r} differs from MethodInfo.name {info.name!r}")
                    self._methods[ep.name] = info
                except Exception as err:
                    self._methods[ep.name] = BrokenMethod(ep.name, ep.value, _describe(err), dist)

    def register(self, info: MethodInfo, *, exist_ok: bool = False) -> MethodInfo:
        if not isinstance(info, MethodInfo):
            raise TypeError(f"`info` must be a hfgen.MethodInfo, got {type(info).__name__}.")
        self._discover()
        with self._lock:
            existing = self._methods.get(info.name)
            if existing is not None and existing != info and not exist_ok:
                raise ValueError(f"A method named {info.name!r} is already registered; pass exist_ok=True to replace it.")
            self._methods[info.name] = info
        return info

    def unregister(self, name: str) -> None:
        with self._lock:
            self._methods.pop(name, None)

    def list(self, include_broken: bool = False) -> list[MethodInfo | BrokenMethod]:
        self._discover()
        with self._lock:
            methods = sorted(self._methods.values(), key=lambda m: m.name)
        return [m for m in methods if include_broken or not m.broken]

    def get(self, name: str) -> MethodInfo:
        self._discover()
        with self._lock:
            info = self._methods.get(name)
            known = sorted(n for n, m in self._methods.items() if not m.broken)
        if info is None:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"Unknown hfgen method {name!r}.{hint} Known methods: {', '.join(known) or '(none)'}.")
        if info.broken:
            raise ImportError(f"hfgen method {name!r} ({info.target}) failed to load: {info.error}")
        return info

    def reset(self) -> None:
        """Forget everything and rediscover on next use (for tests and after installing a plugin)."""
        with self._lock:
            self._methods.clear()
            self._discovered = False


def _is_builtin(ep) -> bool:
    return ep.value.startswith("hfgen.") and ep.dist is not None and ep.dist.name == "hfgen"


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


REGISTRY = _Registry()


def list_methods(include_broken: bool = False) -> list[MethodInfo | BrokenMethod]:
    """All registered methods, sorted by name; with ``include_broken`` also plugins that failed to load."""
    return REGISTRY.list(include_broken=include_broken)


def get_method(name: str) -> MethodInfo:
    """The [`MethodInfo`] named ``name``; a clear ``KeyError`` (with the closest name) otherwise."""
    return REGISTRY.get(name)


def register(info: MethodInfo, *, exist_ok: bool = False) -> MethodInfo:
    """Register a method in this process (for notebooks and ``HFGEN_PLUGINS`` modules)."""
    return REGISTRY.register(info, exist_ok=exist_ok)


def find_component(cls_name: str) -> tuple[MethodInfo, Any] | None:
    """The method providing a component class named ``cls_name`` and the class itself, if any."""
    for info in list_methods():
        if cls_name in info.components:
            return info, info.load_component(cls_name)
    return None
