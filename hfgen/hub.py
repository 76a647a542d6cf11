"""Model cards, safe saving, pushing to the Hub and loading any saved hfgen artifact.

- :func:`render_model_card` / :func:`save_model_card` fill ``model_cards/<method>.md`` with the
  Hub metadata every hfgen card carries (``library_name: hfgen``, ``hfgen`` and ``hfgen-<method>``
  tags, the paper, base model, data sets, training config, ``model-index`` results).
- :func:`atomic_save_dir` writes a folder under a temporary name and renames it into place, so an
  interrupted save never leaves a half-written folder where a good one was; :func:`verify_folder`
  checks a saved folder's safetensors against the checksums written with it.
- :func:`push` uploads a saved folder with ``huggingface_hub`` in one commit; :class:`HfgenPipelineMixin` gives
  hfgen's Diffusers pipelines ``from_pretrained`` of a Hub repo id and ``save_pretrained`` / ``push_to_hub`` that
  carry the hfgen card.
- :func:`load` loads a local folder or a Hub repo id, dispatching on what the folder holds.

Weights are safetensors only: a folder that holds only pickle weights is refused unless the caller
passes ``allow_pickle=True`` (and even then nothing is unpickled by hfgen itself).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "diffusion_pytorch_model.bin", "adapter_model.bin", "model.ckpt", "model.pt")
SAFE_WEIGHT_SUFFIX = ".safetensors"
logger = logging.getLogger(__name__)


class UnsafeWeightsError(ValueError):
    """Raised for a folder whose weights are only available as pickle files."""


# ----------------------------------------------------------------------------------------- cards


def _template_target(method: str) -> str:
    from hfgen.registry import get_method

    return get_method(method).card_template or "hfgen.model_cards:_base.md"


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
    **template_vars: Any,
):
    """Render the model card of an artifact of ``method`` (a registered method name).

    ``eval_results`` is a list of dicts with keys ``task_type``, ``dataset_type``, ``dataset_name``,
    ``metric_type``, ``metric_value`` (and optionally ``metric_name``); they become ``model-index``.
    ``pipeline_class`` (the name of an hfgen pipeline class) adds the skeleton's "Loading this pipeline" block
    and keeps the ``diffusers`` tag off the card: ``DiffusionPipeline.from_pretrained`` cannot load a pipeline
    class Diffusers does not define, so the Hub must not list the repo as a Diffusers one.
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
        tags=[t for t in dict.fromkeys([*info.hub_tags, *extra_tags])
              if not (template_vars.get("pipeline_class") and t == "diffusers")],
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
        base_model=base_model,
        datasets=datasets or [],
        training_config=training_config or {},
        eval_results=eval_results or [],
        **template_vars,
    ))


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
# Saved files that no loader reads and that tools rewrite after a save (model cards): not checksummed.
UNLISTED_NAMES = ("README.md", ".gitattributes")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
# staging folders are named .hfgen-tmp-<host>-<pid>-<random>, so a later save can tell a dead owner's debris
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_STAGING_OWNER = re.compile(r"^" + re.escape(STAGING_PREFIX) + r"([0-9a-f]{8})-(\d+)-")


def _is_weights(name: str) -> bool:
    """Weights and their index files: a new save replaces all of them, not only the names it writes, so that a
    save with another shard layout or variant cannot leave old weights behind that a loader would prefer."""
    return (name == CHECKSUMS_NAME or name.endswith((".safetensors", ".safetensors.index.json", ".bin.index.json"))
            or (name.endswith(".bin") and name != "training_args.bin"))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _staging_is_live(name: str) -> bool:
    """Whether the staging folder ``name`` may belong to a save in progress (its owner lives, or is unknown:
    another host, or a folder named by an older hfgen)."""
    match = _STAGING_OWNER.match(name)
    return match is None or match.group(1) != _HOST or _pid_alive(int(match.group(2)))


def clean_stale_staging(*folders: str | os.PathLike) -> list[Path]:
    """Remove the ``.hfgen-tmp-*`` folders in ``folders`` left by a save whose process is gone (a killed save);
    those of live processes, other hosts or an older hfgen are kept. Returns the removed paths."""
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False) \
                    and not _staging_is_live(entry.name):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    if removed:
        logger.info("Removed %d leftover folder(s) of killed saves: %s", len(removed), ", ".join(map(str, removed)))
    return removed


def save_in_progress(folder: str | os.PathLike) -> bool:
    """Whether a live process may be saving into ``folder`` (a staging folder of a live owner inside or beside it)."""
    folder = Path(folder)
    for parent in (folder, folder.parent):
        try:
            names = [e.name for e in os.scandir(parent) if e.name.startswith(STAGING_PREFIX)]
        except OSError:
            continue
        if any(_staging_is_live(n) for n in names):
            return True
    return False


