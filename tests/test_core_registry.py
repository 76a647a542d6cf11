"""The entry-point registry: third-party plugins, broken plugins, lazy listing, clear errors."""

import subprocess
import sys
import textwrap

import pytest

import hfgen
from hfgen.registry import REGISTRY, MethodInfo, Paper


def _write_plugin(root, dist: str, module: str, method: str, body: str):
    """A throwaway installed distribution: a module plus dist-info with a hfgen.methods entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[hfgen.methods]\n{method} = {module}:METHOD\n")


GOOD = """
from hfgen import MethodInfo, Paper
METHOD = MethodInfo(
    name="toy_plugin",
    summary="A third-party toy method.",
    paper=Paper(title="Toy", arxiv_id="0000.00000"),
    components={"ToyThing": "collections:OrderedDict"},
)
"""
BROKEN = """
raise RuntimeError("this plugin is broken on purpose")
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "hfgen_toy_plugin", "hfgen_toy_plugin_mod", "toy_plugin", GOOD)
    _write_plugin(tmp_path, "hfgen_bad_plugin", "hfgen_bad_plugin_mod", "bad_plugin", BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    REGISTRY.reset()
    yield tmp_path
    REGISTRY.reset()


def test_third_party_plugin_is_discovered_and_broken_one_is_listed(plugins):
    names = {m.name for m in hfgen.list_methods()}
    assert "toy_plugin" in names
    assert "bad_plugin" not in names  # broken plugins are hidden from the plain list...
    everything = {m.name: m for m in hfgen.list_methods(include_broken=True)}
    assert everything["bad_plugin"].broken  # ...but reported by name with their error
    assert "broken on purpose" in everything["bad_plugin"].error
    assert everything["bad_plugin"].distribution == "hfgen_bad_plugin"
    info = hfgen.get_method("toy_plugin")  # the good one still works
    assert info.load_component("ToyThing").__name__ == "OrderedDict"
    with pytest.raises(ImportError, match="broken on purpose"):
        hfgen.get_method("bad_plugin")


def test_cli_lists_plugins_from_installed_console_script(plugins):
    out = subprocess.run(["hfgen", "list"], capture_output=True, text=True, check=True).stdout
    assert "toy_plugin" in out and "A third-party toy method." in out
    assert "bad_plugin" in out and "BROKEN" in out and "broken on purpose" in out


def test_plugin_autoload_can_be_disabled(plugins, monkeypatch):
    monkeypatch.setenv("HFGEN_DISABLE_PLUGIN_AUTOLOAD", "1")
    REGISTRY.reset()
    assert "toy_plugin" not in {m.name for m in hfgen.list_methods(include_broken=True)}


def test_unknown_name_lists_known_and_suggests_closest():
    REGISTRY.reset()
    hfgen.register(MethodInfo(name="toy_method", summary="x", paper=Paper("t", "1")), exist_ok=True)
    try:
        with pytest.raises(KeyError, match=r"Did you mean 'toy_method'\?.*Known methods:.*toy_method"):
            hfgen.get_method("toy_methd")
    finally:
        REGISTRY.unregister("toy_method")


def test_register_refuses_silent_replacement():
    info = MethodInfo(name="dup_method", summary="a", paper=Paper("t", "1"))
    hfgen.register(info)
    try:
        with pytest.raises(ValueError, match="already registered"):
            hfgen.register(MethodInfo(name="dup_method", summary="b", paper=Paper("t", "1")))
        hfgen.register(MethodInfo(name="dup_method", summary="b", paper=Paper("t", "1")), exist_ok=True)
        assert hfgen.get_method("dup_method").summary == "b"
    finally:
        REGISTRY.unregister("dup_method")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "Bad-Name"}, "`name`"),
        ({"components": {"X": "no_colon"}}, "module:Object"),
    ],
)
def test_method_info_validates_fields(kwargs, match):
    fields = {"name": "ok", "summary": "s", "paper": Paper("t", "1"), **kwargs}
    with pytest.raises(ValueError, match=match):
        MethodInfo(**fields)


def test_listing_methods_imports_no_torch():
    code = "import sys, hfgen; hfgen.list_methods(include_broken=True); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_builtin_methods_are_registered_through_entry_points():
    from importlib.metadata import entry_points

    REGISTRY.reset()
    builtin = {ep.name for ep in entry_points(group="hfgen.methods") if ep.value.startswith("hfgen.methods.")}
    assert builtin, "hfgen's own setup.py must declare its methods in the hfgen.methods group"
    listed = {m.name: m for m in hfgen.list_methods(include_broken=True)}
    for name in builtin:
        assert not listed[name].broken, f"built-in method {name} is broken: {listed[name].error}"
