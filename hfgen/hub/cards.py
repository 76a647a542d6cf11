"""Model cards: [`render_model_card`] / [`save_model_card`] fill a method's template (which extends
``model_cards/_base.md``) with the Hub metadata every hfgen card carries (``library_name: hfgen``, ``hfgen`` and
``hfgen-<method>`` tags, the paper, base model, data sets, training config, ``model-index`` results).
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Any


def _template_target(method: str) -> str:
    from hfgen.registry import get_method

    return get_method(method).card_template or "hfgen.model_cards:_base.md"


def card_template_problem(method: str) -> str | None:
    """Why the card template of the registered ``method`` cannot be read or parsed, or ``None`` if it can.

    Called when a trainer or pipeline is created, so that a template missing from a plugin's package data is
    reported before training rather than after it (saving then still writes the weights, without the card)."""
    target = _template_target(method)
    try:
        _card_template(target)
    except Exception as err:  # a missing package or file (OSError, ModuleNotFoundError), a Jinja syntax error
        return f"the card template {target!r} of method {method!r} cannot be loaded ({type(err).__name__}: {err})"
    return None


def _public_module(info, cls_name: str) -> str:
    """The module a user imports ``cls_name`` from: ``hfgen.pipelines`` for hfgen's own pipelines (exported there),
    else the module the plugin's manifest names."""
    from hfgen.registry import REGISTRY

    module = info.components.get(cls_name, "").partition(":")[0]
    if module.startswith("hfgen.pipelines.") or not module and REGISTRY.is_builtin(info.name):
        return "hfgen.pipelines"
    if module:
        return module
    return next(iter(info.components.values()), "hfgen.pipelines:").partition(":")[0].split(".")[0]


def _card_template(target: str):
    """The Jinja template ``"package:file.md"``. Every built-in card ``{% extends "_base.md" %}``: the skeleton
    (``hfgen.model_cards:_base.md``) holds the front matter, facts, pipeline-loading, training, evaluation and
    citation blocks once, and a method's file fills the blocks ``intro``, ``facts``, ``method_sections``,
    ``training_note`` and ``evaluation_note``. A plugin's template may extend it the same way."""
    import jinja2

    def source(name: str) -> str:
        package, _, filename = (name if ":" in name else f"hfgen.model_cards:{name}").partition(":")
        return resources.files(package).joinpath(filename).read_text(encoding="utf-8")

    return jinja2.Environment(loader=jinja2.FunctionLoader(source), keep_trailing_newline=True).get_template(target)


def render_model_card(
    method: str,
    *,
    model_name: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | str | None = None,
    training_config: dict[str, Any] | None = None,
    eval_results: list[dict[str, Any]] | None = None,
    extra_tags: list[str] | tuple[str, ...] = (),
    license: str | None = "apache-2.0",
    pipeline_tag: str | None = ...,
    library_name: str = "hfgen",
    **template_vars: Any,
):
    """Render the model card of an artifact of ``method`` (a registered method name).

    ``eval_results`` is a list of dicts with keys ``task_type``, ``dataset_type``, ``dataset_name``,
    ``metric_type``, ``metric_value`` (and optionally ``metric_name``); they become ``model-index``.
    ``pipeline_class`` (the name of a registered pipeline class) adds the skeleton's ``loading`` block ("Loading
    this pipeline"), which imports the class from its real module (``pipeline_module``: ``hfgen.pipelines`` for
    hfgen's own, the manifest's module for a plugin's) and names the distribution to install (``distribution``);
    a ``diffusers`` tag is then kept only when the method's manifest lists it: ``DiffusionPipeline.from_pretrained``
    cannot load a pipeline class Diffusers does not define.
    ``pipeline_tag`` replaces the manifest's for this artifact (``None``: no Hub pipeline tag); ``library_name`` is
    ``"peft"`` for a PEFT adapter (the Hub then offers PEFT's loading snippet), else ``"hfgen"``.
    Returns a ``huggingface_hub.ModelCard``.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hfgen.registry import get_method, method_distribution

    info = get_method(method)
    if template_vars.get("pipeline_class"):
        template_vars.setdefault("pipeline_module", _public_module(info, template_vars["pipeline_class"]))
        template_vars.setdefault("distribution", method_distribution(info.name) or "hfgen")
    if isinstance(datasets, str):
        datasets = [datasets]
    results = [EvalResult(**r) for r in (eval_results or [])]
    if results and not model_name:
        raise ValueError("`model_name` is required when `eval_results` are given (model-index needs a name).")
    card_data = ModelCardData(
        library_name=library_name,
        license=license,
        pipeline_tag=info.pipeline_tag if pipeline_tag is ... else pipeline_tag,
        tags=[t for t in dict.fromkeys([*info.hub_tags, *extra_tags])
              if not (template_vars.get("pipeline_class") and t == "diffusers" and t not in info.tags)],
        base_model=base_model,
        datasets=datasets,
        model_name=model_name,
        eval_results=results or None,
        hfgen_method=info.name,
        arxiv=info.paper.arxiv_id,
    )
    return ModelCard(_card_template(_template_target(method)).render(
        card_data=card_data.to_yaml(),
        method=info,
        paper=info.paper,
        model_name=model_name or f"{info.name} model",
        datasets=datasets or [],
        training_config=training_config or {},
        eval_results=eval_results or [],
        # unset values stay undefined, so the templates' ``default(...)`` applies (a None would print "None")
        **{k: v for k, v in dict(base_model=base_model, library_name=library_name, **template_vars).items()
           if v is not None},
    ))


def save_model_card(folder: str | os.PathLike, method: str, **kwargs: Any) -> Path:
    """Render and write ``README.md`` into ``folder``; returns its path."""
    path = Path(folder) / "README.md"
    card = render_model_card(method, **kwargs)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)
    return path


def card_failure(owner: str, folder: str | os.PathLike, method: str, err: Exception) -> str:
    """The warning for a card of ``method`` that failed to render after ``owner`` committed its weights to ``folder``."""
    return (f"{owner}: the weights are saved in {folder} but the model card is not: rendering the card template "
            f"{_template_target(method)!r} failed with {type(err).__name__}: {err}")


def save_model_card_or_warn(folder: str | os.PathLike, method: str, *, owner: str, **kwargs: Any) -> Path | None:
    """[`save_model_card`] for a save whose weights are already committed: a card that fails to render (e.g. a
    plugin's template missing from its package data) is a warning naming the template, never a lost save."""
    try:
        return save_model_card(folder, method, **kwargs)
    except Exception as err:
        warnings.warn(card_failure(owner, folder, method, err), stacklevel=3)
        return None


def registered_component(cls: type) -> tuple[Any, str] | None:
    """``(MethodInfo, class name)`` of the registered hfgen component ``cls`` is or subclasses (same module path)."""
    from hfgen.registry import list_methods

    for klass in cls.__mro__:
        for info in list_methods():
            target = info.components.get(klass.__name__)
            if target is not None and target == f"{klass.__module__}:{klass.__qualname__}":
                return info, klass.__name__
    return None
