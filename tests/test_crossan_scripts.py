"""Smoke run of the CROSSAN modality-scaling script with tiny settings."""

import pytest


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_crossan_modalities_script_runs_tiny(tmp_path, load_script):
    script = load_script("crossan_modalities")
    common = ["--users", "24", "--epochs", "1", "--seeds", "0", "--out-md", str(tmp_path / "c.md"),
              "--out-fig", str(tmp_path / "c.png")]
    for n in ("2", "1"):  # parts run separately (as in parallel), then merged into one report
        script.main([*common, "--modalities", n, "--json-out", str(tmp_path / f"part{n}.json")])
    out = script.main([*common, "--merge", str(tmp_path / "part2.json"), str(tmp_path / "part1.json")])
    assert [(r["modalities"], r["method"]) for r in out["rows"]] == [
        (1, "CROSSAN (MoMEF)"), (1, "Late fusion (frozen)"),
        (2, "CROSSAN (MoMEF)"), (2, "IISAN-style pairwise"), (2, "Late fusion (frozen)")]
    assert (tmp_path / "c.png").is_file() and "| 2 (text+image) | IISAN-style pairwise |" in (tmp_path / "c.md").read_text()
