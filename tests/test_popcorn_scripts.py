"""Smoke test of the LLMPopcorn experiment script with tiny settings."""

import pytest


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_popcorn_eval_script_runs_and_writes_its_table(tmp_path, load_script):
    module = load_script("popcorn_eval")
    summary = module.main(num_videos=40, epochs=1, num_queries=2, results=tmp_path / "r.md",
                          figure=tmp_path / "f.png", work_dir=tmp_path)
    assert (tmp_path / "f.png").is_file() and "| basic |" in (tmp_path / "r.md").read_text()
    assert summary["n"] == 2 and set(summary["metrics"]) == {"nmse", "spearman", "mae"}
