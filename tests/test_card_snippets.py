"""The model card written with a saved artifact loads that artifact: its first python block, with the folder in
place of the placeholder id, runs offline (PEFT and non-PEFT saves). Cards also carry the metadata of what was
trained (``library_name: peft`` and the base for adapters, the run's rewards and prompt, the class labels)."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from tests.doc_blocks import python_blocks, run_blocks

PLACEHOLDERS = ("path/or/repo-id", "path/to/folder")


def card_of(folder) -> tuple[dict, str]:
    text = open(os.path.join(folder, "README.md")).read()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def run_card_snippet(folder, monkeypatch, **names):
    """Run the card's first python block with ``folder`` for the placeholder; ``names`` pre-fill its namespace."""
    _, body = card_of(folder)
    block = python_blocks(body.split("## How to use", 1)[1])[0]
    for placeholder in PLACEHOLDERS:
        block = block.replace(placeholder, str(folder))
    monkeypatch.chdir(os.path.dirname(folder))
    return run_blocks([block], f"{folder}/README.md") if not names else _run_with(block, folder, names)


def _run_with(block, folder, names):
    namespace = {"__name__": "__card__", **names}
    exec(compile(block, f"{folder}/README.md", "exec"), namespace)
    return namespace


def nft_trainer(output_dir, model, tokenizer, **kwargs):
    from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_reward
    from hfgen.trainers import NFTConfig, NFTTrainer

    args = NFTConfig(output_dir=str(output_dir), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                     max_completion_length=3, max_refill_rounds=0, use_cpu=True, report_to="none",
                     save_strategy="no", disable_tqdm=True)
    return NFTTrainer(model=model, reward_funcs=arithmetic_reward, args=args, processing_class=tokenizer,
                      train_dataset=arithmetic_dataset(max_operand=5)["train"], **kwargs)


