"""Model cards, safe saving, pushing to the Hub and loading any saved hfgen artifact.

- :func:`render_model_card` / :func:`save_model_card` fill ``model_cards/<method>.md`` with the
  Hub metadata every hfgen card carries (``library_name: hfgen``, ``hfgen`` and ``hfgen-<method>``
  tags, the paper, base model, data sets, training config, ``model-index`` results).
- :func:`atomic_save_dir` writes a folder under a temporary name and renames it into place, so an
  interrupted save never leaves a half-written folder where a good one was; :func:`verify_folder`
  checks a saved folder's safetensors against the checksums written with it.
- :func:`push` uploads a saved folder with ``huggingface_hub`` in one commit.
- :func:`load` loads a local folder or a Hub repo id, dispatching on what the folder holds.

Weights are safetensors only: a folder that holds only pickle weights is refused unless the caller
passes ``allow_pickle=True`` (and even then nothing is unpickled by hfgen itself).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
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


CHECKSUMS_NAME = "hfgen_checksums.json"
STAGING_PREFIX = ".hfgen-tmp-"
# The files a loader dispatches on; a save moves them out first and in last, so a swap cut short leaves a
# folder with no marker, which every loader refuses, rather than a mix of old and new weights.
MARKER_NAMES = ("model_index.json", "config.json", "adapter_config.json", "scheduler_config.json")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")


def _is_weights(name: str) -> bool:
    """Weights and their index files: a new save replaces all of them, not only the names it writes, so that a
    save with another shard layout or variant cannot leave old weights behind that a loader would prefer."""
    return (name == CHECKSUMS_NAME or name.endswith((".safetensors", ".safetensors.index.json", ".bin.index.json"))
            or (name.endswith(".bin") and name != "training_args.bin"))


@contextlib.contextmanager
def atomic_save_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder (with ``folder``'s name) to write into; on success it is committed to ``folder``.

    On commit, :data:`CHECKSUMS_NAME` records the size and SHA-256 of every safetensors file written; the new
    entries replace same-named entries of ``folder`` and every old weights file by renames, and other entries
    (e.g. a trainer's ``checkpoint-*`` folders) are kept. Staging happens inside ``folder`` when it exists (so
    the renames never cross a file system: mounts and symlinks are fine), else next to it. An exception (or a
    killed process) before the commit leaves ``folder`` as it was; a kill during the renames leaves it without
    its marker file (``config.json``, ...), so it fails to load instead of loading a mix; the previous files
    then sit in a hidden ``.hfgen-tmp-*`` folder.
    """
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder if folder.is_dir() else folder.parent))
    old = staging / ".old"
    try:
        tmp = staging / folder.name
        tmp.mkdir()
        yield tmp
        write_checksums(tmp)
        _commit(tmp, folder, old)
        shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        if not (old.is_dir() and any(old.iterdir())):  # else the roll-back failed: keep the previous files there
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _commit(tmp: Path, folder: Path, old: Path) -> None:
    if not folder.exists():
        try:
            os.replace(tmp, folder)
            return
        except OSError:  # created meanwhile (e.g. another rank writing its RNG state into a checkpoint): merge
            pass
    if not folder.is_dir():
        raise NotADirectoryError(f"Cannot save into {folder}: it exists and is not a directory.")
    old.mkdir()
    new_names = {entry.name for entry in tmp.iterdir()}
    stale = [p.name for p in folder.iterdir() if p.is_file() and _is_weights(p.name) and p.name not in new_names]
    entries = sorted(tmp.iterdir(), key=lambda p: (p.name in MARKER_NAMES, p.name))  # markers last
    moved_out, moved_in = [], []
    try:
        for name in [e.name for e in reversed(entries)] + stale:  # take the old copies out, markers first
            if os.path.lexists(folder / name):
                os.replace(folder / name, old / name)
                moved_out.append(name)
        for entry in entries:
            os.replace(entry, folder / entry.name)
            moved_in.append(entry.name)
    except BaseException:  # an error (not a kill) mid-way: put the previous save back
        for name in reversed(moved_in):
            os.replace(folder / name, tmp / name)
        for name in reversed(moved_out):
            os.replace(old / name, folder / name)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _saved_files(folder: Path, name: str | None = None) -> list[Path]:
    """Files under ``folder`` (all, or those called ``name``, or safetensors when ``name`` is ``".safetensors"``),
    skipping hidden entries (staging folders, caches) and trainer ``checkpoint-N`` folders: those are separate saves."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _CHECKPOINT_DIR.match(d))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")
                  and (name is None or f == name or (name == SAFE_WEIGHT_SUFFIX and f.endswith(name)))]
    return found


def write_checksums(folder: str | os.PathLike) -> Path:
    """Write :data:`CHECKSUMS_NAME`: size and SHA-256 (the Hub's LFS oid) of each safetensors file under ``folder``
    that no checksum file of a subfolder (a component saved on its own, e.g. a pipeline's ``unet/``) lists."""
    folder = Path(folder)
    covered = [m.parent for m in _saved_files(folder, CHECKSUMS_NAME) if m.parent != folder]
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in _saved_files(folder, SAFE_WEIGHT_SUFFIX) if not any(c in p.parents for c in covered)}
    path = folder / CHECKSUMS_NAME
    path.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=2, sort_keys=True), encoding="utf-8")
    return path


