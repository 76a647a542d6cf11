"""The manifests (``hfgen/methods/<name>.py``) are the only list of hfgen's methods: everything derived from them
agrees with them. Each check fails on a component that is not exported, does not resolve, has no reliability
builder, or a README zoo row that differs from the manifests; and a throwaway method, registered here with a
converter, an Auto model, an adapter and a trainer, appears in every list derived from the manifests.
"""

import re
import sys
import textwrap
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


THROWAWAY_MODULE = """
import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel


class ThrowawayConfig(PretrainedConfig):
    model_type = "hfgen_throwaway"


class ThrowawayModel(PreTrainedModel):
    config_class = ThrowawayConfig

    def __init__(self, config):
        super().__init__(config)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.post_init()


AutoConfig.register("hfgen_throwaway", ThrowawayConfig)
AutoModel.register(ThrowawayConfig, ThrowawayModel)


def convert_throwaway(source, output=None, **options):
    return {"source": source, "output": output, **options}
"""


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """A method registered in this process (as a plugin's entry point would), with one component of each kind."""
    from hfgen.registry import REGISTRY, Converter, MethodInfo, Paper, register

    (tmp_path / "hfgen_throwaway_method.py").write_text(textwrap.dedent(THROWAWAY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    info = MethodInfo(
        name="throwaway_method", summary="A throwaway method", paper=Paper(title="T", arxiv_id="0000.00000"),
        components={
            "ThrowawayConfig": "hfgen_throwaway_method:ThrowawayConfig",
            "ThrowawayModel": "hfgen_throwaway_method:ThrowawayModel",
            "ThrowawayAdapter": "hfgen.adapters.throwaway:ThrowawayAdapter",
            "ThrowawayTrainer": "hfgen.trainers.throwaway.throwaway_trainer:ThrowawayTrainer",
        },
        auto_models={"hfgen_throwaway": "ThrowawayModel"},
        converters={"throwaway": Converter("hfgen_throwaway_method:convert_throwaway", "T -> nothing", {"fixed": 1})},
    )
    register(info)
    yield info
    REGISTRY.unregister(info.name)
    sys.modules.pop("hfgen_throwaway_method", None)


def test_a_registered_method_appears_in_every_derived_list(throwaway, monkeypatch):
    import builders
    from transformers import AutoConfig, AutoModel

    import hfgen.adapters
    import hfgen.methods
    import hfgen.trainers
    from hfgen import _auto
    from hfgen.convert import CONVERTERS, convert

    # transformers' Auto classes: its model_type, registered on first lookup after `import hfgen` (a plugin's too)
    assert _auto.auto_modules()["hfgen_throwaway"] == "hfgen_throwaway_method"
    assert "hfgen_throwaway_method" not in sys.modules
    assert type(AutoModel.from_config(AutoConfig.for_model("hfgen_throwaway"))).__name__ == "ThrowawayModel"

    # hfgen convert: its kind, with the manifest's fixed options
    assert CONVERTERS["throwaway"] == ("hfgen_throwaway_method:convert_throwaway", {"fixed": 1}, "T -> nothing")
    assert convert("throwaway", "src", "out") == {"source": "src", "output": "out", "fixed": 1}

    # as if its manifest were one of hfgen's own: the exports of hfgen.adapters and hfgen.trainers
    own = hfgen.methods.builtin_methods
    monkeypatch.setattr(hfgen.methods, "builtin_methods", lambda: [*own(), throwaway])
    assert "ThrowawayAdapter" in hfgen.adapters.__dir__()
    assert "ThrowawayTrainer" in hfgen.trainers.__dir__()

    # the reliability tests' builders: its trainer once a builder named after its module exists
    assert "throwaway" not in builders.builders_of(hfgen.methods.builtin_methods())
    monkeypatch.setattr(builders, "throwaway", lambda output_dir, **kwargs: None, raising=False)
    assert builders.builders_of(hfgen.methods.builtin_methods())["throwaway"] == "ThrowawayTrainer"


def test_the_derived_lists_are_exactly_the_manifests():
    import builders

    import hfgen.adapters
    from hfgen import _auto
    from hfgen.convert import CONVERTERS

    declared_kinds = {kind for info in METHODS for kind in info.converters}
    assert {"mdlm", "sedd-absorb", "gft-sd15", "gft-dit", "ddbm"} <= declared_kinds == set(CONVERTERS)
    declared_types = {t: info.component_module(c) for info in METHODS for t, c in info.auto_models.items()}
    assert declared_types == _auto.auto_modules()
    assert {"hfgen_mf2", "hfgen_sasrec", "hfgen_popularity", "hfgen_gft_causal_lm", "hfgen_mdlm_dit"} <= set(declared_types)
    adapters = {n for info in METHODS for n, t in info.components.items() if t.startswith("hfgen.adapters.")}
    assert set(hfgen.adapters.__all__) == adapters | set(hfgen.adapters.BASE)
    assert set(builders.BUILDERS.values()) == {n for info in METHODS for n in info.components if n.endswith("Trainer")}


def test_auto_models_name_components():
    from hfgen.registry import MethodInfo, Paper

    with pytest.raises(ValueError, match="`auto_models` of method 'x' maps 'hfgen_x' to 'XModel'"):
        MethodInfo(name="x", summary="x", paper=Paper(title="x", arxiv_id="1"), auto_models={"hfgen_x": "XModel"})


def test_moved_models_keep_their_old_import_paths():
    from hfgen.models import MDLMDiTForMaskedLM
    from hfgen.models.gft_dit import GFTDiTTransformer2DModel
    from hfgen.models.mdlm_dit import MDLMDiTConfig

    assert GFTDiTTransformer2DModel.__module__ == "hfgen.pipelines.gft.modeling_gft_dit"
    assert MDLMDiTForMaskedLM.__module__ == MDLMDiTConfig.__module__ == "hfgen.pipelines.masked_diffusion.modeling_mdlm_dit"
