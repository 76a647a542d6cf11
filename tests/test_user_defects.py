"""Three defects a TRL/Diffusers user met: each fails on the code before its fix."""

import pytest
import torch
from test_reliability_bad_inputs import bridge_pipe, ct_pipe

import hfgen
from hfgen.testing import tiny_models


def test_load_of_a_folder_with_only_pickle_weights_names_pickle_and_safetensors(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle.*safetensors") as error:
        hfgen.load(tmp_path)
    assert "pytorch_model.bin" in str(error.value)
    with pytest.raises(ValueError, match="not a saved artifact"):  # trusted pickles: still no config to load from
        hfgen.load(tmp_path, allow_pickle=True)


def test_load_of_an_unrelated_folder_still_says_it_is_not_an_artifact(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a saved artifact"):
        hfgen.load(tmp_path)


@pytest.mark.parametrize("eval_dataset", ["plain", "dict"])
def test_ddo_refuses_an_eval_dataset_that_is_not_real_fake_pairs_before_training(tmp_path, eval_dataset):
    from hfgen.trainers import DDOConfig, DDOTrainer
    from hfgen.trainers.ddo import RealFakePairs

    examples = [{"input_ids": torch.tensor([1, 2, 3, 4])} for _ in range(4)]
    held_out = examples if eval_dataset == "plain" else {"held_out": examples}
    args = DDOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1)
    with pytest.raises(ValueError, match="eval_dataset.*RealFakePairs"):
        DDOTrainer(tiny_models.tiny_llama(pad_token_id=0), args=args, train_dataset=examples, fake_dataset=examples,
                   eval_dataset=held_out)
    paired = RealFakePairs(examples, examples)
    trainer = DDOTrainer(tiny_models.tiny_llama(pad_token_id=0), args=args, train_dataset=examples,
                         fake_dataset=examples, eval_dataset=paired if eval_dataset == "plain" else {"held_out": paired})
    metrics = trainer.evaluate()
    assert any(key.startswith("eval_") and key.endswith("loss") for key in metrics)


def trajectory_mlp():
    from hfgen.pipelines.consistency_trajectory.modeling_trajectory_mlp import TrajectoryMLP

    return TrajectoryMLP(dim=2, hidden_dim=8, num_layers=1, time_embed_dim=4)


@pytest.mark.parametrize("make", [trajectory_mlp, ct_pipe, bridge_pipe],
                         ids=["model", "pipeline", "pipeline-of-a-diffusers-unet"])
def test_save_pretrained_refuses_pickle_serialization(tmp_path, make):
    saveable = make()
    with pytest.raises(ValueError, match="safe_serialization"):
        saveable.save_pretrained(tmp_path / "out", safe_serialization=False)
    assert not (tmp_path / "out").exists() or not any(p.suffix == ".bin" for p in (tmp_path / "out").rglob("*"))
    saveable.save_pretrained(tmp_path / "out", safe_serialization=True)
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "out").rglob("*"))
    assert not any(p.suffix == ".bin" for p in (tmp_path / "out").rglob("*"))
