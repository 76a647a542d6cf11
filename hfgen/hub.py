"""Model cards, safe saving, pushing to the Hub and loading any saved hfgen artifact.

- :func:`render_model_card` / :func:`save_model_card` fill ``model_cards/<method>.md`` with the
  Hub metadata every hfgen card carries (``library_name: hfgen``, ``hfgen`` and ``hfgen-<method>``
  tags, the paper, base model, data sets, training config, ``model-index`` results).
- :func:`atomic_save_dir` writes a folder under a temporary name and renames it into place, so an
  interrupted save never leaves a half-written folder where a good one was.
- :func:`push` uploads a saved folder with ``huggingface_hub`` in one commit.
- :func:`load` loads a local folder or a Hub repo id, dispatching on what the folder holds.

Weights are safetensors only: a folder that holds only pickle weights is refused unless the caller
passes ``allow_pickle=True`` (and even then nothing is unpickled by hfgen itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "diffusion_pytorch_model.bin", "adapter_model.bin", "model.ckpt", "model.pt")
SAFE_WEIGHT_SUFFIX = ".safetensors"


class UnsafeWeightsError(ValueError):
    """Raised for a folder whose weights are only available as pickle files."""


# ----------------------------------------------------------------------------------------- cards


def _template_text(method: str) -> str:
    from hfgen.registry import get_method

    info = get_method(method)
    target = info.card_template or "hfgen.model_cards:_base.md"
    package, _, filename = target.partition(":")
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")


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
    **template_vars: Any,
):
    """Render the model card of an artifact of ``method`` (a registered method name).

    ``eval_results`` is a list of dicts with keys ``task_type``, ``dataset_type``, ``dataset_name``,
    ``metric_type``, ``metric_value`` (and optionally ``metric_name``); they become ``model-index``.
    Returns a ``huggingface_hub.ModelCard``.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hfgen.registry import get_method

    info = get_method(method)
    if isinstance(datasets, str):
        datasets = [datasets]
    results = [EvalResult(**r) for r in (eval_results or [])]
    if results and not model_name:
        raise ValueError("`model_name` is required when `eval_results` are given (model-index needs a name).")
    card_data = ModelCardData(
        library_name="hfgen",
        license=license,
        pipeline_tag=info.pipeline_tag,
        tags=list(dict.fromkeys([*info.hub_tags, *extra_tags])),
        base_model=base_model,
        datasets=datasets,
        model_name=model_name,
        eval_results=results or None,
        hfgen_method=info.name,
        arxiv=info.paper.arxiv_id,
    )
    return ModelCard.from_template(
        card_data,
        template_str=_template_text(method),
        method=info,
        paper=info.paper,
        model_name=model_name or f"{info.name} model",
        base_model=base_model,
        datasets=datasets or [],
        training_config=training_config or {},
        eval_results=eval_results or [],
        **template_vars,
    )


def save_model_card(folder: str | os.PathLike, method: str, **kwargs: Any) -> Path:
    """Render and write ``README.md`` into ``folder``; returns its path."""
    path = Path(folder) / "README.md"
    card = render_model_card(method, **kwargs)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------- safe saving


