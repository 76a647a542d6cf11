"""Smoke runs of the masked-diffusion demo, experiment and benchmark with tiny settings."""

from pathlib import Path

import pytest


def test_benchmark_records_both_samplers_network_calls_and_time_split(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    rows, report, path = load_script("bench_fhs").main(steps=20, vocab=64, length=8, hidden=16, layers=1,
                                                       dtypes=("float64",), raw_dir=tmp_path)
    record = read_record(path)
    fhs, anc = "FHS (float64)", "ancestral T=20, cached (float64)"
    check_arms(record, [fhs, anc], ["total_seconds", "network_seconds", "sampling_seconds", "network_calls"])
    assert record["metrics"][fhs]["network_calls"] == [8] and 1 <= record["metrics"][anc]["network_calls"][0] <= 8
    for arm in (fhs, anc):  # the split adds up: network + sampling = total
        m = record["metrics"][arm]
        assert m["network_seconds"][0] + m["sampling_seconds"][0] == pytest.approx(m["total_seconds"][0])
    assert record["settings"]["baseline"] == anc


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_text_experiment_and_demo_run_end_to_end(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    rows, report, path = load_script("mdm_text").main(
        train_steps=2, judge_steps=2, seq_len=16, num_samples=2, steps=(4,), work_dir=tmp_path,
        figure=tmp_path / "f.png", raw_dir=tmp_path / "raw")
    record = read_record(path)
    samplers = [f"{s}, {d}" for d in ("float64", "float32") for s in ("FHS", "ancestral T=4")]
    check_arms(record, samplers, ["gen_ppl", "entropy", "seconds", "network_calls"])
    check_arms(record, ["held-out text"], ["gen_ppl", "entropy"])
    assert record["metrics"]["FHS, float64"]["network_calls"] == [16] and str(tmp_path / "f.png") in record["figures"]

    from hfgen.demos.masked_diffusion import run

    result = run(tmp_path / "demo", train_steps=2, judge_steps=2, seq_len=16, num_samples=2, ancestral_steps=8)
    assert result.method == "masked_diffusion" and Path(result.figures[0]).is_file()
    assert result.details["samplers"]["first-hitting (FHS)"]["nfe"] == 16
