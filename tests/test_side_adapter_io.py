"""Side-adapter files: the backbone fingerprint, the recorded base model, and what PEFT's own loaders do."""

import json
import os

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

from hfgen.adapters import IISANConfig, IISANModel
from hfgen.adapters.side_adapter import encoder_fingerprint


def tiny_bert(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
               max_position_embeddings=16)
    return BertModel(BertConfig(**{**cfg, **kw}))


@pytest.fixture()
def saved_backbone(tmp_path):
    path = tmp_path / "bert"
    tiny_bert().save_pretrained(path)
    return path


def text_inputs(n=5):
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(4, 64, (n, 6), generator=g), "attention_mask": torch.ones(n, 6, dtype=torch.long)}


def test_a_bf16_copy_of_the_same_backbone_is_accepted_and_a_different_backbone_refused(saved_backbone, tmp_path):
    """Default fingerprint = config (without dtype) + parameter names + shapes. Checked: hashing the weight
    bytes (``strict_fingerprint=True``, the old default) refuses the bf16 copy: see the next test."""
    fp32 = AutoModel.from_pretrained(saved_backbone, dtype=torch.float32)
    adapter = IISANModel(IISANConfig(modalities=["text"], layers="all"), {"text": fp32})
    adapter.save_pretrained(tmp_path / "adapter")
    bf16 = AutoModel.from_pretrained(saved_backbone, dtype=torch.bfloat16)
    assert next(bf16.parameters()).dtype == torch.bfloat16
    assert encoder_fingerprint(bf16) == encoder_fingerprint(fp32)
    loaded = IISANModel.from_pretrained(tmp_path / "adapter", {"text": bf16})  # accepted
    out = loaded(text=text_inputs()).item_embeddings
    ref = IISANModel.from_pretrained(tmp_path / "adapter", {"text": fp32})(text=text_inputs()).item_embeddings
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)  # the same model, up to bf16 rounding
    other = tiny_bert(intermediate_size=48)  # another encoder of the same width and depth
    with pytest.raises(ValueError, match="not the encoder this adapter was built on"):
        IISANModel.from_pretrained(tmp_path / "adapter", {"text": other})


def test_strict_fingerprint_hashes_weights_and_the_default_reads_none(saved_backbone, tmp_path):
    a, b = tiny_bert(seed=0), tiny_bert(seed=1)  # same architecture, other weights
    assert encoder_fingerprint(a) == encoder_fingerprint(b)  # documented limit of the default
    assert encoder_fingerprint(a, strict=True) != encoder_fingerprint(b, strict=True)
    adapter = IISANModel(IISANConfig(modalities=["text"], layers="all", strict_fingerprint=True), {"text": a})
    assert adapter.config.encoder_fingerprints["text"].startswith("weights:")
    adapter.save_pretrained(tmp_path / "strict")
    with pytest.raises(ValueError, match="not the encoder"):
        IISANModel.from_pretrained(tmp_path / "strict", {"text": b})
    with pytest.raises(ValueError, match="not the encoder"):  # strict: a dtype change is refused too
        IISANModel.from_pretrained(tmp_path / "strict", {"text": a.to(torch.bfloat16)})
    with torch.device("meta"):  # no weight data at all: the default fingerprint still works (reads no byte)
        meta = BertModel(a.config)
    assert encoder_fingerprint(meta) == encoder_fingerprint(tiny_bert())


def test_base_model_is_a_real_hub_id_or_path_never_a_class_name(saved_backbone, tmp_path):
    local = AutoModel.from_pretrained(saved_backbone)
    assert str(saved_backbone) in local.config._name_or_path
    adapter = IISANModel(IISANConfig(modalities=["text"], layers="all"), {"text": local})
    assert adapter.config.base_model_name_or_path == os.path.abspath(saved_backbone)  # no Hub id: the folder
    assert AutoModel.from_pretrained(adapter.config.base_model_name_or_path).config.hidden_size == local.config.hidden_size
    built = IISANModel(IISANConfig(modalities=["text"], layers="all"), {"text": tiny_bert()})
    assert built.config.base_model_name_or_path == ""  # built from a config: nothing to load it from
    named = IISANModel(IISANConfig(modalities=["text"], layers="all",
                                   backbone_names={"text": "sentence-transformers/all-MiniLM-L6-v2"}), {"text": local})
    named.save_pretrained(tmp_path / "named")
    saved = json.loads((tmp_path / "named" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert isinstance(saved["base_model_name_or_path"], str) and str(tmp_path) not in json.dumps(saved)
    card = (tmp_path / "named" / "README.md").read_text()
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card and str(tmp_path) not in card
    hub = tiny_bert()
    hub.config._name_or_path = "google-bert/bert-base-uncased"  # as after from_pretrained("<repo id>")
    assert IISANModel(IISANConfig(modalities=["text"], layers="all"), {"text": hub}).config.base_model_name_or_path \
        == "google-bert/bert-base-uncased"


def test_peft_own_loaders_refuse_the_folder_with_a_message_naming_hfgen(saved_backbone, tmp_path):
    """PEFT-style, not PEFT format: PEFT 0.21's loaders cannot load a side network. Each of PEFT's (and
    transformers') own client calls raises, and the error names hfgen and the call to use instead."""
    import peft
    from peft import AutoPeftModel, PeftConfig, PeftModel

    import hfgen

    backbone = AutoModel.from_pretrained(saved_backbone)
    adapter = IISANModel(IISANConfig(modalities=["text"], layers="all",
                                     backbone_names={"text": "google-bert/bert-base-uncased"}), {"text": backbone})
    adapter.save_pretrained(tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert saved["peft_type"].startswith("HFGEN_IISAN:") and saved["base_model_name_or_path"] == "google-bert/bert-base-uncased"
    calls = {
        "PeftConfig.from_pretrained": lambda: PeftConfig.from_pretrained(str(tmp_path / "a")),
        "PeftModel.from_pretrained": lambda: PeftModel.from_pretrained(AutoModel.from_pretrained(saved_backbone),
                                                                       str(tmp_path / "a")),
        "AutoPeftModel.from_pretrained": lambda: AutoPeftModel.from_pretrained(str(tmp_path / "a")),
        "PreTrainedModel.load_adapter": lambda: AutoModel.from_pretrained(saved_backbone).load_adapter(str(tmp_path / "a")),
    }
    for name, call in calls.items():
        with pytest.raises(KeyError) as err:
            call()
        assert "an hfgen side adapter, not a PEFT method" in str(err.value), (name, peft.__version__, err.value)
        assert "IISANModel.from_pretrained" in str(err.value), name
    # what does work: the files as data, and hfgen's loaders
    loaded = hfgen.load(str(tmp_path / "a"), backbones={"text": backbone})
    assert isinstance(loaded, IISANModel)
    torch.testing.assert_close(loaded(text=text_inputs()).item_embeddings,
                               adapter.eval()(text=text_inputs()).item_embeddings)
