"""The installed `hfgen` console script: list, info, demo, errors as one line."""

import os
import subprocess
import textwrap

import pytest

PLUGIN = """
from pathlib import Path

import hfgen
from hfgen.demos import DemoResult


def run(output_dir, seed=0):
    import sys

    print("{'loss': 0.5, 'epoch': 1.0}")  # what a trainer's PrinterCallback prints
    print("inner progress bar 50%|#####", file=sys.stderr)
    Path(output_dir, "figure.png").write_bytes(b"png")
    return DemoResult(method="cli_toy", claim="toy claim", metric="score (higher is better)",
                      baseline_name="baseline", baseline_value=1.0, method_value=2.0 + seed, figures=["figure.png"])


hfgen.register(hfgen.MethodInfo(
    name="cli_toy", summary="A toy registered through HFGEN_PLUGINS.",
    paper=hfgen.Paper(title="Toy", arxiv_id="0000.00001"),
    components={"Thing": "collections:Counter"}, demo="hfgen_cli_toy:run",
))
"""


@pytest.fixture
def env(tmp_path):
    (tmp_path / "hfgen_cli_toy.py").write_text(textwrap.dedent(PLUGIN))
    return {**os.environ, "PYTHONPATH": str(tmp_path), "HFGEN_PLUGINS": "hfgen_cli_toy"}


def hfgen(*args, env=None, cwd=None):
    return subprocess.run(["hfgen", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_help_for_every_command():
    for args in [("--help",), ("list", "--help"), ("info", "--help"), ("demo", "--help"), ("push", "--help")]:
        out = hfgen(*args)
        assert out.returncode == 0 and "usage: hfgen" in out.stdout


def test_list_and_info_show_plugin(env):
    assert "cli_toy" in hfgen("list", env=env).stdout
    out = hfgen("info", "cli_toy", env=env)
    assert out.returncode == 0
    assert "arxiv.org/abs/0000.00001" in out.stdout and "collections:Counter" in out.stdout


def test_unknown_method_is_one_line_with_suggestion(env):
    out = hfgen("info", "cli_tyo", env=env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "Did you mean 'cli_toy'?" in out.stderr


def test_demo_runs_registered_demo_and_prints_table(env, tmp_path):
    out = hfgen("demo", "cli_toy", "--output-dir", str(tmp_path / "out"), "--seed", "3", env=env)
    assert out.returncode == 0, out.stderr
    assert "| method" in out.stdout and "| cli_toy" in out.stdout and "| 5 " in out.stdout
    assert (tmp_path / "out" / "cli_toy" / "result.json").is_file()


def test_demo_needs_names_or_all(env):
    out = hfgen("demo", env=env)
    assert out.returncode == 2 and "--all" in out.stderr


def test_demo_output_is_one_progress_line_and_result_per_method_unless_verbose(env, tmp_path):
    out = hfgen("demo", "cli_toy", "--output-dir", str(tmp_path / "out"), "--record", str(tmp_path / "raw"), env=env)
    assert out.returncode == 0, out.stderr
    assert "'loss'" not in out.stdout + out.stderr and "inner progress" not in out.stdout + out.stderr
    log = (tmp_path / "out" / "cli_toy" / "log.txt").read_text()
    assert "'loss': 0.5" in log and "inner progress bar" in log
    per_method = [line for line in out.stdout.splitlines() if line.startswith("[1/1] cli_toy")]
    assert len(per_method) == 2 and "paper's effect: no experiment in docs/results" in per_method[1]
    assert out.stdout.split("\n\n")[0].count("\n") <= 2  # progress lines, then the table

    from hfgen.results import read_record

    record = read_record(tmp_path / "raw" / "demo" / "all.json")
    assert record["metrics"]["cli_toy"] == {"baseline": [1.0], "method": [2.0], "seconds": record["metrics"]["cli_toy"]["seconds"]}
    assert record["settings"]["methods"]["cli_toy"]["effect"] == "no experiment in docs/results"

    loud = hfgen("demo", "cli_toy", "--output-dir", str(tmp_path / "loud"), "--verbose", env=env)
    assert loud.returncode == 0 and "'loss': 0.5" in loud.stdout and "inner progress bar" in loud.stderr
