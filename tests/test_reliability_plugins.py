"""Hostile plugins (issue #25, item 5): a plugin reusing a built-in component or method name, a malformed
``MethodInfo`` and a plugin calling ``sys.exit`` on import. hfgen's own methods win every clash and the clash is
reported; a malformed or exiting plugin is listed as broken with its error; ``hfgen list`` / ``hfgen info`` survive.

As reported in the issue, before the fix the clashing plugin (named ``aaa_clash`` so it sorts first) took over ``hfgen.load`` of hfgen's
own ``ConsistencyTrajectoryPipeline`` artifacts; ``tags="diffusers"`` was split into letters and ``paper="str"``
crashed ``hfgen list`` half-way; ``sys.exit`` in a plugin ended ``hfgen list``.
"""

from __future__ import annotations

import subprocess

import pytest
from test_core_registry import _write_plugin

import hfgen
from hfgen.registry import REGISTRY, MethodInfo, Paper, find_component, registry_problems

CLASH = """
from hfgen import MethodInfo, Paper
METHOD = MethodInfo(name="aaa_clash", summary="Takes a built-in class name.", paper=Paper("t", "0000.00000"),
                    components={"ConsistencyTrajectoryPipeline": "collections:OrderedDict", "Own": "collections:deque"})
"""
SAME_NAME = """
from hfgen import MethodInfo, Paper
METHOD = MethodInfo(name="nft", summary="Not the real NFT.", paper=Paper("t", "0000.00000"))
"""
MALFORMED = """
from hfgen import MethodInfo
METHOD = MethodInfo(name="malformed", summary="s", paper="str", tags="diffusers")
"""
EXITING = """
import sys
sys.exit(3)
"""


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "hfgen_clash", "hfgen_clash_mod", "aaa_clash", CLASH)
    _write_plugin(tmp_path, "hfgen_same_name", "hfgen_same_name_mod", "nft", SAME_NAME)
    _write_plugin(tmp_path, "hfgen_malformed", "hfgen_malformed_mod", "malformed", MALFORMED)
    _write_plugin(tmp_path, "hfgen_exiting", "hfgen_exiting_mod", "exiting", EXITING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    REGISTRY.reset()
    yield tmp_path
    REGISTRY.reset()


def test_builtins_win_clashes_and_the_clash_is_reported(hostile, tmp_path):
    import torch

    from hfgen.pipelines import ConsistencyTrajectoryPipeline

    info, cls = find_component("ConsistencyTrajectoryPipeline")
    assert info.name == "analytic_precond" and cls is ConsistencyTrajectoryPipeline
    assert find_component("Own")[0].name == "aaa_clash"  # its other components still work
    assert hfgen.get_method("nft").summary != "Not the real NFT."
    problems = registry_problems()
    assert any("'ConsistencyTrajectoryPipeline'" in p and "aaa_clash" in p for p in problems), problems
    assert any("'nft'" in p and "hfgen_same_name" in p for p in problems), problems

    from hfgen.pipelines import ConsistencyTrajectoryScheduler
    from hfgen.pipelines.consistency_trajectory import TrajectoryMLP

    torch.manual_seed(0)
    pipe = ConsistencyTrajectoryPipeline(TrajectoryMLP(), ConsistencyTrajectoryScheduler())
    pipe.save_pretrained(tmp_path / "ctm")
    assert type(hfgen.load(tmp_path / "ctm")) is ConsistencyTrajectoryPipeline


def test_malformed_and_exiting_plugins_are_isolated_and_named(hostile):
    everything = {m.name: m for m in hfgen.list_methods(include_broken=True)}
    assert everything["malformed"].broken and "`paper`" in everything["malformed"].error
    assert everything["exiting"].broken and "sys.exit(3)" in everything["exiting"].error
    assert everything["exiting"].distribution == "hfgen_exiting"
    for args in (["list"], ["info", "nft"], ["info", "exiting"]):
        out = subprocess.run(["hfgen", *args], capture_output=True, text=True, timeout=300)
        assert "Traceback" not in out.stderr, out.stderr
        if args == ["list"]:
            assert out.returncode == 0
            assert "malformed" in out.stdout and "exiting" in out.stdout and "sys.exit(3)" in out.stdout
            assert "ConsistencyTrajectoryPipeline" in out.stderr  # the clash is reported
            assert "nft " in out.stdout or "nft" in out.stdout.split()
        elif args == ["info", "exiting"]:
            assert out.returncode == 2 and "sys.exit(3)" in out.stderr


@pytest.mark.parametrize("kwargs, error, match", [
    ({"paper": "str"}, TypeError, "`paper`"),
    ({"tags": "diffusers"}, TypeError, "`tags`"),
    ({"tags": ["ok", 3]}, TypeError, "`tags`"),
    ({"summary": None}, TypeError, "`summary`"),
    ({"components": ["X"]}, TypeError, "`components`"),
    ({"components": {"X": 3}}, ValueError, "module:Object"),
    ({"components": {"not a name": "a:b"}}, ValueError, "identifiers"),
    ({"demo": "no_colon"}, ValueError, "`demo`"),
    ({"cli": 5}, TypeError, "`cli`"),
    ({"pipeline_tag": 1}, TypeError, "`pipeline_tag`"),
    ({"name": 5}, TypeError, "`name`"),
])
def test_method_info_validates_every_field(kwargs, error, match):
    fields = {"name": "ok", "summary": "s", "paper": Paper("t", "1"), **kwargs}
    with pytest.raises(error, match=match):
        MethodInfo(**fields)
    with pytest.raises(TypeError, match="`arxiv_id`"):
        Paper("t", 1234.5678)
    assert MethodInfo(name="ok", summary="s", paper=Paper("t", "1"), tags=["a", "b"]).tags == ("a", "b")


# ---------------------------------------------------------------- issue #37: a plugin as first-class as a built-in
# The example plugin's package (examples/hfgen-toyflow/hfgen_toyflow), "installed" as pip would (a dist-info with
# its entry point), with or without its card template. Each test below failed before the fixes of #37: save_model
# raised FileNotFoundError and left an empty folder; a typo in method_name passed until save_model; a fresh process
# could not load the pipeline (Diffusers: "hfgen_toyflow.modeling_toyflow ... has not been imported"); the card said
# `from hfgen.pipelines import ToyFlowPipeline` and `pip install hfgen`, outside any block, without the `diffusers`
# tag; hfgen.load of a scheduler folder said it expected scheduler_config.json; there was no `hfgen check`.

import shutil  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

TOYFLOW = Path(__file__).resolve().parents[1] / "examples" / "hfgen-toyflow"
TEMPLATE = "hfgen_toyflow:cards/toyflow.md"


def _install_toyflow(site: Path, with_card: bool = True) -> None:
    ignore = shutil.ignore_patterns("__pycache__", *([] if with_card else ["cards"]))
    shutil.copytree(TOYFLOW / "hfgen_toyflow", site / "hfgen_toyflow", ignore=ignore)
    info = site / "hfgen_toyflow-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hfgen-toyflow\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[hfgen.methods]\ntoyflow = hfgen_toyflow.manifest:METHOD\n")