@pytest.mark.parametrize("peft", [False, True])
def test_nft_card_loads_the_saved_model_or_adapter(tmp_path, monkeypatch, peft):
    from peft import LoraConfig

    from hfgen.data.arithmetic import arithmetic_tokenizer, tiny_causal_lm

    tokenizer = arithmetic_tokenizer()
    base = str(tmp_path / "base")
    tiny_causal_lm(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    extra = {"peft_config": LoraConfig(r=4, target_modules=["q_proj", "v_proj"])} if peft else {}
    trainer = nft_trainer(tmp_path / "run", base, tokenizer, **extra)
    trainer.train()
    trainer.save_model()
    folder = str(tmp_path / "run")
    meta, body = card_of(folder)
    assert meta["library_name"] == ("peft" if peft else "hfgen")
    assert ("peft" in meta["tags"] and "lora" in meta["tags"]) == peft
    assert "math-reasoning" not in meta["tags"] and '"arithmetic_reward"' in body
    first_prompt = trainer.train_dataset[0]["prompt"]
    assert f'tokenizer("{first_prompt}"' in body and "12+7=" not in body  # the run's own data, not a fixed example
    namespace = run_card_snippet(folder, monkeypatch)
    model = namespace["model"]
    if peft:
        from peft import PeftModel

        assert isinstance(model, PeftModel) and isinstance(namespace["merged"], torch.nn.Module)
    else:
        assert type(model).__name__ == "Qwen2ForCausalLM"


def test_hfgen_load_on_an_adapter_folder_loads_through_peft(tmp_path):
    from peft import LoraConfig, PeftModel

    import hfgen
    from hfgen.data.arithmetic import arithmetic_tokenizer, tiny_causal_lm

    tokenizer = arithmetic_tokenizer()
    in_memory = tiny_causal_lm(tokenizer)
    trainer = nft_trainer(tmp_path / "run", in_memory, tokenizer, peft_config=LoraConfig(r=4, target_modules=["q_proj"]))
    trainer.train()
    trainer.save_model()
    with pytest.raises(ValueError, match="base_model"):  # built in memory: nothing recorded to load it from
        hfgen.load(tmp_path / "run")
    loaded = hfgen.load(tmp_path / "run", base_model=tiny_causal_lm(tokenizer))
    assert isinstance(loaded, PeftModel)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    lora = {k: v for k, v in trained.state_dict().items() if "lora_" in k}
    assert lora and all(torch.equal(loaded.state_dict()[k], v) for k, v in lora.items())


def test_gft_card_uses_the_models_class_labels_and_a_class_conditional_tag(tmp_path, monkeypatch):
    from datasets import Dataset
    from diffusers import UNet2DConditionModel

    from hfgen.trainers import GFTConfig, GFTTrainer

    unet = UNet2DConditionModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type=None, norm_num_groups=8, num_class_embeds=3 + 1, time_cond_proj_dim=16)
    data = Dataset.from_dict({"pixel_values": torch.rand(8, 1, 8, 8).numpy() * 2 - 1,
                              "labels": [0, 1, 2, 0, 1, 2, 0, 1]}).with_format("torch")
    args = GFTConfig(output_dir=str(tmp_path / "gft"), max_steps=1, per_device_train_batch_size=8, use_cpu=True,
                     report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = GFTTrainer(unet, args, train_dataset=data)
    trainer.train()
    trainer.save_model()
    meta, body = card_of(tmp_path / "gft")
    assert "pipeline_tag" not in meta or meta["pipeline_tag"] != "unconditional-image-generation"
    assert "class-conditional-image-generation" in meta["tags"]
    assert "class_labels=[0, 1, 2]" in body and "label `3` is the null" in body
    monkeypatch.setattr("hfgen.pipelines.GuidanceFreePipeline.__call__", _fast_call(), raising=True)
    namespace = run_card_snippet(str(tmp_path / "gft"), monkeypatch)
    assert len(namespace["images"]) == 3


def _fast_call():
    from hfgen.pipelines import GuidanceFreePipeline

    call = GuidanceFreePipeline.__call__

    def fast(self, *args, **kwargs):  # the card asks for 50 steps; 2 prove the same call
        return call(self, *args, **{**kwargs, "num_inference_steps": 2})

    return fast


def test_gft_trainer_refuses_the_null_label_in_the_data(tmp_path):
    from datasets import Dataset
    from diffusers import UNet2DConditionModel

    from hfgen.trainers import GFTConfig, GFTTrainer

    unet = UNet2DConditionModel(  # built for 3 classes as num_class_embeds=3: class 2 would be the null label
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type=None, norm_num_groups=8, num_class_embeds=3, time_cond_proj_dim=16)
    data = Dataset.from_dict({"pixel_values": torch.rand(6, 1, 8, 8).numpy(),
                              "labels": [0, 1, 2, 0, 1, 2]}).with_format("torch")
    args = GFTConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=6, use_cpu=True,
                     report_to="none", save_strategy="no", disable_tqdm=True)
    with pytest.raises(ValueError, match=r"num_class_embeds = number of classes \+ 1"):
        GFTTrainer(unet, args, train_dataset=data).train()


def test_iisan_card_snippet_loads_the_saved_recommender_and_adapter(tmp_path, monkeypatch):
    from transformers import BertConfig, BertModel

    from hfgen.adapters import IISANConfig, IISANModel
    from hfgen.data.text import char_tokenizer
    from hfgen.models import SASRecConfig, SASRecModel
    from hfgen.trainers import SequentialRecConfig, SequentialRecTrainer
    from hfgen.trainers.sequential_rec.sequential_rec_trainer import SequentialRecommender

    tokenizer = char_tokenizer("abcdefghij tle")
    encoder_dir = tmp_path / "encoder"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(encoder_dir)
    titles = ["", "first item title", "second item title"]
    adapter = IISANModel(IISANConfig(modalities=["text"], layers="all", embedding_dim=16), {"text": encoder})
    adapter.set_item_inputs({"text": tokenizer(titles, padding="max_length", max_length=30, return_tensors="pt").data})
    recommender = SASRecModel(SASRecConfig(hidden_size=16, max_seq_len=3, num_hidden_layers=1, num_attention_heads=1))
    args = SequentialRecConfig(output_dir=str(tmp_path / "rec"), max_seq_len=3, save_strategy="no")
    trainer = SequentialRecTrainer(SequentialRecommender(recommender, adapter), args)
    trainer.save_model()
    assert adapter.config.base_model_name_or_path == str(encoder_dir)
    namespace = run_card_snippet(str(tmp_path / "rec"), monkeypatch)
    histories, users = namespace["histories"], namespace["user"]
    assert "attention_mask=attention_mask" in card_of(tmp_path / "rec")[1]
    expected = recommender.eval()(inputs_embeds=namespace["items"][histories],
                           attention_mask=(histories != 0).long()).last_hidden_state[:, -1]
    torch.testing.assert_close(users, expected)


