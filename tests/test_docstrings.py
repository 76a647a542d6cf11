"""One docstring dialect (doc-builder): every training config documents each of its own fields in a TRL-style
``Parameters:`` section, no docstring uses Sphinx roles, and none sends readers to material they cannot see."""

import dataclasses
import re
from pathlib import Path

import pytest
from transformers import TrainingArguments

from hfgen.methods import builtin_methods

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted({(name, target) for info in builtin_methods() for name, target in info.components.items()
                  if target.startswith("hfgen.trainers.") and name.endswith("Config")})


@pytest.mark.parametrize("name,target", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_config_documents_each_of_its_fields(name, target):
    from hfgen.registry import _import_object

    cls = _import_object(target)
    assert issubclass(cls, TrainingArguments)
    base = next(b for b in cls.__mro__[1:] if dataclasses.is_dataclass(b))
    own = {f.name for f in dataclasses.fields(cls)} - {f.name for f in dataclasses.fields(base)}
    doc = cls.__doc__ or ""
    assert "Parameters:" in doc, f"{name} has no `Parameters:` section"
    section = doc.split("Parameters:", 1)[1]
    missing = sorted(f for f in own if not re.search(rf"\b{f}\b", section))
    assert not missing, f"{name}'s `Parameters:` section does not document {missing}"


def python_files():
    for folder in ("hfgen", "pipelines", "trainers", "scripts"):
        yield from (ROOT / folder).rglob("*.py")


def test_no_sphinx_roles_and_no_pointers_to_unseen_notes():
    roles, notes = [], []
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        roles += [f"{rel}: {m}" for m in re.findall(r":(?:class|func|meth|data|attr|mod):`[^`]+`", text)]
        notes += [f"{rel}: {m}" for m in re.findall(r"research notes?\b", text, flags=re.I)]
    assert not roles, "Sphinx roles (write [`X`] instead): " + "; ".join(roles[:5])
    assert not notes, "pointers to research notes readers cannot see: " + "; ".join(notes[:5])
