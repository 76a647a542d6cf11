"""The method registry: every hfgen method, built in or third party, is an entry point.

A plugin distribution declares, in its own packaging metadata::

    [project.entry-points."hfgen.methods"]
    my_method = "my_pkg.hfgen_plugin:METHOD"

where ``METHOD`` is a [`MethodInfo`]. hfgen registers its own methods through its own
``setup.py`` in exactly this way. Entry points are read lazily, the first time a name is looked
up; a ``MethodInfo`` holds only strings, so listing methods imports no torch-heavy module, and
components are imported when someone asks for them ([`MethodInfo.load_component`]). A plugin
that fails to load (an exception or ``sys.exit`` while importing it, a malformed [`MethodInfo`]) is kept as a
[`BrokenMethod`] with its error, and never hides the others. hfgen's own methods win every name clash: a
plugin reusing a built-in method name is listed as broken, and a plugin component named like a built-in one
(e.g. ``ConsistencyTrajectoryPipeline``) is never used by [`find_component`] / ``hfgen.load``; both clashes
are reported ([`registry_problems`], a logged warning, ``hfgen list``).

Environment switches (modelled on pytest and lm-eval):

- ``HFGEN_DISABLE_PLUGIN_AUTOLOAD=1``: read only hfgen's own entry points;
- ``HFGEN_PLUGINS=pkg.mod,other.mod``: import these modules first (they may call [`register`]).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "hfgen.methods"


def _check_str(owner: str, name: str, value, optional: bool = False, target: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        kind = "a string or None" if optional else "a string"
        raise TypeError(f"`{name}` of {owner} must be {kind}, got {type(value).__name__} {value!r}.")
    if target and ":" not in value:
        raise ValueError(f"`{name}` of {owner} must be 'module.path:Object', got {value!r}.")


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv_id: str
    citation: str = ""
    code_url: str | None = None

    def __post_init__(self):
        for name in ("title", "arxiv_id", "citation"):
            _check_str("Paper", name, getattr(self, name))
        _check_str("Paper", "code_url", self.code_url, optional=True)

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}"


@dataclass(frozen=True)
class Converter:
    """A converter of a checkpoint released with the paper, run by ``hfgen convert KIND`` / [`hfgen.convert.convert`].

    Args:
        target: ``"module.path:function"``; the function is ``fn(source, output=None, **options) -> model``,
            imported only when used.
        description: one line for ``hfgen convert --help`` (what it reads -> what it writes).
        options: keyword arguments always passed to the function (one function may serve several kinds).
    """

    target: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check_str("Converter", "target", self.target, target=True)
        _check_str("Converter", "description", self.description)
        if not isinstance(self.options, dict) or not all(isinstance(k, str) for k in self.options):
            raise TypeError(f"`options` of Converter must be a dict of keyword arguments, got {self.options!r}.")


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
        status: how complete the implementation is, printed by ``hfgen info`` (free text; hfgen's own methods say
            ``"implemented"``, the default; e.g. ``"experimental"`` for a method whose results are not reproduced).
        description: the longer account printed by ``hfgen info``.
        position: place in the zoo's tables (README, ``docs/results.md``); ties are ordered by name.
        auto_models: transformers ``model_type`` -> the name of a component whose module registers that type
            with ``AutoConfig`` / ``AutoModel*`` when imported; ``import hfgen`` then lets the Auto classes load
            a saved model of that type without importing anything first ([`hfgen._auto`]).
        converters: ``hfgen convert`` kind -> [`Converter`] of a checkpoint released with the paper.
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
    auto_models: dict[str, str] = field(default_factory=dict)
    converters: dict[str, Converter] = field(default_factory=dict)

    def __post_init__(self):
        _check_str("MethodInfo", "name", self.name)
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"`name` must be lowercase letters, digits and '_', got {self.name!r}.")
        owner = f"method {self.name!r}"
        _check_str(owner, "summary", self.summary)
        if not isinstance(self.paper, Paper):
            raise TypeError(f"`paper` of {owner} must be a hfgen.Paper, got {type(self.paper).__name__} {self.paper!r}.")
        if not isinstance(self.components, dict):
            raise TypeError(f"`components` of {owner} must be a dict of class name -> 'module:Object', got "
                            f"{type(self.components).__name__}.")
        for cls_name, target in self.components.items():
            if not isinstance(cls_name, str) or not cls_name.isidentifier():
                raise ValueError(f"component names of {owner} must be identifiers, got {cls_name!r}.")
            if not isinstance(target, str) or ":" not in target:
                raise ValueError(f"component {cls_name!r} of {self.name!r} must be 'module:Object', got {target!r}.")
        # a string would be split into letters; a list is accepted and stored as a tuple (the dataclass is frozen)
        if not isinstance(self.tags, (list, tuple)) or not all(isinstance(t, str) and t for t in self.tags):
            raise TypeError(f"`tags` of {owner} must be a list or tuple of non-empty strings, got {self.tags!r}.")
        object.__setattr__(self, "tags", tuple(self.tags))
        for name in ("card_template", "demo", "cli"):
            _check_str(owner, name, getattr(self, name), optional=True, target=True)
        _check_str(owner, "pipeline_tag", self.pipeline_tag, optional=True)
        _check_str(owner, "status", self.status)
        if not isinstance(self.auto_models, dict):
            raise TypeError(f"`auto_models` of {owner} must be a dict of model_type -> component name, got "
                            f"{type(self.auto_models).__name__}.")
        for model_type, cls_name in self.auto_models.items():
            _check_str(owner, "auto_models' model_type", model_type)
            if cls_name not in self.components:
                raise ValueError(f"`auto_models` of {owner} maps {model_type!r} to {cls_name!r}, which is not one of "
                                 f"its components.")
        if not isinstance(self.converters, dict) or not all(
                isinstance(kind, str) and kind and isinstance(c, Converter) for kind, c in self.converters.items()):
            raise TypeError(f"`converters` of {owner} must be a dict of kind -> hfgen.registry.Converter, got "
                            f"{self.converters!r}.")

    @property
    def broken(self) -> bool:
        return False

    @property
    def hub_tags(self) -> list[str]:
        return ["hfgen", f"hfgen-{self.name.replace('_', '-')}", *self.tags]

    def component_module(self, cls_name: str) -> str:
        """The module path of the component ``cls_name`` (``"hfgen.models.mf2"`` for ``"MF2Model"``)."""
        return self.components[cls_name].partition(":")[0]

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
    try:
        obj = importlib.import_module(module_name)
    except SystemExit as err:  # a module calling sys.exit on import must not end the caller
        raise ImportError(f"importing {module_name!r} called sys.exit({err.code!r})") from None
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Registry:
    def __init__(self):
        self._lock = threading.RLock()
        self._methods: dict[str, MethodInfo | BrokenMethod] = {}
        self._builtin: set[str] = set()
        self._distributions: dict[str, str] = {}
        self._discovered = False

    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for module in filter(None, os.environ.get("HFGEN_PLUGINS", "").split(",")):
                try:
                    importlib.import_module(module.strip())
                except (Exception, SystemExit) as err:  # reported, never fatal
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
                    if dist is not None:
                        self._distributions[ep.name] = dist
                    if _is_builtin(ep):
                        self._builtin.add(ep.name)
                except (Exception, SystemExit) as err:  # an import that raises or calls sys.exit: isolated, named
                    self._methods[ep.name] = BrokenMethod(ep.name, ep.value, _describe(err), dist)
            for problem in self.problems():
                logger.warning("hfgen plugins: %s", problem)

    def is_builtin(self, name: str) -> bool:
        self._discover()
        return name in self._builtin

    def distribution(self, name: str) -> str | None:
        self._discover()
        return self._distributions.get(name)

    def problems(self) -> list[str]:
        """Name clashes of plugins with hfgen (resolved in hfgen's favour) and between plugins (first name wins)."""
        with self._lock:
            methods = sorted((m for m in self._methods.values() if not m.broken),
                             key=lambda m: (m.name not in self._builtin, m.name))
            clashes = [f"method {m.name!r} (plugin {m.distribution or m.target}): {m.error}"
                       for m in self._methods.values() if m.broken and "clashes" in m.error]
        owner: dict[str, str] = {}
        for info in methods:
            for cls_name in info.components:
                if cls_name in owner and info.name not in self._builtin:
                    clashes.append(f"component {cls_name!r} of plugin method {info.name!r} clashes with the one of "
                                   f"{owner[cls_name]!r}, which is used instead")
                elif cls_name not in owner:
                    owner[cls_name] = info.name
        return clashes

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
        if not isinstance(name, str):
            raise TypeError(f"`name` must be a method name (a string, see `hfgen list`), got {type(name).__name__} {name!r}.")
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
            self._builtin.clear()
            self._distributions.clear()
            self._discovered = False


def _is_builtin(ep) -> bool:
    return ep.value.startswith("hfgen.") and ep.dist is not None and ep.dist.name == "hfgen"


def _describe(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"SystemExit: the plugin called sys.exit({err.code!r}) while being imported"
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


def method_distribution(name: str) -> str | None:
    """The name of the installed distribution whose entry point registered ``name`` (``"hfgen"`` for hfgen's own
    methods, e.g. ``"hfgen-toyflow"`` for a plugin's); ``None`` for a method registered in-process."""
    return REGISTRY.distribution(name)


def registry_problems() -> list[str]:
    """Name clashes found among the installed methods (each resolved in favour of hfgen's own, then the first)."""
    REGISTRY._discover()
    return REGISTRY.problems()


def find_component(cls_name: str) -> tuple[MethodInfo, Any] | None:
    """The method providing a component class named ``cls_name`` and the class itself, if any; hfgen's own
    methods first, so a plugin cannot take over the loading of hfgen's artifacts by reusing a class name."""
    for info in sorted(list_methods(), key=lambda m: not REGISTRY.is_builtin(m.name)):
        if cls_name in info.components:
            return info, info.load_component(cls_name)
    return None
