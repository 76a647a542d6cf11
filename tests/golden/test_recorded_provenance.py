"""Every recording under ``tests/golden/data/`` is data with provenance, nothing else: each ``<name>.safetensors``
has its ``<name>.provenance.json`` naming the official repository, the 40-hex commit, the file and function the
values came from, the inputs' seeds, the library versions, the recording command (a script of
``scripts/golden/``) and when it was recorded; and no other kind of file lives there (no code)."""

import json
import re

import pytest
from safetensors import safe_open

from .recorded import DATA, PROVENANCE_FIELDS, read_provenance

RECORDINGS = sorted(DATA.rglob("*.safetensors"))


def test_the_data_folder_holds_only_recordings_and_their_provenance():
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert RECORDINGS, f"no recording under {DATA}"
    stray = [p for p in files if not (p.name.endswith(".safetensors") or p.name.endswith(".provenance.json"))]
    assert not stray, f"not a recording or its provenance: {stray}"
    orphans = [p for p in files if p.name.endswith(".provenance.json")
               and not p.with_name(p.name[: -len(".provenance.json")] + ".safetensors").is_file()]
    assert not orphans, f"provenance without its recording: {orphans}"


@pytest.mark.parametrize("recording", RECORDINGS, ids=lambda p: str(p.relative_to(DATA)))
def test_every_recording_has_its_provenance(recording):
    path = recording.with_name(recording.name[: -len(".safetensors")] + ".provenance.json")
    assert path.is_file(), f"{recording} has no {path.name}"
    provenance = read_provenance(path)  # every field of PROVENANCE_FIELDS present and non-empty
    assert set(PROVENANCE_FIELDS) <= set(json.loads(path.read_text()))
    assert re.fullmatch(r"(https://github\.com/)?[\w.-]+/[\w.-]+", provenance["repository"]), provenance["repository"]
    assert re.fullmatch(r"[0-9a-f]{40}", provenance["commit"]), provenance["commit"]
    assert isinstance(provenance["versions"], dict) and "torch" in provenance["versions"]
    assert re.search(r"scripts/golden/\w+\.py", provenance["command"]), provenance["command"]
    with safe_open(recording, framework="pt") as f:
        assert list(f.keys()), f"{recording} holds no tensor"


def test_no_transcription_of_official_code_remains():
    """Golden tests compare with recordings; the official code itself is imported only by scripts/golden/."""
    golden = DATA.parent
    transcriptions = sorted(p.name for p in golden.glob("_official_*.py"))
    assert not transcriptions, f"transcribed official code in tests/golden/: {transcriptions}"
    scripts = golden.parent.parent / "scripts" / "golden"
    assert all("--checkout" in p.read_text() for p in scripts.glob("record_*.py")), "a recorder not taking --checkout"