@pytest.mark.parametrize("peft", [False, True])
def test_ddo_card_loads_the_saved_model_or_adapter(tmp_path, monkeypatch, peft):
    from peft import LoraConfig, PeftModel
    from transformers import LlamaForCausalLM

    from hfgen.testing.tiny_models import tiny_llama
    from hfgen.trainers import DDOConfig, DDOTrainer

    base = str(tmp_path / "base")
    tiny_llama(vocab_size=16).save_pretrained(base)
    model = LlamaForCausalLM.from_pretrained(base)
    real = [{"input_ids": torch.tensor([1, 2, 3, 4])} for _ in range(4)]
    fake = [{"input_ids": torch.tensor([1, 5, 6, 7])} for _ in range(4)]
    args = DDOConfig(output_dir=str(tmp_path / "ddo"), max_steps=1, per_device_train_batch_size=4, use_cpu=True,
                     report_to="none", save_strategy="no", disable_tqdm=True)
    extra = {"peft_config": LoraConfig(r=2, target_modules=["q_proj"])} if peft else {}
    trainer = DDOTrainer(model, args=args, train_dataset=real, fake_dataset=fake, **extra)
    trainer.train()
    trainer.save_model()
    meta, _ = card_of(tmp_path / "ddo")
    assert meta["library_name"] == ("peft" if peft else "hfgen")
    loaded = run_card_snippet(str(tmp_path / "ddo"), monkeypatch)["model"]
    assert isinstance(loaded, PeftModel) if peft else isinstance(loaded, LlamaForCausalLM)


def _steps_capped(monkeypatch, pipeline_class, cap: int):
    call = pipeline_class.__call__

    def capped(self, *args, **kwargs):  # a card asks for many steps; a few prove the same call
        if kwargs.get("num_inference_steps"):
            kwargs["num_inference_steps"] = min(kwargs["num_inference_steps"], cap)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", capped)


def test_masked_diffusion_pipeline_card_runs(tmp_path, monkeypatch):
    from transformers import BertConfig, BertForMaskedLM

    from hfgen.data.text import char_tokenizer
    from hfgen.pipelines import FirstHittingScheduler, MaskedDiffusionPipeline

    tokenizer = char_tokenizer("The cat sat.")
    denoiser = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=32, max_position_embeddings=128))
    MaskedDiffusionPipeline(denoiser=denoiser, tokenizer=tokenizer, scheduler=FirstHittingScheduler()).save_pretrained(
        tmp_path / "mdm")
    _steps_capped(monkeypatch, MaskedDiffusionPipeline, 4)
    namespace = run_card_snippet(str(tmp_path / "mdm"), monkeypatch)
    assert isinstance(namespace["pipe"], MaskedDiffusionPipeline) and namespace["out"].sequences.shape == (1, 128)


