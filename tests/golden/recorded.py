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
