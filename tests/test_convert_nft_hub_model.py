"""NFT from a Hub causal LM: ``NFTTrainer(model="<id>")`` takes any ``AutoModelForCausalLM`` id or path, with and without PEFT.

The paper's released NFT-7B is a Qwen2 model (Qwen2.5-Math-7B fine-tuned). Offline, a tiny Qwen2 (random
weights, built from a config) is uploaded to the loopback fake Hub and trained by id, as the paper-scale recipe
(``scripts/nft_dapo_math_7b.py --model``) trains ``Qwen/Qwen2.5-Math-7B``.
"""

import math

import pytest
import torch

from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_tokenizer, tiny_causal_lm
from hfgen.trainers import NFTConfig, NFTTrainer

REPO = "hfgen-ci/tiny-qwen2-math"


def mixed_reward(completions, **kwargs):
    """A content-independent verifier: in each group of 8 answers the first 1..7 are correct (the random tiny
    model answers nothing right, and all-wrong groups carry no NFT gradient)."""
    return [float(i % 8 < 1 + (i // 8) % 7) for i in range(len(completions))]


@pytest.fixture(scope="module")
def data():
    return arithmetic_dataset(max_operand=10, seed=0)


def _args(tmp_path, **kwargs):
    return NFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                     disable_tqdm=True, per_device_train_batch_size=16, num_generations=8, max_completion_length=4,
                     learning_rate=0.05, logging_steps=1, max_steps=2, seed=0, **kwargs)


@pytest.fixture
def hub_model(tmp_path, fake_hub):
    from huggingface_hub import HfApi

    tokenizer = arithmetic_tokenizer()
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    folder = tmp_path / "tiny-qwen2"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if not HfApi().repo_exists(REPO):  # the fake Hub lives for the whole session
        HfApi().create_repo(REPO)
    HfApi().upload_folder(repo_id=REPO, folder_path=str(folder))
    return model, folder


def _trained(trainer):
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("source", ["hub_id", "local_path"])
def test_nft_trains_a_causal_lm_given_by_id(hub_model, data, tmp_path, source):
    base, folder = hub_model
    trainer = NFTTrainer(model=REPO if source == "hub_id" else str(folder), reward_funcs=mixed_reward,
                         train_dataset=data["train"], args=_args(tmp_path, model_init_kwargs={"dtype": torch.float32}))
    assert type(trainer.model).__name__ == "Qwen2ForCausalLM"
    assert trainer.processing_class("12+7=")["input_ids"] == arithmetic_tokenizer()("12+7=")["input_ids"]
    _trained(trainer)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), base.state_dict()[n])]
    assert changed
    trainer.save_model()
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "README.md").is_file()


def test_nft_with_peft_lora_trains_only_the_adapter(hub_model, data, tmp_path):
    from peft import LoraConfig, PeftModel

    base, _ = hub_model
    trainer = NFTTrainer(model=REPO, reward_funcs=mixed_reward, train_dataset=data["train"],
                         args=_args(tmp_path), peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    assert isinstance(trainer.model, PeftModel)
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    _trained(trainer)
    params = dict(trainer.model.named_parameters())
    assert any(not torch.equal(params[n].detach(), v) for n, v in lora_before.items() if "lora_B" in n)
    for name, p in base.state_dict().items():  # the base weights are frozen
        peft_name = "base_model.model." + name.replace("q_proj.weight", "q_proj.base_layer.weight").replace(
            "v_proj.weight", "v_proj.base_layer.weight")
        if peft_name in params:
            assert torch.equal(params[peft_name].detach(), p), name
    trainer.save_model()
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not (out / "model.safetensors").exists()
