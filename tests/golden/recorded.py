"""Load the official implementations' recorded outputs (``tests/golden/data/``) with their provenance.

A recording is written by a script in ``scripts/golden/`` that imports the official code from a checkout of its
repository (never vendored). Each recording ``<upstream>/<name>`` is two files:

- ``<name>.safetensors``: the fixed inputs and the official outputs, as named tensors;
- ``<name>.provenance.json``: where they came from, with every field of ``PROVENANCE_FIELDS``.

Golden tests call :func:`load_recording` and compare hfgen's outputs with the recorded tensors.
"""

import json
from pathlib import Path

from safetensors.torch import load_file

DATA = Path(__file__).resolve().parent / "data"
PROVENANCE_FIELDS = ("repository", "commit", "file", "function", "seeds", "versions", "command", "recorded")


def read_provenance(path: Path) -> dict:
    provenance = json.loads(path.read_text())
    missing = [f for f in PROVENANCE_FIELDS if not provenance.get(f) and provenance.get(f) != 0]
    if missing:
        raise ValueError(f"{path} lacks provenance fields {missing}")
    return provenance


def load_recording(upstream: str, name: str) -> tuple[dict, dict]:
    """``(tensors, provenance)`` of ``tests/golden/data/<upstream>/<name>``."""
    folder = DATA / upstream
    return load_file(folder / f"{name}.safetensors"), read_provenance(folder / f"{name}.provenance.json")


def write_recording(upstream: str, name: str, tensors: dict, *, repository: str, checkout: str | Path, file: str,
                    function: str, seeds: dict, commit: str | None = None, versions: dict | None = None,
                    **notes) -> Path:
    """Write ``tests/golden/data/<upstream>/<name>`` (used by the recording scripts of ``scripts/golden/``).

    ``checkout`` is the folder the official code was imported from; its commit is read with ``git`` unless
    ``commit`` is given (for an exported snapshot without ``.git``). ``versions`` adds library versions to the
    always-recorded python / torch / numpy / safetensors ones; ``notes`` are further JSON fields (e.g. findings).
    """
    import datetime
    import platform
    import re
    import subprocess
    import sys

    import numpy
    import safetensors
    import torch
    from safetensors.torch import save_file

    if commit is None:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    if not re.fullmatch(r"[0-9a-f]{40}", commit or ""):
        raise ValueError(f"`commit` must be the checkout's 40-hex commit, got {commit!r}.")
    folder = DATA / upstream
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, folder / f"{name}.safetensors")
    provenance = dict(
        repository=repository, commit=commit, file=file, function=function, seeds=seeds,
        versions={"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                  "safetensors": safetensors.__version__, **(versions or {})},
        command="python " + " ".join(sys.argv),
        recorded=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **notes,
    )
    path = folder / f"{name}.provenance.json"
    path.write_text(json.dumps(provenance, indent=1, sort_keys=False) + "\n")
    read_provenance(path)
    return path
