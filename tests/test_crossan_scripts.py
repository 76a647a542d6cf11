"""The CROSSAN synthetic study (scripts/crossan_synthetic.py): its generator, its adapter arm and a smoke-sized run."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def study(load_script):
    return load_script("crossan_synthetic")


def test_each_modality_shows_only_its_own_factors_and_the_noise_modality_none(study):
    data = study.make_complementary_data(num_users=30, num_items=300, factors_per_modality=2, values=3,
                                         feature_noise=1.0, seed=0)
    factors = data.item_factors.numpy()[1:]
    for b, m in enumerate(study.FACTOR_MODALITIES):
        features = data.item_inputs[m]["inputs_embeds"][1:].flatten(1).numpy()
        block = factors[:, 2 * b:2 * b + 2]
        same_block = (block[:, None] == block[None]).all(-1)
        same_features = np.isclose(features[:, None], features[None]).all(-1)
        assert (same_block == same_features).all()  # the features are a one-to-one function of its block
    noise = data.item_inputs[study.NOISE_MODALITY]["inputs_embeds"][1:].flatten(1)
    assert not torch.isclose(noise[:, None], noise[None]).all(-1)[~torch.eye(300, dtype=torch.bool)].any()
    # the next item follows every block: it matches the shifted factors of the one before more often than chance
    pairs = [(a, b) for seq in data.sequences for a, b in zip(seq, seq[1:])]
    f = data.item_factors
    shifted = torch.stack([((f[a] + 1) % 3 == f[b]).float() for a, b in pairs]).mean(0)
    assert (shifted > 1 / 3 + 0.1).all()


def test_houlsby_adapter_arm_starts_at_the_frozen_encoders_and_trains_only_bottlenecks(study):
    encoders = study.make_encoders(["text"], width=32, layers=3, tokens=4, seed=0)
    x = torch.randn(5, 4, 32)
    before = encoders["text"](inputs_embeds=x).last_hidden_state
    config = study.BackboneItemEncoderConfig(modalities=["text"], tuning=study.BACKBONE_TUNING["Adapters (Houlsby)"],
                                             adapter_size=8)
    backbone = study.BackboneItemEncoder(config, encoders).backbones["text"]
    torch.testing.assert_close(backbone(inputs_embeds=x).last_hidden_state, before)
    per_adapter = (32 * 8 + 8) + (8 * 32 + 32)
    assert study.trainable_parameters(backbone) == 3 * 2 * per_adapter  # two adapters in each of the 3 layers


@pytest.mark.slow  # a smoke run of every arm in two conditions, two seeds: about a minute on 2 shared cores
def test_study_records_every_arm_in_every_condition_with_one_value_per_seed(tmp_path, study, load_script):
    from hfgen.results import check_arms, read_record

    metrics, path = study.main(["--users", "24", "--items", "30", "--epochs", "1", "--batch-size", "16",
                                "--lrs", "0.003", "--seeds", "0", "1", "--conditions", "4", "4+noise",
                                "--figures-dir", str(tmp_path / "fig"), "--raw-dir", str(tmp_path / "raw")])
    record = read_record(path)
    assert (record["method"], record["name"], record["seeds"]) == ("crossan", "synthetic", [0, 1])
    arms = [study.arm_key(arm, c) for arm in study.ARMS for c in ("4", "4+noise")]
    check_arms(record, arms, ["hr@10", "ndcg@10", "valid_hr@10", "trainable_params", "step_ms", "chosen_lr"])
    check_arms(record, [study.arm_key(study.ORACLE, c) for c in ("4", "4+noise")], ["hr@10", "ndcg@10"])
    check_arms(record, [study.arm_key("CROSSAN (MoMEF)", "4+noise")], ["router_noise", "router_cross", "router_text"])
    four = {arm: record["metrics"][study.arm_key(arm, "4")]["trainable_params"][0] for arm in study.ARMS}
    assert four["CROSSAN (MoMEF)"] < four["IISAN-style pairwise"]  # exact counts, not a measured effect
    assert set(record["settings"]["budget"]) == set(study.ARMS) and record["settings"]["claim"]["metric"] == "hr@10"
    assert list(record["figures"]) == [str(tmp_path / "fig" / "crossan_synthetic.png")]
    block = load_script("collect_results").render_crossan_synthetic(record, {})
    assert "CROSSAN (MoMEF) − LoRA" in block and "4+noise − 4 encoders" in block and "Paper's claim checked" in block