@contextlib.contextmanager
def atomic_save_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder to write into; on success it replaces ``folder``.

    An exception (or a killed process) leaves ``folder`` as it was: the previous save stays whole.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield tmp
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / folder.name)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_weights_safe(folder: str | os.PathLike, allow_pickle: bool = False) -> None:
    """Refuse a folder (recursively) that holds pickle weights but no safetensors weights."""
    folder = Path(folder)
    files = [p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts]
    safe = [p for p in files if p.name.endswith(SAFE_WEIGHT_SUFFIX)]
    pickled = [p for p in files if p.name in PICKLE_WEIGHT_NAMES or p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    if pickled and not safe and not allow_pickle:
        names = ", ".join(sorted(str(p.relative_to(folder)) for p in pickled))
        raise UnsafeWeightsError(
            f"{folder} holds only pickle weights ({names}); hfgen loads safetensors only, because unpickling "
            "can run arbitrary code. Convert them to .safetensors, or pass allow_pickle=True if you trust the source."
        )


def verify_safetensors(path: str | os.PathLike) -> None:
    """Raise a clear error if a ``.safetensors`` file is truncated or corrupted."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                f.get_slice(key)
    except Exception as err:
        raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupted?): {err}") from err


# ----------------------------------------------------------------------------------------- push


def push(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str = "Upload with hfgen",
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload a saved hfgen artifact folder to ``repo_id`` in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    from hfgen import __version__

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"`folder` {str(folder)!r} is not a directory.")
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must look like 'namespace/name', got {repo_id!r}.")
    check_weights_safe(folder)
    api = HfApi(token=token, library_name="hfgen", library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), commit_message=commit_message, revision=revision,
        ignore_patterns=[".cache/*", "*.tmp", "training_args.bin"],  # a pickle of the Trainer arguments
    )
    return str(info)


# ----------------------------------------------------------------------------------------- load


def resolve_folder(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | None = None) -> Path:
    """A local folder for ``name_or_path``: an existing folder, ``local-dir:PATH`` or a Hub repo id."""
    text = str(name_or_path)
    if text.startswith("local-dir:"):
        path = Path(text[len("local-dir:"):])
        if not path.is_dir():
            raise FileNotFoundError(f"local-dir:{path} is not a directory.")
        return path
    if text.startswith("hf-hub:"):
        text = text[len("hf-hub:"):]
    elif Path(text).is_dir():
        return Path(text)
    if text.count("/") != 1 or text.startswith((".", "/")):
        raise FileNotFoundError(f"{text!r} is neither an existing folder nor a Hub repo id ('namespace/name').")
    from huggingface_hub import snapshot_download

    from hfgen import __version__

    return Path(snapshot_download(text, revision=revision, token=token, library_name="hfgen", library_version=__version__))


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load(name_or_path: str | os.PathLike, *, allow_pickle: bool = False, revision: str | None = None,
         token: str | None = None, **kwargs: Any) -> Any:
    """Load any saved hfgen artifact from a local folder or a Hub repo id.

    Dispatch on what the folder holds:

    - ``model_index.json``: a pipeline; hfgen's class if ``_class_name`` is a registered component,
      else Diffusers' ``DiffusionPipeline``;
    - ``adapter_config.json`` with ``hfgen_adapter_type``: the registered adapter class;
    - ``config.json`` with a Diffusers ``_class_name``: that model or scheduler class;
    - ``config.json`` with a ``model_type``: ``transformers.AutoModel`` (hfgen models are registered
      with the Auto classes when hfgen is imported), or the architecture named in ``architectures``.

    Every ``.safetensors`` file is checked first: a truncated or corrupted one raises a ``ValueError``
    naming it.
    """
    from hfgen.registry import find_component

    folder = resolve_folder(name_or_path, revision=revision, token=token)
    check_weights_safe(folder, allow_pickle=allow_pickle)
    for weights in sorted(folder.rglob("*" + SAFE_WEIGHT_SUFFIX)):  # a truncated file is a clear error, not garbage
        verify_safetensors(weights)
    if (folder / "model_index.json").is_file():
        class_name = _read_json(folder / "model_index.json").get("_class_name")
        found = find_component(class_name) if class_name else None
        if found is not None:
            return found[1].from_pretrained(folder, **kwargs)
        import diffusers

        return diffusers.DiffusionPipeline.from_pretrained(folder, **kwargs)
    if (folder / "adapter_config.json").is_file():
        adapter_type = _read_json(folder / "adapter_config.json").get("hfgen_adapter_type")
        found = find_component(adapter_type) if adapter_type else None
        if found is None:
            raise ValueError(f"{folder}/adapter_config.json names no registered hfgen adapter (hfgen_adapter_type={adapter_type!r}).")
        return found[1].from_pretrained(folder, **kwargs)
    if (folder / "config.json").is_file():
        config = _read_json(folder / "config.json")
        class_name = config.get("_class_name")
        if class_name:
            found = find_component(class_name)
            if found is not None:
                return found[1].from_pretrained(folder, **kwargs)
            import diffusers

            return getattr(diffusers, class_name).from_pretrained(folder, **kwargs)
        if "model_type" in config:
            import transformers

            import hfgen.models  # noqa: F401  (registers hfgen's Auto classes)

            for arch in config.get("architectures") or []:
                cls = getattr(transformers, arch, None)
                found = find_component(arch) if cls is None else None
                cls = cls or (found[1] if found else None)
                if cls is not None:
                    return cls.from_pretrained(folder, **kwargs)
            return transformers.AutoModel.from_pretrained(folder, **kwargs)
    if (folder / "scheduler_config.json").is_file():
        class_name = _read_json(folder / "scheduler_config.json").get("_class_name")
        found = find_component(class_name) if class_name else None
        if found is not None:
            return found[1].from_pretrained(folder, **kwargs)
    raise ValueError(
        f"Don't know how to load {folder}: expected model_index.json (pipeline), adapter_config.json "
        "(adapter), config.json (model) or scheduler_config.json (scheduler)."
    )