def test_consistency_bridge_pipeline_card_runs(tmp_path, monkeypatch):
    from diffusers import UNet2DModel

    from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline

    unet = UNet2DModel(sample_size=8, in_channels=2, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    ConsistencyBridgePipeline(unet=unet, scheduler=BridgeScheduler(solver="consistency")).save_pretrained(tmp_path / "cb")
    namespace = run_card_snippet(str(tmp_path / "cb"), monkeypatch)
    assert namespace["out"].nfe == 2 and (tmp_path / "translated.png").is_file()


def test_analytic_precond_pipeline_card_runs(tmp_path, monkeypatch):
    from hfgen.pipelines import ConsistencyTrajectoryPipeline, ConsistencyTrajectoryScheduler
    from hfgen.pipelines.consistency_trajectory import TrajectoryMLP

    pipe = ConsistencyTrajectoryPipeline(denoiser=TrajectoryMLP(dim=2, hidden_dim=16),
                                         scheduler=ConsistencyTrajectoryScheduler())
    pipe.save_pretrained(tmp_path / "ctm")
    namespace = run_card_snippet(str(tmp_path / "ctm"), monkeypatch)
    assert namespace["out"].samples.shape == (1000, 2)


def test_gft_pipeline_card_runs_with_the_models_class_labels(tmp_path, monkeypatch):
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from hfgen.pipelines import GuidanceFreePipeline

    unet = UNet2DConditionModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type=None, norm_num_groups=8, num_class_embeds=2 + 1, time_cond_proj_dim=16)
    GuidanceFreePipeline(unet=unet, scheduler=DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    meta, body = card_of(tmp_path / "pipe")
    assert "class-conditional-image-generation" in meta["tags"] and "pipeline_tag" not in meta
    assert "class_labels=[0, 1]" in body and "label `2` is the null" in body
    _steps_capped(monkeypatch, GuidanceFreePipeline, 2)
    assert len(run_card_snippet(str(tmp_path / "pipe"), monkeypatch)["images"]) == 2


def test_mf2_card_runs_zero_shot_on_the_saved_model_and_tokenizer(tmp_path, monkeypatch):
    from hfgen.data.faces import build_face_tokenizer, make_synthetic_faces
    from hfgen.demos.mf2 import tiny_mf2_config
    from hfgen.models.mf2 import MF2Model
    from hfgen.trainers.mf2 import MF2Trainer, MF2TrainingConfig

    tokenizer, faces = build_face_tokenizer(), make_synthetic_faces(8, image_size=16, seed=0)
    torch.manual_seed(0)
    model = MF2Model(tiny_mf2_config(tokenizer, image_size=16, width=16, layers=1))
    trainer = MF2Trainer(model=model, args=MF2TrainingConfig(str(tmp_path / "mf2"), max_steps=1, use_cpu=True,
                                                            per_device_train_batch_size=8, report_to=[]),
                         train_dataset=faces, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    pixel_values = faces.pixel_values()[:3]
    namespace = run_card_snippet(str(tmp_path / "mf2"), monkeypatch, pixel_values=pixel_values)
    config = model.config
    assert namespace["emotion_logits"].shape == (3, len(config.emotion_names))
    assert namespace["au_logits"].shape == (3, len(config.au_names))
    with torch.no_grad():  # the card's model is the saved one: same zero-shot scores as the trained model
        prompts = namespace["prompts"]
        expected = model.eval().zero_shot_emotion_logits(pixel_values, prompts.input_ids, prompts.attention_mask)
    torch.testing.assert_close(namespace["emotion_logits"], expected)


def test_dfn_card_loads_the_adapter_on_its_frozen_mf2(tmp_path, monkeypatch):
    from hfgen.adapters.dfn import DFNConfig, DFNModel
    from hfgen.data.faces import build_face_tokenizer, make_synthetic_faces
    from hfgen.demos.mf2 import tiny_mf2_config
    from hfgen.models.mf2 import MF2Model

    torch.manual_seed(0)
    mf2 = MF2Model(tiny_mf2_config(build_face_tokenizer(), image_size=16, width=16, layers=1)).eval()
    mf2.save_pretrained(tmp_path / "path" / "to" / "mf2")  # where the card's snippet loads the base from
    dfn = DFNModel(DFNConfig(au_names=["AU4", "AU12"], emotion_names=["neutral", "happy"], bottleneck_size=4), mf2)
    torch.nn.init.normal_(dfn.global_side.blocks[0].up.weight)  # a non-trivial side network
    dfn.save_pretrained(tmp_path / "dfn")
    pixel_values = make_synthetic_faces(4, image_size=16, seed=1).pixel_values()
    namespace = run_card_snippet(str(tmp_path / "dfn"), monkeypatch, pixel_values=pixel_values)
    with torch.no_grad():
        expected = dfn.eval()(pixel_values=pixel_values)
    torch.testing.assert_close(namespace["out"].au_logits, expected.au_logits)
    assert namespace["emotion"].shape == (4,) and namespace["aus_present"].shape == (4, 2)
