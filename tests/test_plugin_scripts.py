"""The example plugin ``examples/hfgen-toyflow`` (issue #37), built into a wheel and installed with pip into a
temporary folder (``pip install --no-deps --no-build-isolation --target``: offline, the environment's hfgen and
torch stay the ones used), then used as a plugin author and their users would: ``hfgen list``, ``info``, ``check``,
``demo``; the plugin's own test suite (hfgen.testing's kits: exact resume in a fresh process, evaluation, save and
load, the Diffusers conventions; a push to the loopback Hub and the card's snippet run); ``hfgen.load`` in a fresh
process. A copy whose ``pyproject.toml`` lacks the package-data line fails its card test, yet ``save_model()``
still leaves the weights, with a warning naming the template. Also the trainer kit on two built-in trainers.

Slow (minutes: a build, a dozen fresh processes); CI runs it in its ``-m slow`` step (``tests/test_*_scripts.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hfgen-toyflow"
PACKAGE_DATA = 'hfgen_toyflow = ["cards/*.md"]\n'
pytestmark = pytest.mark.slow


def _install(tmp: Path, with_package_data: bool = True) -> Path:
    source = tmp / "hfgen-toyflow"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    if not with_package_data:
        pyproject = (source / "pyproject.toml").read_text()
        assert PACKAGE_DATA in pyproject
        (source / "pyproject.toml").write_text(pyproject.replace(PACKAGE_DATA, ""))
    site = tmp / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--target", str(site), str(source)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return site


def _env(site: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    env.pop("HF_ENDPOINT", None)  # the plugin's own tests start their own loopback Hub
    return env


def _run(args, site: Path, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_env(site))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toyflow")
    return tmp, _install(tmp)


def test_the_installed_plugin_is_listed_checked_and_demoed(installed):
    tmp, site = installed
    hfgen = [sys.executable, "-m", "hfgen.cli"]
    listed = _run([*hfgen, "list"], site, tmp)
    assert listed.returncode == 0 and "toyflow" in listed.stdout and "BROKEN" not in listed.stdout, listed.stdout
    info = _run([*hfgen, "info", "toyflow"], site, tmp)
    assert "status:     example" in info.stdout and "hfgen_toyflow.pipeline_toyflow:ToyFlowPipeline" in info.stdout
    check = _run([*hfgen, "check", "toyflow"], site, tmp)
    assert check.returncode == 0 and "ok    demo at smoke size" in check.stdout, check.stdout + check.stderr[-2000:]
    demo = _run([*hfgen, "demo", "toyflow", "--output-dir", str(tmp / "demo")], site, tmp)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    result = json.loads((tmp / "demo" / "toyflow" / "result.json").read_text())
    assert result["method_value"] < result["baseline_value"]  # the flow's samples are closer to the data than noise
    assert (tmp / "demo" / "toyflow" / "toyflow_samples.png").is_file()


def test_the_plugins_own_suite_passes_against_the_installed_package(installed):
    """Run from an unrelated folder, so that the installed package (not the source tree) is what is imported."""
    tmp, site = installed
    (tmp / "elsewhere").mkdir(exist_ok=True)
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp / "hfgen-toyflow" / "tests")],
               site, tmp / "elsewhere")
    assert out.returncode == 0 and "4 passed" in out.stdout, out.stdout[-4000:] + out.stderr[-2000:]


def test_a_fresh_process_loads_what_the_trainer_saved(installed):
    tmp, site = installed
    train = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(EXAMPLE / 'tests')!r})
        from test_toyflow import build_trainer
        trainer = build_trainer({str(tmp / 'run')!r}, max_steps=2, save_strategy="no")
        trainer.train(); trainer.save_model()
        """)
    assert _run([sys.executable, "-c", train], site, tmp).returncode == 0
    load = (f"import hfgen; pipe = hfgen.load({str(tmp / 'run')!r}); "
            "print(type(pipe).__name__, tuple(pipe(num_points=3).points.shape))")
    out = _run([sys.executable, "-c", load], site, tmp)
    assert out.returncode == 0 and out.stdout.strip() == "ToyFlowPipeline (3, 2)", out.stderr[-3000:]


def test_without_its_package_data_line_the_card_test_fails_but_the_weights_are_saved(tmp_path):
    site = _install(tmp_path, with_package_data=False)
    assert not (site / "hfgen_toyflow" / "cards").exists()
    (tmp_path / "elsewhere").mkdir()
    card_test = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "card",
                      str(tmp_path / "hfgen-toyflow" / "tests")], site, tmp_path / "elsewhere")
    assert card_test.returncode == 1 and "cards/toyflow.md" in card_test.stdout, card_test.stdout[-3000:]

    train = textwrap.dedent(f"""
        import sys, warnings; sys.path.insert(0, {str(EXAMPLE / 'tests')!r})
        from test_toyflow import build_trainer
        trainer = build_trainer({str(tmp_path / 'run')!r}, max_steps=2, save_strategy="no")
        trainer.train()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.save_model()
        print("WARNED:", [str(w.message) for w in caught if "model card" in str(w.message)])
        """)
    out = _run([sys.executable, "-c", train], site, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WARNED: [" in out.stdout and "hfgen_toyflow:cards/toyflow.md" in out.stdout.split("WARNED:")[1], out.stdout
    run = tmp_path / "run"
    assert (run / "model" / "diffusion_pytorch_model.safetensors").is_file() and (run / "training_args.json").is_file()
    assert not (run / "README.md").exists()


@pytest.mark.parametrize("builder", ["consistency_bridge", "masked_diffusion"])
def test_builtin_trainers_pass_the_trainer_kit(builder, tmp_path):
    from hfgen.testing import check_trainer

    workers = str(Path(__file__).parent / "_reliability_workers")
    sys.path.insert(0, workers)  # the kit passes sys.path on to its fresh processes
    try:
        check_trainer(f"builders:{builder}", tmp_path)
    finally:
        sys.path.remove(workers)
