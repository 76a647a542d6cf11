"""Smoke-sized runs of DDO's reproduction script and benchmark (the full runs live in scripts/)."""

import json

import pytest


def test_ddo_toy_script_markov_quick_writes_results_and_figure(tmp_path, load_script):
    reports = load_script("ddo_toy").main(["--parts", "markov", "--quick", "--output-dir", str(tmp_path),
                                           "--work-dir", str(tmp_path / "work")])
    stages = [r["stage"] for r in reports["markov"]["results"]]
    assert stages[0].startswith("reference") and stages[1:3] == ["DDO round 1", "DDO round 2"]
    assert stages[-1].startswith("MLE control")
    saved = json.loads((tmp_path / "work" / "ddo_markov.json").read_text())
    assert "| DDO round 2 |" in (tmp_path / "results" / "ddo.md").read_text()
    assert all(r["forward_kl"] == pytest.approx(s["forward_kl"]) for r, s in zip(saved["results"], reports["markov"]["results"]))
    assert (tmp_path / "figures" / "ddo_markov.png").stat().st_size > 0


def test_ddo_sliced_wasserstein_is_zero_on_identical_clouds_and_grows_with_shift(load_script):
    toy = load_script("ddo_toy")
    x = toy.gmm_sample(256, 0)
    assert toy.sliced_wasserstein(x, x) == 0.0
    assert toy.sliced_wasserstein(x, x + 0.5) > toy.sliced_wasserstein(x, x + 0.1) > 0


def test_bench_ddo_runs_and_reports_both_models(load_script):
    rows = load_script("bench_ddo").main(["--repeats", "1", "--batch-size", "2"])
    assert len(rows) == 2 and all(ddo_time > 0 and mle_time > 0 for _, mle_time, ddo_time, *_ in rows)


def test_ddo_toy_script_gmm_quick_reports_every_round_and_the_data_floor(tmp_path, load_script):
    reports = load_script("ddo_toy").main(["--parts", "gmm", "--quick", "--device", "cpu", "--output-dir", str(tmp_path),
                                           "--work-dir", str(tmp_path / "work")])
    report = reports["gmm"]
    assert [r["stage"] for r in report["results"]][1:3] == ["DDO round 1", "DDO round 2"]
    assert len(report["samples"]) == len(report["results"]) and report["data_sliced_w2_floor"] > 0
    assert all(set(r) >= {"sliced_w2", "true_log_density", "median_log_density"} for r in report["results"])
    assert "on cpu" in (tmp_path / "results" / "ddo.md").read_text()
    assert (tmp_path / "figures" / "ddo_gmm.png").stat().st_size > 0
