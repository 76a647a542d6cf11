"""The manifests (``hfgen/methods/<name>.py``) are the only list of hfgen's methods: everything derived from them
agrees with them. Each check fails on a component that is not exported, does not resolve, has no reliability
builder, or a README zoo row that differs from the manifests.
"""

import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from hfgen.methods import builtin_methods, manifest_names

ROOT = Path(__file__).resolve().parents[1]
METHODS = builtin_methods()
sys.path.insert(0, str(Path(__file__).parent / "_reliability_workers"))


def test_entry_points_are_the_manifest_folder():
    registered = {ep.name: ep.value for ep in entry_points(group="hfgen.methods") if ep.value.startswith("hfgen.")}
    assert registered == {name: f"hfgen.methods.{name}:METHOD" for name in manifest_names()}, (
        "setup.py's entry points differ from hfgen/methods/: rerun `pip install -e .`"
    )
    assert sorted(m.name for m in METHODS) == manifest_names(), "a manifest's `name` differs from its module's"
    assert len({m.position for m in METHODS}) == len(METHODS), "two manifests share a `position`"


@pytest.mark.parametrize("info", METHODS, ids=lambda m: m.name)
def test_every_component_resolves_and_is_exported(info):
    import importlib

    for name, target in info.components.items():
        obj = info.load_component(name)
        assert getattr(obj, "__name__", name) == name, f"{target} resolves to an object named {obj.__name__!r}"
        for package in ("hfgen.trainers", "hfgen.pipelines"):
            if target.startswith(package + "."):
                module = importlib.import_module(package)
                assert name in module.__all__ and name in dir(module), f"{name} is not exported by {package}"
                assert getattr(module, name) is obj


def test_every_trainer_has_a_reliability_builder():
    from builders import BUILDERS, trainers_without_builder

    missing = trainers_without_builder(METHODS)
    assert not missing, f"trainers without a builder in tests/_reliability_workers/builders.py: {sorted(missing)}"
    registered = {name for info in METHODS for name in info.components}
    assert set(BUILDERS.values()) <= registered, "a builder makes a trainer that no manifest registers"


def test_summaries_are_one_line():
    for info in METHODS:
        assert "\n" not in info.summary and len(info.summary) <= 100, info.name


def zoo_rows(readme: str) -> list[list[str]]:
    table = readme.split("## The zoo", 1)[1].split("\n\n", 2)[1]
    lines = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_readme_zoo_table_matches_the_manifests():
    rows = zoo_rows((ROOT / "README.md").read_text())
    assert [row[0].strip("`") for row in rows] == [m.name for m in METHODS], "README zoo rows differ from the manifests"
    for row, info in zip(rows, METHODS):
        assert info.paper.arxiv_id in row[1], (info.name, "paper")
        named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", row[2]))
        for name in info.components:
            if name.endswith(("Trainer", "Pipeline")):
                assert name in named, f"README's {info.name} row does not name its {name}"
        own = {n for n in named if n.endswith(("Trainer", "Pipeline", "Scheduler", "Config", "Model"))
               and not n.startswith("Auto")}  # transformers' Auto classes are not hfgen components
        foreign = {n for n in own if n not in info.components and f"TRL's `{n}`" not in row[2]}
        assert not foreign, f"README's {info.name} row names {sorted(foreign)}, which its manifest does not register"


def test_results_order_is_the_manifest_order(load_script):
    assert load_script("collect_results").ORDER[1:] == [m.name for m in METHODS]
