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


def test_toy2d_benchmark_metrics_are_exact_on_true_draws(load_script):
    toy = load_script("gft_toy2d")
    points, labels = toy.draw(400, seed=0)
    reference, reference_labels = toy.draw(400, seed=1)
    floor = toy.quality(points, labels, reference, reference_labels)
    # uniform along each curve with N(0, σ²) thickness: distance ≈ σ·√(2/π), nearly all within 3σ, every piece covered
    assert abs(floor["support_distance"] - toy.SIGMA * (2 / 3.141592653589793) ** 0.5) < 0.2 * toy.SIGMA
    assert floor["precision"] > 0.98 and floor["coverage"] == 1.0
    # another class's draws are far from this class's curve (the benchmark separates classes)
    shifted = toy.quality(points, (labels + 1) % toy.NUM_CLASSES, reference, reference_labels)
    assert shifted["support_distance"] > 3 * floor["support_distance"] and shifted["sliced_w2"] > floor["sliced_w2"]


@pytest.mark.slow  # six tiny trainings and their samples: 15-60 s on 2 shared cores
def test_toy2d_study_records_both_arms_at_every_scale(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    _, path = load_script("gft_toy2d").main([
        "--train-steps", "3", "--train-per-class", "32", "--eval-per-class", "16", "--scales", "1", "2",
        "--lr-grid", "1e-3", "--ddim-steps", "2", "--seeds", "0", "1", "--figures-dir", str(tmp_path / "fig"),
        "--raw-dir", str(tmp_path / "raw"), "--work-dir", str(tmp_path / "w")])
    record = read_record(path)
    quality = ["sliced_w2", "support_distance", "precision", "coverage"]
    check_arms(record, ["data"], quality)
    check_arms(record, ["CFG s=1", "GFT s=1", "CFG s=2", "GFT s=2", "CFG chosen", "GFT chosen"],
               quality + ["nfe_per_sample", "sampling_seconds_per_1k"])
    # CFG: two network evaluations a step when guided (one at s = 1); GFT: one
    assert record["metrics"]["CFG s=2"]["nfe_per_sample"] == [4, 4] and record["metrics"]["GFT s=2"]["nfe_per_sample"] == [2, 2]
    assert record["metrics"]["CFG s=1"]["nfe_per_sample"] == [2, 2]
    assert set(record["settings"]["chosen"]) == {"CFG", "GFT"} and record["settings"]["claim"]["margin"] > 0
    assert {k: len(v) for k, v in record["settings"]["train_seconds"].items()} == {"CFG": 2, "GFT": 2}
    assert set(record["figures"]) == {str(tmp_path / "fig" / "gft_toy2d.png"), str(tmp_path / "fig" / "gft_toy2d_samples.png")}
    block = load_script("collect_results").render_gft_toy2d(record, {})
    assert "| 2 |" in block and "Paper's claim checked" in block


def test_finetune_digits_fid_classifier_never_sees_the_test_split(monkeypatch, load_script):
    import hfgen.data.digits as digits
    from hfgen.metrics import sample_quality

    requested = []
    load = digits.load_digits_images
    monkeypatch.setattr(digits, "load_digits_images", lambda **kw: requested.append(kw["split"]) or load(**kw))
    sample_quality.digits_classifier.__wrapped__(seed=0, steps=1)
    assert requested == ["train"]  # the FID features come from a classifier fitted on the train split only
    train, _ = load(size=8, split="train")
    test, _ = load(size=8, split="test")
    everything, _ = load(size=8, split="all")
    assert len(train) + len(test) == len(everything)  # one seeded permutation, cut in two: disjoint
    images, labels, validation = load_script("gft_finetune_digits").split_train_validation()
    assert len(images) + len(validation) == len(train) and len(labels) == len(images)  # the holdout is inside train


@pytest.mark.slow  # a pretraining, four fine-tunings and their samples: 30-90 s on 2 shared cores
def test_finetune_digits_study_records_both_arms_at_every_scale(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    _, path = load_script("gft_finetune_digits").main([
        "--pretrain-steps", "3", "--finetune-steps", "2", "--lr-grid", "1e-3", "--samples-per-class", "2",
        "--validation-per-class", "2", "--scales", "1", "2", "--ddim-steps", "2", "--seeds", "0", "1",
        "--figures-dir", str(tmp_path / "fig"), "--raw-dir", str(tmp_path / "raw"), "--work-dir", str(tmp_path / "w")])
    record = read_record(path)
    check_arms(record, ["CFG s=1", "GFT s=1", "CFG s=2", "GFT s=2", "CFG chosen", "GFT chosen"],
               ["digits_fid", "class_accuracy", "diversity", "nfe_per_image", "sampling_seconds_per_1k"])
    assert record["metrics"]["CFG s=2"]["nfe_per_image"] == [4, 4] and record["metrics"]["GFT s=2"]["nfe_per_image"] == [2, 2]
    assert [len(v) for v in record["settings"]["chosen"].values()] == [2, 2]
    assert {k: len(v) for k, v in record["settings"]["seconds"].items()} == {"pretrain": 2, "CFG": 2, "GFT": 2}
    assert set(record["figures"]) == {str(tmp_path / "fig" / "gft_finetune_digits.png")}
    block = load_script("collect_results").render_gft_finetune_digits(record, {})
    assert "| 2 |" in block and "Paper's claim checked" in block


def test_gft_finetuning_starts_from_the_pretrained_model(load_script):
    import torch

    from hfgen.demos.gft import build_unet
    from hfgen.pipelines.gft.modeling_beta_conditioning import unet_timestep_cond

    pretrained = build_unet(8, beta_input=False, seed=0, channels=(16, 32)).eval()
    x, t, labels = torch.randn(3, 1, 8, 8), torch.tensor([10, 500, 900]), torch.tensor([1, 2, 10])
    with torch.no_grad():
        before = pretrained(x, t, class_labels=labels, encoder_hidden_states=None).sample
        gft = load_script("gft_finetune_digits").with_beta_input(pretrained).eval()
        assert gft.config.gft_beta_embedding == "timestep"  # the DiT form of the β embedding
        for beta in (1.0, 0.5, 0.1):  # zero-initialised β projection: the same outputs at every β
            cond = unet_timestep_cond(gft, torch.full((3,), beta))
            after = gft(x, t, timestep_cond=cond, class_labels=labels, encoder_hidden_states=None).sample
            torch.testing.assert_close(after, before)
