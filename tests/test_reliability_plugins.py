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
