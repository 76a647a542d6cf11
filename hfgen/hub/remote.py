"""The Hub: [`push`] / [`upload_folder`] upload what [`upload_plan`] selects in one commit;
[`load`] loads a local folder or a Hub repo id, dispatching on what the folder holds.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .saving import (
    MARKER_NAMES,
    PICKLE_WEIGHT_NAMES,
    _is_pickle,
    _verified,
    check_weights_safe,
    consistent_load,
    verify_folder,
)

logger = logging.getLogger(__name__)


def upload_folder(folder, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                  token: str | None = None, create_pr: bool = False, revision: str | None = None,
                  path_in_repo: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit: only what [`upload_plan`] selects
    (regular files inside the folder, never a pickle, a symlink's target or an interrupted save); returns the
    commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from hfgen import __version__

    check_weights_safe(folder)
    files, skipped = upload_plan(folder)
    for path, why in skipped:
        logger.warning("hfgen push: not uploading %s: %s", path, why)
    prefix = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
    api = HfApi(token=token, library_name="hfgen", library_version=__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    info = api.create_commit(
        repo_id=repo_id, commit_message=commit_message or "Upload with hfgen", revision=revision, create_pr=create_pr,
        operations=[CommitOperationAdd(path_in_repo=prefix + rel, path_or_fileobj=str(path)) for rel, path in files],
    )
    return str(info.commit_url if hasattr(info, "commit_url") else info)


def push(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str = "Upload with hfgen",
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload a saved hfgen artifact folder to ``repo_id`` in one commit (what [`upload_plan`] selects);
    returns the commit URL."""
    from hfgen.validation import check_saved_folder, check_text

    folder = Path(check_text("folder", folder, "a folder"))
    repo_id = check_text("repo_id", repo_id, "a Hub repo id 'namespace/name'")
    if not folder.is_dir():
        raise FileNotFoundError(f"`folder` {str(folder)!r} is not a directory.")
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must look like 'namespace/name', got {repo_id!r}.")
    check_saved_folder("folder", folder)
    return upload_folder(folder, repo_id, private=private, commit_message=commit_message, token=token,
                         revision=revision)


def upload_plan(folder: str | os.PathLike) -> tuple[list[tuple[str, Path]], list[tuple[Path, str]]]:
    """What [`push`] uploads from ``folder``: ``(files, skipped)``. Only regular files inside the folder are
    uploaded (``checkpoint-*`` included); skipped, with the reason: symlinks (a link may point outside the folder:
    its target is never uploaded), pickles (by name or content, at any depth, e.g. a checkpoint's ``optimizer.pt``
    or ``training_args.bin``), hidden entries (``.hfgen-tmp-*`` folders of interrupted saves, caches) and ``*.tmp``."""
    folder = Path(folder)
    files, skipped = [], []
    for root, dirs, names in os.walk(folder):  # os.walk never follows a symlinked folder
        root_path = Path(root)
        for d in list(dirs):
            if d.startswith(".") or (root_path / d).is_symlink():
                if (root_path / d).is_symlink():
                    skipped.append((root_path / d, "a symlink (its target is not uploaded)"))
                dirs.remove(d)
        dirs.sort()
        for name in sorted(names):
            path = root_path / name
            if name.startswith(".") or name.endswith(".tmp"):
                continue
            if path.is_symlink():
                skipped.append((path, f"a symlink to {os.path.realpath(path)} (its target is not uploaded)"))
            elif not path.is_file():
                skipped.append((path, "not a regular file"))
            elif _is_pickle(path):
                skipped.append((path, "a pickle (hfgen never publishes pickles)"))
            else:
                files.append((path.relative_to(folder).as_posix(), path))
    return files, skipped


def resolve_folder(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | None = None,
                   **download_kwargs: Any) -> Path:
    """A local folder for ``name_or_path``: an existing folder, ``local-dir:PATH`` or a Hub repo id (its snapshot,
    downloaded with ``huggingface_hub.snapshot_download(**download_kwargs)``, e.g. ``cache_dir``)."""
    from hfgen.validation import check_text

    text = check_text("name_or_path", name_or_path)
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

    return Path(snapshot_download(text, revision=revision, token=token, library_name="hfgen", library_version=__version__,
                                  **download_kwargs))


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON (truncated or not an hfgen save?): {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def import_registered_libraries(folder: str | os.PathLike) -> list[str]:
    """Import the modules of the registered components that ``folder/model_index.json`` names; returns them.

    Diffusers loads a component whose library is not Diffusers or transformers only from a module already imported
    (it never imports a module because a file names it). A plugin's pipeline module need not import its model's
    module, so a fresh process would fail; here only modules that an installed method's manifest names (the
    component's ``"module:Class"`` with the same module and class) are imported, never one a file alone names."""
    import sys

    from hfgen.registry import list_methods

    index_path = Path(folder) / "model_index.json"
    if not index_path.is_file():
        return []
    wanted = [tuple(v) for k, v in _read_json(index_path).items()
              if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)]
    imported = []
    for library, cls_name in wanted:
        if library in sys.modules:
            continue
        for info in list_methods():
            target = info.components.get(cls_name)
            if target is not None and target.partition(":")[0] == library:
                info.load_component(cls_name)
                imported.append(library)
                break
    return imported


