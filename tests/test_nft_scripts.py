"""NFT's registry entry, card, demo recipe and scripts, at smoke size."""

import sys
from pathlib import Path

import pytest

import hfgen


def test_registry_entry_resolves_components_and_demo():
    from hfgen.trainers import NFTConfig, NFTTrainer

    info = hfgen.get_method("nft")
    assert info.paper.arxiv_id == "2505.18116"
    assert info.load_component("NFTTrainer") is NFTTrainer and info.load_component("NFTConfig") is NFTConfig
    assert callable(info.load_demo())


def test_card_renders_with_method_text_and_citation():
    from hfgen.hub import render_model_card

    text = str(render_model_card("nft", model_name="tiny-nft", base_model="Qwen/Qwen2.5-Math-7B",
                                 datasets=["BytedTsinghua-SIA/DAPO-Math-17k"], training_config={"neg_weight": 0.0},
                                 neg_weight=0.0))
    assert "RFT (rejection-sampling fine-tuning" in text and "implicit negative policy" in text
    assert "@article{chen2025nft" in text and "| neg_weight | 0.0 |" in text
    assert "library_name: hfgen" in text and "- hfgen-nft" in text


def test_paper_recipe_config_constructs_and_validates(load_script):
    recipe = load_script("nft_dapo_math_7b")
    args = recipe.build_config("unused", use_cpu=True)  # use_cpu only because this machine has no GPU
    assert (args.learning_rate, args.num_generations, args.temperature, args.beta, args.max_grad_norm) == (
        1e-6, 16, 1.0, 0.0, 1.0)
    assert args.use_vllm and args.neg_weight == 1.0 and args.question_weight == "one_minus_rq"
    assert args.weight_decay == 0.1 and args.max_completion_length == 3584 and args.negative_clamp == 1.0
    # 32 questions x 16 answers per optimizer step over 32 devices; 16 optimizer steps per 512-question rollout
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * 32 == 512
    assert args.steps_per_generation // args.gradient_accumulation_steps == 16
    assert recipe.build_config("unused", neg_weight=0.0, use_cpu=True).neg_weight == 0.0
    with pytest.raises(ValueError, match="`world_size`"):
        recipe.build_config("unused", world_size=3, use_cpu=True)
    completions = [[{"role": "assistant", "content": "so the answer is \\boxed{34}"}],
                   [{"role": "assistant", "content": "Answer: 35"}]]
    assert recipe.dapo_math_reward(completions, ["34", "34"]) == [1.0, 0.0]


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_arithmetic_experiment_smoke_records_every_arm_with_the_same_budget(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    path = load_script("nft_arithmetic").main(seeds=(0,), max_steps=4, eval_every=2, sft_steps=5,
                                              out_fig=tmp_path / "nft.png", raw_dir=tmp_path / "raw")
    record = read_record(path)
    assert path == tmp_path / "raw" / "nft" / "arithmetic.json" and record["seeds"] == [0]
    check_arms(record, ["nft", "rft", "grpo"], ["final_accuracy", "best_accuracy", "pass_at_8", "optimizer_steps",
                                                "mean_refill_rounds", "seconds"])
    for arm in ("nft", "rft", "grpo"):
        assert record["metrics"][arm]["optimizer_steps"] == [4]  # each arm took every step it was given
        assert record["metrics"][arm]["curve_steps"] == [[0, 2, 4]]
        assert all(0 <= a <= 1 for a in record["metrics"][arm]["curve_accuracy"][0])
    assert len(set(record["settings"]["budget"].values())) == 1  # one budget for every arm
    assert record["settings"]["claim"]["baseline"] == "rft" and str(tmp_path / "nft.png") in record["figures"]


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_benchmark_smoke(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    results = load_script("bench_nft").main(steps=3, rounds=1, repeats=2, batch_size=16, sft_steps=2, device="cpu",
                                            raw_dir=tmp_path)
    record = read_record(results["record"])
    check_arms(record, ["nft", "grpo"], ["train_step_s", "generate_and_score_s", "loss_fwd_bwd_s",
                                         "saved_for_backward_bytes", "measured_train_steps"])
    for arm in ("nft", "grpo"):  # each trainer ran: 2 runs x 3 steps, the first 2 of each run skipped as warm-up
        assert record["metrics"][arm]["measured_train_steps"] == [2]
        assert record["metrics"][arm]["saved_for_backward_bytes"][0] > 0


@pytest.mark.slow  # a script smoke run of about a minute on 2 shared cores: run by .ci/run with -m slow
def test_negatives_study_smoke_records_every_arm_with_the_same_budget(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from collect_results import render_nft_negatives

    path = load_script("nft_negatives").main([
        "--seeds", "0", "1", "--learning-rates", "1e-4", "1e-3", "--max-steps", "4", "--eval-every", "2",
        "--steps-per-generation", "2", "--questions-per-step", "2", "--max-refill-rounds", "1",
        "--sft-check-every", "5", "--max-sft-steps", "10",
        "--validation-size", "40", "--test-fraction", "0.005", "--entropy-probe-size", "20",
        "--raw-dir", str(tmp_path / "raw"), "--figures-dir", str(tmp_path)])
    record = read_record(path)
    arms = ["nft", "rft", "grpo", "dr_grpo"]
    assert path == tmp_path / "raw" / "nft" / "negatives.json" and record["seeds"] == [0, 1]
    check_arms(record, arms, ["final_accuracy", "best_accuracy", "pass_at_1", "pass_at_16", "final_entropy",
                              "learning_rate", "optimizer_steps", "generated_answers", "warm_start_accuracy",
                              "warm_start_frac_mixed", "grid_validation_accuracy_lr=0.0001",
                              "grid_validation_accuracy_lr=0.001"])
    for arm in arms:
        values = record["metrics"][arm]
        assert values["optimizer_steps"] == [4, 4]  # each arm took every step it was given
        assert values["curve_steps"] == [[0, 2, 4]] * 2
        assert values["learning_rate"][0] in (1e-4, 1e-3) and len(set(values["learning_rate"])) == 1
        assert values["generated_answers"][0] >= 4 * 2 * 16  # at least what the optimizer steps consumed
        for pass_at in values["pass_at_k"]:  # pass@1..16 of each seed: probabilities, non-decreasing in k
            assert len(pass_at) == 16 and all(0 <= a <= b <= 1 for a, b in zip(pass_at, pass_at[1:]))
        assert all(e > 0 for curve in values["curve_entropy"] for e in curve)
    assert len(set(record["settings"]["budget"].values())) == 1  # one budget for every arm
    assert record["settings"]["claim"]["baseline"] == "rft" and str(tmp_path / "nft_negatives.png") in record["figures"]
    text = render_nft_negatives(record, {})
    assert "| dr_grpo |" in text and "pass@16" in text and "nft − dr_grpo" in text


def test_pass_at_k_is_the_unbiased_estimator():
    from math import comb

    from hfgen.data.arithmetic import pass_at_k

    assert pass_at_k([0, 16], 16, 1) == 0.5 and pass_at_k([1], 16, 16) == 1.0
    assert pass_at_k([3], 16, 4) == pytest.approx(1 - comb(13, 4) / comb(16, 4))
    assert pass_at_k([3], 16, 1) == pytest.approx(3 / 16)  # pass@1 is the fraction correct
    with pytest.raises(ValueError, match="`k`"):
        pass_at_k([3], 16, 17)
