"""Smoke test of the LLMPopcorn experiment script with tiny settings."""

import importlib.util
from pathlib import Path


def test_popcorn_eval_script_runs_and_writes_its_table(tmp_path):
    path = Path(__file__).resolve().parents[1] / "scripts" / "popcorn_eval.py"
    spec = importlib.util.spec_from_file_location("popcorn_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(num_videos=40, epochs=1, num_queries=2, results=tmp_path / "r.md",
                          figure=tmp_path / "f.png", work_dir=tmp_path)
    assert (tmp_path / "f.png").is_file() and "| basic |" in (tmp_path / "r.md").read_text()
    assert summary["n"] == 2 and set(summary["metrics"]) == {"nmse", "spearman", "mae"}
