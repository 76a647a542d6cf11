"""Smoke run of the CROSSAN modality-scaling script with tiny settings."""

import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_crossan_modalities_script_runs_tiny(tmp_path):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location("crossan_modalities", SCRIPTS / "crossan_modalities.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.main(["--users", "24", "--epochs", "1", "--seeds", "0", "--max-modalities", "2",
                       "--out-md", str(tmp_path / "c.md"), "--out-fig", str(tmp_path / "c.png")])
    assert [(r["modalities"], r["method"]) for r in out["rows"]][:2] == [(1, "CROSSAN (MoMEF)"), (1, "Late fusion (frozen)")]
    assert (tmp_path / "c.png").is_file()
