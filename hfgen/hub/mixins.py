"""Mixins giving hfgen's models and pipelines safe ``save_pretrained``, verified ``from_pretrained`` and
``push_to_hub`` / ``save_pretrained`` that carry the hfgen card.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .cards import card_template_problem, registered_component, save_model_card, save_model_card_or_warn
from .remote import import_registered_libraries, resolve_folder, upload_folder
from .saving import (
    _VERIFIED,
    MARKER_NAMES,
    _verified,
    atomic_save_dir,
    check_weights_safe,
    consistent_load,
    verify_once,
)


class SafeSaveMixin:
    """For a Diffusers/transformers class: ``save_pretrained`` through [`atomic_save_dir`] (with checksums),
    and ``from_pretrained`` of a local folder runs [`verify_folder`] first. Put it first among the bases."""

    # named so that a Diffusers pipeline saving this class as a component still passes them on
    def save_pretrained(self, save_directory, *args, safe_serialization=None, variant=None, max_shard_size=None,
                        use_flashpack=None, save_peft_format=None, **kwargs):
        import inspect

        if safe_serialization is False:  # transformers and Diffusers would write pickle weights
            raise ValueError("`safe_serialization=False` would write pickle weights, which hfgen's `from_pretrained` "
                             "and `hfgen.load` refuse to read: hfgen saves safetensors only (leave "
                             "`safe_serialization` at its default).")

        accepted = inspect.signature(super().save_pretrained).parameters
        for name, value in (("safe_serialization", safe_serialization), ("variant", variant),
                            ("max_shard_size", max_shard_size), ("use_flashpack", use_flashpack),
                            ("save_peft_format", save_peft_format)):
            if value is not None and name in accepted:
                kwargs[name] = value
        if not kwargs.get("is_main_process", True):
            return super().save_pretrained(save_directory, *args, **kwargs)
        with atomic_save_dir(save_directory) as tmp:
            out = super().save_pretrained(tmp, *args, **kwargs)
            self.save_extra_files(tmp)  # committed together with the weights
            return out

    def save_extra_files(self, folder: Path) -> None:
        """Hook: files written into the staging folder before the commit (e.g. a model card)."""

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                    token: str | None = None, create_pr: bool = False, revision: str | None = None,
                    safe_serialization: bool = True, variant: str | None = None, max_shard_size=None,
                    **ignored_hub_kwargs) -> str:
        """transformers' / Diffusers' ``push_to_hub`` (their common arguments): ``save_pretrained`` into a temporary
        folder, the hfgen model card added when the class is a registered hfgen component and its save wrote none
        (their own ``push_to_hub`` would write a generic card), then one upload of what [`upload_plan`] selects.
        ``use_temp_dir``, ``commit_description`` and ``tags`` are accepted for compatibility and ignored."""
        unknown = set(ignored_hub_kwargs) - {"use_temp_dir", "commit_description", "tags", "subfolder"}
        if unknown:
            raise TypeError(f"push_to_hub() got unexpected keyword arguments {sorted(unknown)}.")
        save_kwargs = {"safe_serialization": safe_serialization, "variant": variant, "max_shard_size": max_shard_size}
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, **{k: v for k, v in save_kwargs.items() if v is not None})
            found = registered_component(type(self))
            if found is not None and not (Path(tmp) / "README.md").exists():
                save_model_card(tmp, found[0].name, model_name=f"{found[1]} ({found[0].name})", repo_id=repo_id)
            return upload_folder(tmp, repo_id, commit_message=commit_message, private=private, token=token,
                                 create_pr=create_pr, revision=revision)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        path = pretrained_model_name_or_path
        if not (isinstance(path, (str, os.PathLike)) and Path(path).is_dir()):
            return super().from_pretrained(path, *args, **kwargs)
        folder = Path(path) / (kwargs.get("subfolder") or "")
        resolved = folder.resolve()
        nested = any(root == resolved or root in resolved.parents for root in _VERIFIED.get())

        def read():
            verify_once(folder)
            if (folder / "model_index.json").is_file():
                from hfgen.validation import check_pipeline_subfolders

                check_pipeline_subfolders(folder)
            if kwargs.get("config") is None and not any((folder / name).is_file() for name in MARKER_NAMES):
                # else transformers builds a default config and loads the weights into it
                raise ValueError(f"{folder} has none of {', '.join(MARKER_NAMES)}: it is not a saved model, or its "
                                 "save was interrupted.")
            with _verified(folder):
                return super(SafeSaveMixin, cls).from_pretrained(path, *args, **kwargs)

        return read() if nested else consistent_load(folder, read)


class HfgenPipelineMixin(SafeSaveMixin):
    """For hfgen's Diffusers pipelines (put it first among the bases): what Diffusers' own calls do, plus

    - ``from_pretrained("namespace/name")`` downloads the repo's snapshot first and loads that folder, as
      [`load`] does (Diffusers' own download step cannot resolve components whose library is not Diffusers), and
      imports the modules of the registered components its ``model_index.json`` names
      ([`import_registered_libraries`]), so a fresh process loads a plugin's pipeline;
    - ``save_pretrained`` writes the hfgen model card (``README.md``; [`model_card_kwargs`] adds the
      pipeline's own facts) once the weights are committed: a card that fails to render is a warning naming its
      template, never a lost save (creating a pipeline already warns when its saves would carry no card,
      [`card_problem`]); ``save_pretrained(..., push_to_hub=True)`` / ``push_to_hub`` upload that card
      instead of Diffusers' generic one (``library_name: diffusers``, which would advertise a
      ``DiffusionPipeline.from_pretrained`` call that cannot load this class);
    - weights only as safetensors (a repo holding only pickle weights is refused, as by [`load`]).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        problem = self.card_problem()
        if problem is not None:
            warnings.warn(f"{type(self).__name__}: {problem}; its saves will hold the weights but no model card.",
                          stacklevel=2)

    @classmethod
    def card_problem(cls) -> str | None:
        """Why saves of this pipeline would carry no model card (it is no registered component of an installed
        method, or its method's card template cannot be loaded), or ``None``. Checked when a pipeline is created."""
        found = cls.hfgen_component()
        if found is None:
            return (f"no installed hfgen method registers `{cls.__module__}:{cls.__qualname__}` (or a base class of "
                    "it) among its components")
        return card_template_problem(found[0].name)

    def model_card_kwargs(self) -> dict[str, Any]:
        """Extra [`render_model_card`] arguments of this pipeline (base model, training config, template vars)."""
        return {}

    @classmethod
    def hfgen_component(cls) -> tuple[Any, str] | None:
        """``(MethodInfo, class name)`` of the registered hfgen class this pipeline is (or subclasses)."""
        return registered_component(cls)

    def save_model_card(self, save_directory: str | os.PathLike, repo_id: str | None = None) -> Path | None:
        """Write the card into ``save_directory`` (``None`` for an unregistered class, or a warning if it fails)."""
        found = self.hfgen_component()
        if found is None:
            return None
        info, name = found
        kwargs = {"model_name": f"{name} ({info.name})", **self.model_card_kwargs()}
        return save_model_card_or_warn(save_directory, info.name, owner=type(self).__name__, pipeline_class=name,
                                       repo_id=repo_id, **kwargs)

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        hub = {k: kwargs.pop(k) for k in ("repo_id", "commit_message", "private", "create_pr", "token") if k in kwargs}
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):  # after the weights are committed: a card problem never costs them
            self.save_model_card(save_directory, repo_id=hub.get("repo_id"))
        if push_to_hub:
            return self._push_folder(save_directory, hub.pop("repo_id", None) or Path(save_directory).name, **hub)

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                    token: str | None = None, create_pr: bool = False, safe_serialization: bool = True,
                    variant: str | None = None, subfolder: str | None = None) -> str:
        """Diffusers' ``push_to_hub`` (same arguments), uploading the hfgen card with the safetensors weights."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, safe_serialization=safe_serialization, variant=variant, repo_id=repo_id)
            return self._push_folder(tmp, repo_id, commit_message=commit_message, private=private, token=token,
                                     create_pr=create_pr, subfolder=subfolder)

    def _push_folder(self, folder, repo_id: str, commit_message=None, private=None, token=None, create_pr=False,
                     subfolder=None) -> str:
        return upload_folder(folder, repo_id, commit_message=commit_message, private=private, token=token,
                             create_pr=create_pr, path_in_repo=subfolder)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, allow_pickle: bool = False, **kwargs):
        path = pretrained_model_name_or_path
        if isinstance(path, (str, os.PathLike)) and not Path(path).is_dir():
            download = {k: kwargs.pop(k) for k in ("revision", "token", "cache_dir", "force_download",
                                                   "local_files_only") if k in kwargs}
            path = resolve_folder(path, **download)
        if isinstance(path, (str, os.PathLike)):
            check_weights_safe(path, allow_pickle=allow_pickle)
            import_registered_libraries(Path(path) / (kwargs.get("subfolder") or ""))
        return super().from_pretrained(path, *args, **kwargs)

