"""``peft_config=`` through the trainer base: adapter-only saves that the ecosystem's own loaders read
(``peft.PeftModel.from_pretrained`` for transformers models, Diffusers' ``load_lora_adapter`` for Diffusers
models), and resume from an adapter-only checkpoint.

Checked on purpose: with the base's checkpoint loading skipped for PEFT models, the resumed adapter differs from the
unbroken run's (``lora_A`` of layer 0 off by about 1e-3 after one step).
"""

import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig

sys.path.insert(0, str(Path(__file__).parent / "_reliability_workers"))
from builders import build  # noqa: E402


def test_transformers_model_gets_a_peft_adapter_saved_alone_and_reloaded_by_peft(tmp_path):
    from peft import PeftModel

    from hfgen.testing.tiny_models import tiny_bert_mlm

    config = LoraConfig(r=4, target_modules=["query", "value"], lora_dropout=0.0, init_lora_weights=False)
    trainer = build("masked_diffusion", tmp_path / "out", max_steps=2, save_strategy="steps", save_steps=1,
                    peft_config=config)
    assert trainer.model.__class__.__name__.startswith("Peft")
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    trainer.train()
    trainer.save_model()
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "training_args.json", "README.md"} <= files
    assert "model.safetensors" not in files and "training_args.bin" not in files

    base = tiny_bert_mlm(len(trainer.processing_class), seed=0)  # the same initial weights as the builder's
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "out")).eval()
    ids = torch.randint(5, len(trainer.processing_class), (2, 12), generator=torch.Generator().manual_seed(3))
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, trainer.model(input_ids=ids).logits)

    # resume from the adapter-only checkpoint of step 1 reaches the same adapter as the unbroken run
    resumed = build("masked_diffusion", tmp_path / "out", max_steps=2, save_strategy="no", peft_config=config)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-1"))
    for (name, a), (_, b) in zip(trainer.model.named_parameters(), resumed.model.named_parameters()):
        if "lora_" in name:
            assert torch.equal(a, b), name


def test_diffusers_model_without_adapter_support_is_refused_naming_peft_config(tmp_path):
    with pytest.raises(ValueError, match="`peft_config`"):
        build("bridge", tmp_path / "out", peft_config=LoraConfig(r=4, target_modules=["to_q"]))


def _gft_diffusion(output_dir, peft_config, **kwargs):
    from hfgen.data.digits import digits_dataset
    from hfgen.demos.gft import build_unet
    from hfgen.trainers import GFTConfig, GFTTrainer

    args = GFTConfig(output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=4, report_to=[],
                     use_cpu=True, seed=0, disable_tqdm=True, **kwargs)
    data = digits_dataset(size=8, split="train").select(range(16))
    return GFTTrainer(build_unet(8, channels=(8, 16), seed=0), args, train_dataset=data, peft_config=peft_config)


def test_diffusers_model_gets_an_adapter_saved_in_diffusers_lora_format_and_resumed(tmp_path):
    from hfgen.demos.gft import build_unet

    config = LoraConfig(r=4, target_modules=["conv1", "conv2"], init_lora_weights=False)
    trainer = _gft_diffusion(tmp_path / "out", config, save_strategy="steps", save_steps=1)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    trainer.train()
    trainer.save_model()
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert "pytorch_lora_weights.safetensors" in files and "diffusion_pytorch_model.safetensors" not in files

    unet = build_unet(8, channels=(8, 16), seed=0)  # the base weights, then Diffusers' own LoRA loader
    # weight_name given: offline, Diffusers' guess of the file name falls back to the .bin name
    unet.load_lora_adapter(str(tmp_path / "out"), prefix=None, weight_name="pytorch_lora_weights.safetensors")
    x, t, labels = torch.randn(2, 1, 8, 8), torch.tensor([10, 500]), torch.tensor([1, 2])
    cond = torch.zeros(2, 64)
    trained = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        torch.testing.assert_close(unet.eval()(x, t, None, class_labels=labels, timestep_cond=cond).sample,
                                   trained(x, t, None, class_labels=labels, timestep_cond=cond).sample)

    resumed = _gft_diffusion(tmp_path / "out", config, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-1"))
    for (name, a), (_, b) in zip(trained.named_parameters(), resumed.model.named_parameters()):
        if "lora_" in name:
            assert torch.equal(a, b), name
