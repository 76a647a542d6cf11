"""Smoke runs of the masked-diffusion demo, experiment and benchmark with tiny settings."""

import math
from pathlib import Path

import pytest


def test_benchmark_counts_network_calls_and_splits_time(load_script):
    rows, report = load_script("bench_fhs").main(steps=20, vocab=64, length=8, hidden=16, layers=1,
                                                              dtypes=("float64",))
    fhs, anc = rows["FHS (float64)"], rows["ancestral T=20, cached (float64)"]
    assert fhs["nfe"] == 8 and 1 <= anc["nfe"] <= 8
    assert 0 < fhs["network"] <= fhs["total"] and "speed-up" in report


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_text_experiment_and_demo_run_end_to_end(tmp_path, load_script):
    rows, report = load_script("mdm_text").main(
        train_steps=2, judge_steps=2, seq_len=16, num_samples=2, steps=(4,), work_dir=tmp_path, figure=tmp_path / "f.png")
    assert rows["FHS, float64"]["nfe"] == 16 and (tmp_path / "f.png").is_file()
    assert all(math.isfinite(r["gen_ppl"]) for r in rows.values()) and "| ancestral T=4, float32 |" in report

    from hfgen.demos.masked_diffusion import run

    result = run(tmp_path / "demo", train_steps=2, judge_steps=2, seq_len=16, num_samples=2, ancestral_steps=8)
    assert result.method == "masked_diffusion" and Path(result.figures[0]).is_file()
    assert result.details["samplers"]["first-hitting (FHS)"]["nfe"] == 16