def verify_folder(folder: str | os.PathLike, hashes: bool = True) -> None:
    """Raise a ``ValueError`` naming the file if a saved folder's weights are missing, truncated or corrupted.

    Every :data:`CHECKSUMS_NAME` of the save (its subfolders included, ``checkpoint-*`` folders excluded) is
    checked: each listed file exists, with its size and (``hashes=True``) its SHA-256, which catches a flipped
    bit anywhere; then every safetensors file's header and tensor bounds.
    """
    folder = Path(folder)
    for manifest in _saved_files(folder, CHECKSUMS_NAME):
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{manifest} is not a valid hfgen checksum file (truncated or corrupted?): {err}") from err
        for rel, expected in sorted(listed.items()):
            path = manifest.parent / rel
            if not path.is_file():
                raise ValueError(f"{path} is missing: {manifest.name} lists it, so this save is incomplete.")
            size = path.stat().st_size
            if size != expected["size"]:
                raise ValueError(f"{path} is {size} bytes but was saved with {expected['size']} (truncated or "
                                 f"corrupted); delete {manifest.name} only if you rewrote the file on purpose.")
            if hashes and _sha256(path) != expected["sha256"]:
                raise ValueError(f"{path} does not match the SHA-256 it was saved with (corrupted); delete "
                                 f"{manifest.name} only if you rewrote the file on purpose.")
    for weights in _saved_files(folder, SAFE_WEIGHT_SUFFIX):
        verify_safetensors(weights)


_VERIFIED: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("hfgen_verified", default=())


@contextlib.contextmanager
def _verified(folder: Path) -> Iterator[None]:
    """Within this block, loads from ``folder`` (e.g. a pipeline's components) are not verified again."""
    token = _VERIFIED.set((*_VERIFIED.get(), folder.resolve()))
    try:
        yield
    finally:
        _VERIFIED.reset(token)


def verify_once(folder: str | os.PathLike) -> None:
    """:func:`verify_folder`, unless ``folder`` is inside a folder already verified by the load in progress."""
    resolved = Path(folder).resolve()
    if not any(root == resolved or root in resolved.parents for root in _VERIFIED.get()):
        verify_folder(folder)


class SafeSaveMixin:
    """For a Diffusers/transformers class: ``save_pretrained`` through :func:`atomic_save_dir` (with checksums),
    and ``from_pretrained`` of a local folder runs :func:`verify_folder` first. Put it first among the bases."""

    # named so that a Diffusers pipeline saving this class as a component still passes them on
    def save_pretrained(self, save_directory, *args, safe_serialization=None, variant=None, max_shard_size=None,
                        use_flashpack=None, save_peft_format=None, **kwargs):
        import inspect

        accepted = inspect.signature(super().save_pretrained).parameters
        for name, value in (("safe_serialization", safe_serialization), ("variant", variant),
                            ("max_shard_size", max_shard_size), ("use_flashpack", use_flashpack),
                            ("save_peft_format", save_peft_format)):
            if value is not None and name in accepted:
                kwargs[name] = value
        if not kwargs.get("is_main_process", True):
            return super().save_pretrained(save_directory, *args, **kwargs)
        with atomic_save_dir(save_directory) as tmp:
            return super().save_pretrained(tmp, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        path = pretrained_model_name_or_path
        if not (isinstance(path, (str, os.PathLike)) and Path(path).is_dir()):
            return super().from_pretrained(path, *args, **kwargs)
        folder = Path(path) / (kwargs.get("subfolder") or "")
        verify_once(folder)
        if kwargs.get("config") is None and not any((folder / name).is_file() for name in MARKER_NAMES):
            # else transformers builds a default config and loads the weights into it
            raise ValueError(f"{folder} has none of {', '.join(MARKER_NAMES)}: it is not a saved model, or its save "
                             "was interrupted.")
        with _verified(folder):
            return super().from_pretrained(path, *args, **kwargs)


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
    """Raise a clear error if a ``.safetensors`` file is missing, truncated or corrupted."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing: expected a safetensors weights file there.")
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
        ignore_patterns=[".cache/*", "*.tmp", f"{STAGING_PREFIX}*", f"*/{STAGING_PREFIX}*",  # interrupted saves
                         "training_args.bin"],  # a pickle of the Trainer arguments
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

    The weights are checked first (:func:`verify_folder`): a missing, truncated or corrupted safetensors
    file raises a ``ValueError`` naming it.
    """

    folder = resolve_folder(name_or_path, revision=revision, token=token)
    check_weights_safe(folder, allow_pickle=allow_pickle)
    verify_folder(folder)  # a truncated, corrupted or missing weights file is a clear error, not garbage
    with _verified(folder):  # the class's own from_pretrained need not hash the same files again
        return _load_verified(folder, **kwargs)


def _load_verified(folder: Path, **kwargs: Any):
    from hfgen.registry import find_component

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
