"""Smoke-sized runs of DDO's reproduction script and benchmark (the full runs live in scripts/)."""

import pytest

from hfgen.results import check_arms, read_record


def test_ddo_toy_script_markov_quick_writes_a_record_of_every_arm_and_the_figure(tmp_path, load_script):
    paths = load_script("ddo_toy").main(["--parts", "markov", "--quick", "--seeds", "0", "1", "--raw-dir",
                                         str(tmp_path / "raw"), "--figures-dir", str(tmp_path / "fig"),
                                         "--work-dir", str(tmp_path / "work")])
    record = read_record(paths["markov"])
    assert record["seeds"] == [0, 1] and record["torch_threads"] >= 1 and record["wall_s"] > 0
    check_arms(record, ["reference (MLE pretrained)", "DDO, last round", "MLE control (8 more steps)"],
               ["forward_kl", "reverse_kl"])
    assert list(record["figures"]) == [str(tmp_path / "fig" / "ddo_markov.png")]
    assert record["settings"]["higher_is_better"] == {"forward_kl": False, "reverse_kl": False}


@pytest.mark.slow  # about a minute on 2 shared cores
def test_ddo_toy_script_digits_quick_gives_both_arms_the_same_steps_and_grid_size(tmp_path, load_script):
    toy = load_script("ddo_toy")
    paths = toy.main(["--parts", "digits", "--quick", "--seeds", "0", "--raw-dir", str(tmp_path / "raw"),
                      "--work-dir", str(tmp_path / "work")])
    record = read_record(paths["digits"])
    ddo, mle = "DDO (2 rounds x 4 steps)", "MLE control (8 more steps)"
    check_arms(record, ["reference (MLE pretrained)", ddo, mle], ["digits_fid", "optimizer_steps"])
    check_arms(record, [ddo, mle], ["selection_fid", "chosen_lr"])
    assert record["metrics"][ddo]["optimizer_steps"] == record["metrics"][mle]["optimizer_steps"] == [8]
    assert len(toy.DIGITS_LR_GRID["ddo"]) == len(toy.DIGITS_LR_GRID["mle"])
    assert record["metrics"][mle]["chosen_lr"][0] in toy.DIGITS_LR_GRID["mle"]
    assert len(record["metrics"][mle]["grid_selection_fid"][0]) == len(toy.DIGITS_LR_GRID["mle"])
    assert record["settings"]["claim"]["baseline"] == mle and set(record["settings"]["budget"]) == {ddo, mle}


def test_ddo_sliced_wasserstein_is_zero_on_identical_clouds_and_grows_with_shift(load_script):
    toy = load_script("ddo_toy")
    x = toy.gmm_sample(256, 0)
    assert toy.sliced_wasserstein(x, x) == 0.0
    assert toy.sliced_wasserstein(x, x + 0.5) > toy.sliced_wasserstein(x, x + 0.1) > 0


def test_bench_ddo_records_both_steps_of_both_models(tmp_path, load_script):
    rows, path = load_script("bench_ddo").main(["--repeats", "1", "--batch-size", "2", "--raw-dir", str(tmp_path)])
    record = read_record(path)
    models = ["tiny Llama (4 layers, d=128, L=96)", "UNet2DModel 16x16 (EDM)"]
    check_arms(record, [f"{m}: {step} step" for m in models for step in ("MLE", "DDO")],
               ["median_seconds", "memory_bytes"])
    for m in models:  # each step did work that autograd kept; DDO holds a reference copy of the weights
        assert record["metrics"][f"{m}: MLE step"]["memory_bytes"][0] > 0
        assert record["metrics"][f"{m}: DDO step"]["reference_weight_bytes"][0] > 0


def test_ddo_toy_script_gmm_quick_records_every_metric_and_draws_the_clouds(tmp_path, load_script):
    paths = load_script("ddo_toy").main(["--parts", "gmm", "--quick", "--seeds", "0", "--device", "cpu", "--raw-dir",
                                         str(tmp_path / "raw"), "--figures-dir", str(tmp_path / "fig"),
                                         "--work-dir", str(tmp_path / "work")])
    record = read_record(paths["gmm"])
    assert record["device"] == "cpu"
    check_arms(record, list(record["metrics"]), ["sliced_w2", "true_log_density", "median_log_density"])
    assert len(record["metrics"]) == 3 and "DDO, last round" in record["metrics"]
    assert (tmp_path / "fig" / "ddo_gmm.png").stat().st_size > 0


@pytest.mark.slow  # about 10 s of one core, minutes on a loaded machine
def test_ddo_toy_script_gmm_rounds_quick_records_every_round_of_both_arms_with_equal_budgets(tmp_path, load_script):
    toy = load_script("ddo_toy")
    paths = toy.main(["--parts", "gmm_rounds", "--quick", "--seeds", "0", "1", "--raw-dir", str(tmp_path / "raw"),
                      "--figures-dir", str(tmp_path / "fig"), "--work-dir", str(tmp_path / "work")])
    record = read_record(paths["gmm_rounds"])
    settings, metrics = record["settings"], record["metrics"]
    rounds = [f"{arm} round {r}" for arm in ("DDO", "MLE") for r in range(1, settings["rounds"] + 1)]
    check_arms(record, ["reference, half the pretraining", "reference (MLE pretrained)", *rounds],
               ["mmd2_x1e3", "sliced_w2", "true_log_density", "validation"])
    check_arms(record, rounds, ["chosen_lr", "optimizer_steps"])
    grid = toy.GMM_ROUNDS_LR_GRID
    assert len(grid["ddo"]) == len(grid["mle"])
    for r in range(1, settings["rounds"] + 1):
        ddo, mle = metrics[f"DDO round {r}"], metrics[f"MLE round {r}"]
        assert ddo["optimizer_steps"] == mle["optimizer_steps"] == [r * settings["round_steps"]] * 2
        assert set(ddo["chosen_lr"]) <= set(grid["ddo"]) and set(mle["chosen_lr"]) <= set(grid["mle"])
        assert [len(v) for v in ddo["grid_validation"] + mle["grid_validation"]] == [len(grid["ddo"])] * 4
    curves = metrics["reference (MLE pretrained)"]["pretraining_validation"]
    assert [len(c) for c in curves] == [len(settings["pretraining_eval_steps"])] * 2
    assert settings["claim"]["arm"] == rounds[settings["rounds"] - 1] and settings["claim"]["baseline"] == rounds[-1]
    assert list(record["figures"]) == [str(tmp_path / "fig" / "ddo_gmm_rounds.png")]
    block = load_script("collect_results").RENDERERS["ddo/gmm_rounds"](record, {})
    assert block.count("→") == len(settings["higher_is_better"]) * (1 + settings["rounds"])


def test_ddo_gmm_mmd_is_unbiased_for_exact_samples_and_grows_with_blur(load_script):
    toy = load_script("ddo_toy")
    exact = [toy.gmm_mmd2(toy.gmm_sample(1024, seed)) for seed in range(4)]
    blurred = toy.gmm_mmd2(toy.gmm_sample(1024, 0, std=0.08))
    assert abs(sum(exact) / len(exact)) < 1e-3 < blurred
    assert toy.gmm_mmd2(toy.gmm_sample(1024, 0, radius=1.2)) > blurred