@pytest.fixture(params=[True], ids=["with-card"])
def toyflow(request, tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install_toyflow(site, with_card=request.param)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    REGISTRY.reset()
    yield site
    for name in [m for m in sys.modules if m.startswith("hfgen_toyflow")]:
        del sys.modules[name]
    REGISTRY.reset()


no_card = pytest.mark.parametrize("toyflow", [False], ids=["without-card"], indirect=True)


def _tiny_trainer(output_dir, **kwargs):
    sys.path.insert(0, str(TOYFLOW / "tests"))
    try:
        from test_toyflow import build_trainer
    finally:
        sys.path.remove(str(TOYFLOW / "tests"))
    return build_trainer(str(output_dir), **{"max_steps": 1, "save_strategy": "no", **kwargs})


def _tiny_pipeline():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from hfgen_toyflow.modeling_toyflow import ToyFlowModel
    from hfgen_toyflow.pipeline_toyflow import ToyFlowPipeline

    return ToyFlowPipeline(ToyFlowModel(hidden_size=8, num_layers=1), FlowMatchEulerDiscreteScheduler())


@no_card
def test_a_card_failure_never_costs_the_trained_weights(toyflow, tmp_path):
    with pytest.warns(UserWarning, match=f"ToyFlowTrainer: the card template '{TEMPLATE}'"):  # told at creation
        trainer = _tiny_trainer(tmp_path / "run")
    trainer.train()
    with pytest.warns(UserWarning, match=f"weights are saved in .* but the model card is not: rendering the card "
                                         f"template '{TEMPLATE}' failed"):
        trainer.save_model()
    saved = {p.relative_to(tmp_path / "run").as_posix() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert {"model_index.json", "model/diffusion_pytorch_model.safetensors", "training_args.json"} <= saved, saved
    assert "README.md" not in saved
    assert type(hfgen.load(tmp_path / "run")).__name__ == "ToyFlowPipeline"

    with pytest.warns(UserWarning, match=f"ToyFlowPipeline: the card template '{TEMPLATE}'"):
        pipe = _tiny_pipeline()
    with pytest.warns(UserWarning, match=f"ToyFlowPipeline: the weights are saved .* template '{TEMPLATE}' failed"):
        pipe.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert type(hfgen.load(tmp_path / "pipe")).__name__ == "ToyFlowPipeline"


def test_a_side_adapter_keeps_its_weights_when_its_card_fails(tmp_path, monkeypatch):
    """The same rule for hfgen's side adapters, whose card used to be rendered inside the save (before the commit)."""
    from test_side_adapter_io import tiny_bert

    import hfgen.hub.cards
    from hfgen.adapters import IISANConfig, IISANModel

    def broken(target):
        raise FileNotFoundError(f"no template {target}")

    monkeypatch.setattr(hfgen.hub.cards, "_card_template", broken)
    adapter = IISANModel(IISANConfig(modalities=["text"], layers="all"), {"text": tiny_bert()})
    with pytest.warns(UserWarning, match="IISANModel: the weights are saved in .* template 'hfgen.model_cards:iisan.md'"):
        adapter.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    assert not (tmp_path / "adapter" / "README.md").exists()


def test_method_name_is_resolved_when_the_trainer_is_created(toyflow, tmp_path):
    import torch
    from hfgen_toyflow.toyflow_trainer import ToyFlowTrainer

    class Typo(ToyFlowTrainer):
        method_name = "toyflw"

    with pytest.raises(ValueError, match="`method_name` of Typo: Unknown hfgen method 'toyflw'. Did you mean 'toyflow'"):
        Typo(torch.nn.Linear(2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with its card installed, creating the trainer warns about nothing of ours
        _tiny_trainer(tmp_path / "ok")


def test_a_fresh_process_loads_the_plugin_pipeline(toyflow, tmp_path):
    _tiny_pipeline().save_pretrained(tmp_path / "pipe")
    codes = ("import hfgen; print(type(hfgen.load({p!r})).__name__)",
             "from hfgen_toyflow.pipeline_toyflow import ToyFlowPipeline as P; print(type(P.from_pretrained({p!r})).__name__)")
    runs = [subprocess.Popen([sys.executable, "-c", code.format(p=str(tmp_path / "pipe"))], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for code in codes]  # two fresh processes at once
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0 and out.strip() == "ToyFlowPipeline", err[-2000:]


def test_the_card_names_the_plugin_and_keeps_its_tags(toyflow, tmp_path, monkeypatch):
    import dataclasses

    from huggingface_hub import ModelCard

    from hfgen.hub import render_model_card

    _tiny_pipeline().save_pretrained(tmp_path / "pipe")
    card = ModelCard.load(tmp_path / "pipe" / "README.md")
    assert "from hfgen_toyflow.pipeline_toyflow import ToyFlowPipeline" in card.text
    assert "from hfgen.pipelines" not in card.text and "pip install hfgen-toyflow" in card.text
    assert {"diffusers", "rectified-flow", "hfgen-toyflow"} <= set(card.data.tags)

    (tmp_path / "custom_cards").mkdir()
    (tmp_path / "custom_cards" / "__init__.py").write_text("")
    (tmp_path / "custom_cards" / "c.md").write_text('{% extends "_base.md" %}{% block loading %}OWN LOADING'
                                                    '{% endblock %}')
    monkeypatch.syspath_prepend(str(tmp_path))
    hfgen.register(dataclasses.replace(hfgen.get_method("toyflow"), name="toyflow_own", card_template="custom_cards:c.md"))
    text = str(render_model_card("toyflow_own", pipeline_class="ToyFlowPipeline"))
    assert "OWN LOADING" in text and "## Loading this pipeline" not in text


def test_hfgen_load_of_a_diffusers_scheduler_folder(tmp_path):
    from diffusers import DDIMScheduler

    DDIMScheduler(num_train_timesteps=77).save_pretrained(tmp_path / "scheduler")
    loaded = hfgen.load(tmp_path / "scheduler")
    assert type(loaded) is DDIMScheduler and loaded.config.num_train_timesteps == 77


def test_hfgen_check(toyflow, capsys):
    from hfgen.cli import main

    assert main(["check", "toyflow", "--no-demo"]) == 0
    out = capsys.readouterr().out
    assert f"ok    card template {TEMPLATE} renders" in out and "component ToyFlowPipeline" in out
    assert "toyflow: all checks passed" in out


@no_card
def test_hfgen_check_names_a_missing_card_template(toyflow, capsys):
    from hfgen.cli import main

    assert main(["check", "toyflow", "--no-demo"]) == 1
    assert f"FAIL  card template {TEMPLATE} loads" in capsys.readouterr().out


def test_the_bases_are_public():
    from hfgen.demos import DemoResult  # noqa: F401
    from hfgen.hub.mixins import HfgenPipelineMixin as mixin
    from hfgen.pipelines import HfgenPipelineMixin
    from hfgen.trainers import HfgenTrainerMixin, check_args
    from hfgen.trainers.base import HfgenTrainerMixin as base
    from hfgen.trainers.base import check_args as base_check

    assert HfgenTrainerMixin is base and check_args is base_check and HfgenPipelineMixin is mixin
    assert {"HfgenTrainerMixin", "check_args"} <= set(hfgen.trainers.__all__)
    assert "HfgenPipelineMixin" in hfgen.pipelines.__all__


# ---------------------------------------------------------------- the conformance kits on hfgen's own methods


@pytest.mark.parametrize("name", [m.name for m in __import__("hfgen.methods").methods.builtin_methods()])
def test_every_builtin_manifest_passes_the_manifest_kit(name):
    from hfgen.testing import check_manifest

    check_manifest(name)


@pytest.mark.parametrize("spec", ["ConsistencyTrajectoryPipeline", "MaskedDiffusionPipeline"])
def test_builtin_pipelines_pass_the_pipeline_kit(spec, tmp_path):
    from test_ecosystem import SPECS

    from hfgen.testing import check_pipeline

    s = SPECS[spec]
    check_pipeline(s.build, s.inputs, tmp_path, output=s.output, callback_key=s.callback_step_key)
