"""Safe saving: atomic folder commits, checksums of every saved file, verification on load, pickle refusal.

[`atomic_save_dir`] writes a folder under a temporary name and renames it into place, so an interrupted
save never leaves a half-written folder where a good one was; [`verify_folder`] checks a saved folder
against the checksums written with it; [`consistent_load`] retries a read that overlapped a save.
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
from pathlib import Path

# the one list of pickle file endings: never uploaded (pushes, a trainer's Hub uploads), never loaded, optional
# when a save is verified
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill")
PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "diffusion_pytorch_model.bin", "adapter_model.bin", "model.ckpt", "model.pt")
SAFE_WEIGHT_SUFFIX = ".safetensors"
logger = logging.getLogger(__name__)


class UnsafeWeightsError(ValueError):
    """Raised for a folder whose weights are only available as pickle files."""


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


# Commits into a folder lock its parent folder (``fcntl.flock`` on the folder itself, so no lock file is left):
# a writer holds it exclusively for its commit's renames only, a reader shared for one load. Waits are bounded.
WRITER_WAIT = 600.0
READER_WAIT = 120.0


def _in_staging(folder: Path) -> bool:
    """Whether ``folder`` lies inside a staging folder: a nested save (a pipeline's component), private to its owner."""
    return any(part.startswith(STAGING_PREFIX) for part in folder.parts)


def _savers(*folders: Path) -> list[str]:
    """``host <h> pid <n>`` of each live save staging in ``folders`` (from the staging folders' names)."""
    found = []
    for folder in folders:
        try:
            names = [e.name for e in os.scandir(folder) if e.name.startswith(STAGING_PREFIX)]
        except OSError:
            continue
        found += [f"pid {m.group(2)}" + ("" if m.group(1) == _HOST else " on another host")
                  for n in names if (m := _STAGING_OWNER.match(n)) and _staging_is_live(n)]
    return sorted(set(found))


@contextlib.contextmanager
def save_lock(directory: Path, shared: bool, wait: float, target: Path | None = None) -> Iterator[bool]:
    """Hold the advisory save lock of ``directory`` (``fcntl.flock`` on the folder; shared for a load, exclusive for
    a commit into one of its entries), waiting at most ``wait`` seconds; then a [`ConcurrentSaveError`] naming the
    processes saving into ``target``. Where ``fcntl`` is missing (Windows) or the folder cannot be opened, nothing
    is locked (loads then fall back on [`consistent_load`]'s retries). Yields whether the lock is held."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        deadline, pause = time.monotonic() + wait, 0.002
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    where = target or directory
                    others = ", ".join(_savers(where, directory)) or "a load or save of another process"
                    raise ConcurrentSaveError(
                        f"{where}: waited {wait:.0f} s for another process to finish {'its save' if shared else 'there'}"
                        f" (holding the save lock of {directory}: {others}). Retry once it is done, or save "
                        "elsewhere.") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
        yield True
    finally:
        os.close(fd)  # releases the lock


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

    On commit, [`CHECKSUMS_NAME`] records the size and SHA-256 of every file written; the new entries replace
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
        # commits into one place are serialised: two processes saving there take turns, and readers see whole saves
        with contextlib.nullcontext() if _in_staging(folder) else save_lock(folder.parent, False, WRITER_WAIT, folder):
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
        # after reading has read one save (see [`consistent_load`])
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
    """Write [`CHECKSUMS_NAME`]: size and SHA-256 (the Hub's LFS oid) of every file under ``folder`` (weights,
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

    Every [`CHECKSUMS_NAME`] of the save (its subfolders included, ``checkpoint-*`` folders excluded) is
    checked: each listed file (weights, configs, tokenizer files, ...) exists, with its size and (``hashes=True``)
    its SHA-256, which catches a flipped bit anywhere; then every safetensors file's header and tensor bounds.
    A listed pickle (``training_args.bin``, a checkpoint's ``optimizer.pt``) may be missing unless
    ``pickles_required`` (for resuming): [`push`] never uploads pickles and no hfgen load reads them.
    """
    folder = Path(folder)
    if not (folder / CHECKSUMS_NAME).is_file() and not (folder.parent / CHECKSUMS_NAME).is_file():
        logger.warning("%s has no %s: the integrity of its files is UNVERIFIED (only safetensors headers and tensor "
                       "bounds are checked, so a flipped bit would load silently). Saves written by hfgen list their "
                       "files there; it is missing if the folder came from another tool or the file was deleted.",
                       folder, CHECKSUMS_NAME)
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

    A save commits by renames ([`atomic_save_dir`]) and its checksum file is replaced before any other new
    entry comes in and after every old one went out; so when the checksum file is the same before and after
    ``read()``, everything read came from that one save. Otherwise, or if ``read`` failed while a live process
    was saving there, it is retried; after ``attempts`` tries it is a [`ConcurrentSaveError`]. The read holds the
    save lock of the folder's parent shared ([`save_lock`]), so no hfgen commit overlaps it and it is not
    retried; waiting for it is bounded by [`READER_WAIT`].
    """
    folder = Path(folder)
    error: BaseException | None = None
    # the save locks covering the folder: its parent's, and its pipeline's parent's if it is a component, outermost first
    resolved = folder.resolve()
    component = (resolved.parent / "model_index.json").is_file()
    locks = [resolved.parent.parent] * component + [resolved.parent]
    for attempt in range(attempts):
        with contextlib.ExitStack() as stack:
            # while held, no hfgen save commits there: a live staging folder is a save waiting for its turn
            locked = all([stack.enter_context(save_lock(lock, True, READER_WAIT, folder)) for lock in locks])
            before = _generation(folder)
            try:
                result = read()
            except Exception as err:
                if _generation(folder) == before and (locked or not save_in_progress(folder)):
                    raise
                error = err
            else:
                after = _generation(folder)
                if after == before and (before is not None or locked or not save_in_progress(folder)):
                    return result
                error = None
        logger.debug("Reading %s again: a save changed it meanwhile (attempt %d of %d).", folder, attempt + 1, attempts)
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
    """[`verify_folder`], unless ``folder`` is inside a folder already verified by the load in progress."""
    resolved = Path(folder).resolve()
    if not any(root == resolved or root in resolved.parents for root in _VERIFIED.get()):
        verify_folder(folder)


def _files_inside(folder: Path) -> list[Path]:
    """Regular files under ``folder``, never entering hidden folders (staging folders of saves in progress, caches)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return found


def check_weights_safe(folder: str | os.PathLike, allow_pickle: bool = False) -> None:
    """Refuse a folder (recursively) that holds pickle weights but no safetensors weights."""
    folder = Path(folder)
    files = _files_inside(folder)
    safe = [p for p in files if p.name.endswith(SAFE_WEIGHT_SUFFIX)]
    pickled = [p for p in files if p.name in PICKLE_WEIGHT_NAMES or p.name.endswith(PICKLE_SUFFIXES)]
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