def load(name_or_path: str | os.PathLike, *, allow_pickle: bool = False, revision: str | None = None,
         token: str | None = None, **kwargs: Any) -> Any:
    """Load any saved hfgen artifact from a local folder or a Hub repo id.

    Dispatch on what the folder holds:

    - ``model_index.json``: a pipeline; hfgen's class if ``_class_name`` is a registered component,
      else Diffusers' ``DiffusionPipeline``;
    - ``adapter_config.json`` with ``hfgen_adapter_type``: the registered adapter class;
    - ``adapter_config.json`` of a PEFT adapter (``peft_type``, e.g. a trainer's ``peft_config`` LoRA): a
      ``PeftModel`` through PEFT's ``AutoPeftModelForCausalLM`` (or ``AutoPeftModel`` for other task types) on the
      base its config names, or on ``base_model=`` (a model object or id) when given;
    - ``config.json`` with a Diffusers ``_class_name``: that model or scheduler class;
    - ``config.json`` with a ``model_type``: ``transformers.AutoModel`` (hfgen models are registered
      with the Auto classes when hfgen is imported), or the architecture named in ``architectures``.

    The weights are checked first ([`verify_folder`]): a missing, truncated or corrupted safetensors
    file raises a ``ValueError`` naming it.
    """

    folder = resolve_folder(name_or_path, revision=revision, token=token)

    def read():
        if not any((folder / name).is_file() for name in MARKER_NAMES):  # before walking it: it may be a home folder
            if any((folder / name).is_file() for name in PICKLE_WEIGHT_NAMES):  # a model saved as pickle: say so
                check_weights_safe(folder, allow_pickle=allow_pickle)
            raise ValueError(f"Don't know how to load {folder}: it has none of {', '.join(MARKER_NAMES)} (pipeline, "
                             "model, adapter or scheduler): not a saved artifact, or its save was interrupted.")
        check_weights_safe(folder, allow_pickle=allow_pickle)
        verify_folder(folder)  # a truncated, corrupted, edited or missing file is a clear error, not garbage
        with _verified(folder):  # the class's own from_pretrained need not hash the same files again
            return _load_verified(folder, **kwargs)

    return consistent_load(folder, read)


def _load_peft_adapter(folder: Path, adapter_config: dict, base_model: Any = None, **kwargs: Any):
    """A PEFT adapter folder through PEFT: on ``base_model`` (a model object or id) with ``PeftModel``, else with
    ``AutoPeftModel`` on the base its ``adapter_config.json`` names."""
    import peft

    if base_model is not None:
        if isinstance(base_model, str | os.PathLike):
            from transformers import AutoModelForCausalLM

            base_model = AutoModelForCausalLM.from_pretrained(base_model)
        return peft.PeftModel.from_pretrained(base_model, folder, **kwargs)
    if not adapter_config.get("base_model_name_or_path"):
        raise ValueError(f"{folder}/adapter_config.json names no base model (`base_model_name_or_path` is empty, as when "
                         "the base was built in memory): pass it, `hfgen.load(folder, base_model=model_or_id)`.")
    task_type = adapter_config.get("task_type")
    auto_class = peft.AutoPeftModelForCausalLM if task_type in (None, "CAUSAL_LM") else peft.AutoPeftModel
    return auto_class.from_pretrained(folder, **kwargs)


def _load_verified(folder: Path, **kwargs: Any):
    from hfgen.registry import find_component

    if (folder / "model_index.json").is_file():
        from hfgen.validation import check_pipeline_subfolders

        check_pipeline_subfolders(folder)
        import_registered_libraries(folder)
        class_name = _read_json(folder / "model_index.json").get("_class_name")
        found = find_component(class_name) if isinstance(class_name, str) else None
        if found is not None:
            return found[1].from_pretrained(folder, **kwargs)
        import diffusers

        if not isinstance(class_name, str) or not hasattr(diffusers, class_name):
            raise ValueError(f"{folder / 'model_index.json'} names `_class_name` {class_name!r}, which is neither a "
                             "registered hfgen pipeline nor a Diffusers pipeline.")
        return diffusers.DiffusionPipeline.from_pretrained(folder, **kwargs)
    if (folder / "adapter_config.json").is_file():
        adapter_config = _read_json(folder / "adapter_config.json")
        adapter_type = adapter_config.get("hfgen_adapter_type")
        if adapter_type is None and "peft_type" in adapter_config:  # a PEFT adapter (a LoRA from a trainer's peft_config)
            return _load_peft_adapter(folder, adapter_config, **kwargs)
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

            if not isinstance(class_name, str) or not hasattr(diffusers, class_name):
                raise ValueError(f"{folder / 'config.json'} names `_class_name` {class_name!r}, which is neither a "
                                 "registered hfgen component nor a Diffusers class.")
            return getattr(diffusers, class_name).from_pretrained(folder, **kwargs)
        if "model_type" in config:
            import transformers  # hfgen's model types resolve through its Auto classes (hfgen._auto)

            for arch in config.get("architectures") or []:
                cls = getattr(transformers, arch, None)
                found = find_component(arch) if cls is None else None
                cls = cls or (found[1] if found else None)
                if cls is not None:
                    return cls.from_pretrained(folder, **kwargs)
            return transformers.AutoModel.from_pretrained(folder, **kwargs)
    if (folder / "scheduler_config.json").is_file():
        class_name = _read_json(folder / "scheduler_config.json").get("_class_name")
        found = find_component(class_name) if isinstance(class_name, str) else None
        if found is not None:
            return found[1].from_pretrained(folder, **kwargs)
        import diffusers

        if not isinstance(class_name, str) or not hasattr(diffusers, class_name):
            raise ValueError(f"{folder / 'scheduler_config.json'} names `_class_name` {class_name!r}, which is neither "
                             "a registered hfgen scheduler nor a Diffusers scheduler.")
        return getattr(diffusers, class_name).from_pretrained(folder, **kwargs)
    raise ValueError(
        f"Don't know how to load {folder}: expected model_index.json (pipeline), adapter_config.json "
        "(adapter), config.json (model) or scheduler_config.json (scheduler)."
    )
