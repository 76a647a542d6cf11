"""Smoke-sized runs of the GFT demo, the digits experiment and the benchmark (their logic, not their numbers)."""

from pathlib import Path

import pytest


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_demo_compares_gft_one_pass_with_cfg_two_passes(tmp_path):
    from hfgen.demos.gft import run

    result = run(tmp_path, train_steps=2, samples_per_class=2, inference_steps=2)
    assert result.method == "gft" and result.baseline_name == "CFG" and not result.higher_is_better
    assert result.details["cfg"]["nfe_per_image"] == 4 and result.details["gft"]["nfe_per_image"] == 2  # 2 steps
    assert all(Path(f).is_file() for f in result.figures)


def test_digits_experiment_records_both_models_at_every_scale(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    _, path = load_script("gft_digits").main(["--train-steps", "2", "--samples-per-class", "2", "--scales", "1", "2",
                                                 "--ddim-steps", "2", "--seeds", "0", "1", "--figures-dir", str(tmp_path / "fig"),
                                                 "--raw-dir", str(tmp_path / "raw"), "--work-dir", str(tmp_path / "w")])
    record = read_record(path)
    check_arms(record, ["CFG s=1", "GFT s=1", "CFG s=2", "GFT s=2"],
               ["class_accuracy", "digits_fid", "diversity", "nfe_per_image", "sampling_seconds"])
    # CFG two network evaluations a step, GFT one (2 DDIM steps)
    assert record["metrics"]["CFG s=2"]["nfe_per_image"] == [4, 4] and record["metrics"]["GFT s=2"]["nfe_per_image"] == [2, 2]
    assert record["seeds"] == [0, 1] and record["metrics"]["CFG s=2"]["digits_fid"][0] != record["metrics"]["CFG s=2"]["digits_fid"][1]
    assert set(record["figures"]) == {str(tmp_path / "fig" / "gft_curves.png"), str(tmp_path / "fig" / "gft_samples.png")}
    assert {k: len(v) for k, v in record["settings"]["train_seconds"].items()} == {"CFG": 2, "GFT": 2}


def test_benchmark_records_both_arms_with_their_network_calls(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    result = load_script("bench_gft").main(["--size", "8", "--batch", "4", "--steps", "2", "--repeats", "1",
                                            "--raw-dir", str(tmp_path)])
    record = read_record(result["record"])
    check_arms(record, ["gft", "cfg"], ["median_seconds", "unet_calls", "network_evaluations_per_image"])
    # both samplers ran every step: GFT one UNet call a step, CFG one call of twice the batch (2 evaluations)
    assert record["metrics"]["gft"]["unet_calls"] == record["metrics"]["cfg"]["unet_calls"] == [2]
    assert record["metrics"]["gft"]["network_evaluations_per_image"] == [2]
    assert record["metrics"]["cfg"]["network_evaluations_per_image"] == [4]
    assert all(len(arm["repeat_seconds"][0]) == 1 for arm in record["metrics"].values())