@contextlib.contextmanager
def atomic_save_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder (with ``folder``'s name) to write into; on success it is committed to ``folder``.

    On commit, :data:`CHECKSUMS_NAME` records the size and SHA-256 of every file written; the new entries replace
    same-named entries of ``folder`` and every old weights file by renames, and other entries (e.g. a trainer's
    ``checkpoint-*`` folders) are kept; a save of another kind (a model over a pipeline) also moves the old
    kind's marker files and component folders out, so the old artifact no longer loads. Staging happens inside
    ``folder`` when it exists (so the renames never cross a file system: mounts and symlinks are fine), else next
    to it; staging folders left by killed saves are removed first. An exception (or a killed process) before the
    commit leaves ``folder`` as it was; a kill during the renames leaves it without its marker file
    (``config.json``, ...), so it fails to load instead of loading a mix; the previous files then sit in a hidden
    ``.hfgen-tmp-*`` folder until the next save.
    """
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    parent = folder if folder.is_dir() else folder.parent
    clean_stale_staging(*{folder.parent, parent})
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_HOST}-{os.getpid()}-", dir=parent))
    old = staging / ".old"
    try:
        tmp = staging / folder.name
        tmp.mkdir()
        yield tmp
        write_checksums(tmp, replace=False)
        _commit(tmp, folder, old)
        shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        if not (old.is_dir() and any(old.iterdir())):  # else the roll-back failed: keep the previous files there
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _other_kind(folder: Path, new_names: set[str]) -> list[str]:
    """When the new save has a marker file: the old marker files it does not replace and the old pipeline's
    component folders, so that a model saved over a pipeline (or the reverse) leaves only the new one loadable."""
    if not new_names & set(MARKER_NAMES):
        return []
    names = [n for n in MARKER_NAMES if n not in new_names and (folder / n).is_file()]
    if "model_index.json" in names:
        try:
            index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
            names += sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)
                            and k not in new_names and not _CHECKPOINT_DIR.match(k) and (folder / k).is_dir())
        except (OSError, ValueError, AttributeError):
            pass
    return names


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
    other_kind = _other_kind(folder, new_names)
    entries = sorted(tmp.iterdir(), key=lambda p: (p.name in MARKER_NAMES, p.name))  # markers last
    moved_out, moved_in = [], []
    try:
        # take the old copies out, markers first; the checksum file (the save's generation) goes out after every
        # other entry it lists and comes in before them, so a reader that sees the same generation before and
        # after reading has read one save (see :func:`consistent_load`)
        order = sorted([e.name for e in reversed(entries)], key=lambda n: n == CHECKSUMS_NAME)
        order = [n for n in other_kind if n in MARKER_NAMES] + order + stale + [n for n in other_kind if n not in MARKER_NAMES]
        for name in order:
            if os.path.lexists(folder / name):
                os.replace(folder / name, old / name)
                moved_out.append(name)
        for entry in sorted(entries, key=lambda p: p.name != CHECKSUMS_NAME):
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


def write_checksums(folder: str | os.PathLike, replace: bool = True) -> Path:
    """Write :data:`CHECKSUMS_NAME`: size and SHA-256 (the Hub's LFS oid) of every file under ``folder`` (weights,
    configs, scheduler and adapter configs, tokenizer files, a checkpoint's optimizer / scheduler / RNG / trainer
    state) but model cards, that no checksum file of a subfolder (a component saved on its own, e.g. a pipeline's
    ``unet/``) lists, and a fresh ``generation`` id. ``replace``: write a temporary file and rename it into place."""
    folder = Path(folder)
    covered = [m.parent for m in _saved_files(folder, CHECKSUMS_NAME) if m.parent != folder]
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in _saved_files(folder) if p.name != CHECKSUMS_NAME and p.name not in UNLISTED_NAMES
             and not any(c in p.parents for c in covered)}
    path = folder / CHECKSUMS_NAME
    text = json.dumps({"algorithm": "sha256", "generation": uuid.uuid4().hex, "files": files}, indent=2, sort_keys=True)
    if not replace:
        path.write_text(text, encoding="utf-8")
        return path
    tmp = folder / f".{CHECKSUMS_NAME}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def verify_folder(folder: str | os.PathLike, hashes: bool = True, pickles_required: bool = False) -> None:
    """Raise a ``ValueError`` naming the file if a saved folder's files are missing, truncated, corrupted or edited.

    Every :data:`CHECKSUMS_NAME` of the save (its subfolders included, ``checkpoint-*`` folders excluded) is
    checked: each listed file (weights, configs, tokenizer files, ...) exists, with its size and (``hashes=True``)
    its SHA-256, which catches a flipped bit anywhere; then every safetensors file's header and tensor bounds.
    A listed pickle (``training_args.bin``, a checkpoint's ``optimizer.pt``) may be missing unless
    ``pickles_required`` (for resuming): :func:`push` never uploads pickles and no hfgen load reads them.
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
                if not pickles_required and path.name.endswith(PICKLE_SUFFIXES) and not os.path.lexists(path):
                    continue
                raise ValueError(f"{path} is missing: {manifest.name} lists it, so this save is incomplete.")
            size = path.stat().st_size
            if size != expected["size"]:
                raise ValueError(f"{path} is {size} bytes but was saved with {expected['size']} (truncated, edited or "
                                 f"corrupted); delete {manifest.name} only if you rewrote the file on purpose.")
            if hashes and _sha256(path) != expected["sha256"]:
                raise ValueError(f"{path} does not match the SHA-256 it was saved with (edited or corrupted); delete "
                                 f"{manifest.name} only if you rewrote the file on purpose.")
    for weights in _saved_files(folder, SAFE_WEIGHT_SUFFIX):
        verify_safetensors(weights)


_RETRIES = [0]  # reads retried because a save overlapped them (reported by the tests)


class ConcurrentSaveError(ValueError):
    """A folder kept changing while it was being loaded: another process is saving into it."""


def _generation(folder: Path) -> str | None:
    """The save generation of ``folder`` (its checksum file's content digest), ``None`` without one."""
    try:
        return hashlib.sha256((folder / CHECKSUMS_NAME).read_bytes()).hexdigest()
    except OSError:
        return None


def consistent_load(folder: str | os.PathLike, read, attempts: int = 40, wait: float = 0.05):
    """``read()`` (a load from ``folder``), retried until it read one whole save.

    A save commits by renames (:func:`atomic_save_dir`) and its checksum file is replaced before any other new
    entry comes in and after every old one went out; so when the checksum file is the same before and after
    ``read()``, everything read came from that one save. Otherwise, or if ``read`` failed while a live process
    was saving there, it is retried; after ``attempts`` tries it is a :class:`ConcurrentSaveError`.
    """
    folder = Path(folder)
    error: BaseException | None = None
    for attempt in range(attempts):
        before = _generation(folder)
        try:
            result = read()
        except Exception as err:
            if _generation(folder) == before and not save_in_progress(folder):
                raise
            error = err
        else:
            after = _generation(folder)
            if after == before and (before is not None or not save_in_progress(folder)):
                return result
            error = None
        _RETRIES[0] += 1
        time.sleep(wait * min(attempt + 1, 10))
    detail = f" (last error: {type(error).__name__}: {error})" if error is not None else ""
    raise ConcurrentSaveError(f"{folder} changed while it was being loaded, {attempts} times: another process is saving "
                              f"into it. Load it once that save is done{detail}.") from error


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


def registered_component(cls: type) -> tuple[Any, str] | None:
    """``(MethodInfo, class name)`` of the registered hfgen component ``cls`` is or subclasses (same module path)."""
    from hfgen.registry import list_methods

    for klass in cls.__mro__:
        for info in list_methods():
            target = info.components.get(klass.__name__)
            if target is not None and target == f"{klass.__module__}:{klass.__qualname__}":
                return info, klass.__name__
    return None


def upload_folder(folder, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                  token: str | None = None, create_pr: bool = False, revision: str | None = None,
                  path_in_repo: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit: only what :func:`upload_plan` selects
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
        (their own ``push_to_hub`` would write a generic card), then one upload of what :func:`upload_plan` selects.
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
            if kwargs.get("config") is None and not any((folder / name).is_file() for name in MARKER_NAMES):
                # else transformers builds a default config and loads the weights into it
                raise ValueError(f"{folder} has none of {', '.join(MARKER_NAMES)}: it is not a saved model, or its "
                                 "save was interrupted.")
            with _verified(folder):
                return super(SafeSaveMixin, cls).from_pretrained(path, *args, **kwargs)

        return read() if nested else consistent_load(folder, read)


def _files_inside(folder: Path) -> list[Path]:
    """Regular files under ``folder``, never entering hidden folders (staging folders of saves in progress, caches)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return found


_CARD_REPO_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("hfgen_card_repo_id", default=None)


class HfgenPipelineMixin(SafeSaveMixin):
    """For hfgen's Diffusers pipelines (put it first among the bases): what Diffusers' own calls do, plus

    - ``from_pretrained("namespace/name")`` downloads the repo's snapshot first and loads that folder, as
      :func:`load` does (Diffusers' own download step cannot resolve components whose library is not Diffusers);
    - ``save_pretrained`` writes the hfgen model card (``README.md``; :meth:`model_card_kwargs` adds the
      pipeline's own facts), and ``save_pretrained(..., push_to_hub=True)`` / ``push_to_hub`` upload that card
      instead of Diffusers' generic one (``library_name: diffusers``, which would advertise a
      ``DiffusionPipeline.from_pretrained`` call that cannot load this class);
    - weights only as safetensors (a repo holding only pickle weights is refused, as by :func:`load`).
    """

    def model_card_kwargs(self) -> dict[str, Any]:
        """Extra :func:`render_model_card` arguments of this pipeline (base model, training config, template vars)."""
        return {}

    @classmethod
    def hfgen_component(cls) -> tuple[Any, str] | None:
        """``(MethodInfo, class name)`` of the registered hfgen class this pipeline is (or subclasses)."""
        return registered_component(cls)

    def save_extra_files(self, folder: Path) -> None:
        super().save_extra_files(folder)
        self.save_model_card(folder, repo_id=_CARD_REPO_ID.get())

    def save_model_card(self, save_directory: str | os.PathLike, repo_id: str | None = None) -> Path | None:
        found = self.hfgen_component()
        if found is None:
            return None
        info, name = found
        kwargs = {"model_name": f"{name} ({info.name})", **self.model_card_kwargs()}
        return save_model_card(save_directory, info.name, pipeline_class=name, repo_id=repo_id, **kwargs)

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        hub = {k: kwargs.pop(k) for k in ("repo_id", "commit_message", "private", "create_pr", "token") if k in kwargs}
        token = _CARD_REPO_ID.set(hub.get("repo_id"))
        try:
            super().save_pretrained(save_directory, *args, **kwargs)  # the card is written by save_extra_files
        finally:
            _CARD_REPO_ID.reset(token)
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
        return super().from_pretrained(path, *args, **kwargs)


def check_weights_safe(folder: str | os.PathLike, allow_pickle: bool = False) -> None:
    """Refuse a folder (recursively) that holds pickle weights but no safetensors weights."""
    folder = Path(folder)
    files = _files_inside(folder)
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
    """Upload a saved hfgen artifact folder to ``repo_id`` in one commit (what :func:`upload_plan` selects);
    returns the commit URL."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"`folder` {str(folder)!r} is not a directory.")
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must look like 'namespace/name', got {repo_id!r}.")
    return upload_folder(folder, repo_id, private=private, commit_message=commit_message, token=token,
                         revision=revision)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill")


def _is_pickle(path: Path) -> bool:
    """A pickle by name, or by content: a pickle stream (protocol 2-5) or a ``torch.save`` zip holding one."""
    if path.name.endswith(PICKLE_SUFFIXES):
        return True
    if path.suffix in (".safetensors", ".json", ".md", ".txt", ".model", ".jinja", ".yaml", ".yml", ".csv", ".png"):
        return False  # formats that cannot hold a pickle (a safetensors header length may start with 0x80)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return True
        if head == b"PK\x03\x04":
            import zipfile

            with zipfile.ZipFile(path) as z:
                return any(n.endswith(".pkl") for n in z.namelist())
    except (OSError, ValueError):
        return False
    return False


def upload_plan(folder: str | os.PathLike) -> tuple[list[tuple[str, Path]], list[tuple[Path, str]]]:
    """What :func:`push` uploads from ``folder``: ``(files, skipped)``. Only regular files inside the folder are
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


# ----------------------------------------------------------------------------------------- load


def resolve_folder(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | None = None,
                   **download_kwargs: Any) -> Path:
    """A local folder for ``name_or_path``: an existing folder, ``local-dir:PATH`` or a Hub repo id (its snapshot,
    downloaded with ``huggingface_hub.snapshot_download(**download_kwargs)``, e.g. ``cache_dir``)."""
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

    def read():
        if not any((folder / name).is_file() for name in MARKER_NAMES):  # before walking it: it may be a home folder
            raise ValueError(f"Don't know how to load {folder}: it has none of {', '.join(MARKER_NAMES)} (pipeline, "
                             "model, adapter or scheduler): not a saved artifact, or its save was interrupted.")
        check_weights_safe(folder, allow_pickle=allow_pickle)
        verify_folder(folder)  # a truncated, corrupted, edited or missing file is a clear error, not garbage
        with _verified(folder):  # the class's own from_pretrained need not hash the same files again
            return _load_verified(folder, **kwargs)

    return consistent_load(folder, read)


def _load_verified(folder: Path, **kwargs: Any):
    from hfgen.registry import find_component

    if (folder / "model_index.json").is_file():
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
        found = find_component(class_name) if class_name else None
        if found is not None:
            return found[1].from_pretrained(folder, **kwargs)
    raise ValueError(
        f"Don't know how to load {folder}: expected model_index.json (pipeline), adapter_config.json "
        "(adapter), config.json (model) or scheduler_config.json (scheduler)."
    )
