"""DFN, the decoupled side network over a frozen MF^2: frozen weights, caching, save/load, bad input."""

import json

import pytest
import torch
from test_mf2 import tiny_config

from hfgen.adapters.dfn import DFNConfig, DFNModel
from hfgen.data.faces import build_face_tokenizer, make_synthetic_faces
from hfgen.models.mf2 import MF2Model


@pytest.fixture(scope="module")
def mf2():
    torch.manual_seed(0)
    return MF2Model(tiny_config(build_face_tokenizer()))


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(16, image_size=16, seed=5)


def labels(faces):
    return torch.from_numpy(faces.au_labels), torch.from_numpy(faces.emotions).long()


def test_frozen_mf2_weights_are_bitwise_unchanged_by_dfn_training(mf2, faces):
    before = {k: v.clone() for k, v in mf2.state_dict().items()}
    dfn = DFNModel(DFNConfig(layers="all"), mf2).train()
    opt = torch.optim.AdamW([p for p in dfn.parameters() if p.requires_grad], lr=1e-2)
    y_au, y_emo = labels(faces)
    for _ in range(3):  # on raw images: the frozen MF^2 runs inside every step
        out = dfn(pixel_values=faces.pixel_values(), au_labels=y_au, emotion_labels=y_emo)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert all(p.grad is None and not p.requires_grad for p in mf2.parameters())
    assert all(torch.equal(before[k], v) for k, v in mf2.state_dict().items())
    assert not mf2.training  # the backbone stays in eval mode (no dropout) while DFN trains
    trainable, total = dfn.get_nb_trainable_parameters()
    assert 0 < trainable < total - sum(p.numel() for p in mf2.parameters()) + 1


def test_cached_and_uncached_dfn_agree_in_eval_mode(mf2, faces, tmp_path):
    dfn = DFNModel(DFNConfig(au_names=["AU1", "AU12", "AU26"], layers="every:1"), mf2).eval()
    px = faces.pixel_values()
    states = dfn.cache_states(px, batch_size=5, path=tmp_path / "cache.safetensors")
    assert states["global_states"].shape == (16, 3, 16) and states["au_states"].shape == (16, 3, 3, 16)
    with torch.no_grad():
        uncached = dfn(pixel_values=px)
        cached = dfn(**dfn.load_cached_states(tmp_path / "cache.safetensors"))
    assert torch.allclose(uncached.au_logits, cached.au_logits, atol=1e-6)
    assert torch.allclose(uncached.emotion_logits, cached.emotion_logits, atol=1e-6)


def test_a_cache_from_another_mf2_is_refused(mf2, faces, tmp_path):
    dfn = DFNModel(DFNConfig(), mf2)
    dfn.cache_states(faces.pixel_values()[:4], path=tmp_path / "c.safetensors")
    torch.manual_seed(1)
    other = DFNModel(DFNConfig(), MF2Model(tiny_config(build_face_tokenizer())))
    with pytest.raises(ValueError, match="fingerprint"):
        other.load_cached_states(tmp_path / "c.safetensors")


def test_adapter_save_load_round_trip_in_peft_format(mf2, faces, tmp_path):
    import hfgen

    dfn = DFNModel(DFNConfig(au_names=["AU4", "AU12"], emotion_names=["neutral", "happy", "sad"],
                             bottleneck_size=4), mf2)
    torch.nn.init.normal_(dfn.global_side.blocks[0].up.weight)  # make the side network non-trivial
    dfn.save_pretrained(tmp_path / "dfn")
    cfg = json.loads((tmp_path / "dfn" / "adapter_config.json").read_text())
    assert cfg["hfgen_adapter_type"] == "DFNModel" and cfg["au_names"] == ["AU4", "AU12"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "dfn" / "adapter_model.safetensors"), "pt") as f:
        assert not any(k.startswith("base_model.") for k in f.keys())
    assert (tmp_path / "dfn" / "README.md").is_file()
    px = faces.pixel_values()
    with torch.no_grad():
        want = dfn.eval()(pixel_values=px)
        loaded = DFNModel.from_pretrained(tmp_path / "dfn", base_model=mf2)
        got = loaded(pixel_values=px)
        assert torch.equal(want.au_logits, got.au_logits) and torch.equal(want.emotion_logits, got.emotion_logits)
        states = dfn.cache_states(px)
        base_free = hfgen.load(tmp_path / "dfn")  # dispatches on hfgen_adapter_type; runs on cached states
        assert isinstance(base_free, DFNModel) and base_free.base_model is None
        assert torch.allclose(base_free(**states).au_logits, want.au_logits, atol=1e-6)


def test_peft_own_loaders_refuse_a_dfn_folder_with_a_message_naming_hfgen(mf2, tmp_path):
    """PEFT-style, not PEFT format (as the other side adapters): PEFT's own loaders cannot build a DFN and
    must say so, naming hfgen and the call that loads it. Broken once on purpose: writing the bare
    ``peft_type = "DFN"`` again (the old behaviour) fails the first assertion, and both calls
    raise a bare ``KeyError: 'DFN'`` (checked by hand with PEFT 0.21.2)."""
    from peft import PeftConfig, PeftModel

    import hfgen

    DFNModel(DFNConfig(bottleneck_size=4), mf2).save_pretrained(tmp_path / "dfn", model_card=False)
    saved = json.loads((tmp_path / "dfn" / "adapter_config.json").read_text())
    assert saved["peft_type"].startswith("HFGEN_DFN: an hfgen side adapter")
    calls = {"PeftConfig.from_pretrained": lambda: PeftConfig.from_pretrained(str(tmp_path / "dfn")),
             "PeftModel.from_pretrained": lambda: PeftModel.from_pretrained(mf2, str(tmp_path / "dfn"))}
    for name, call in calls.items():
        with pytest.raises(KeyError) as err:
            call()
        assert "an hfgen side adapter, not a PEFT method" in str(err.value), (name, err.value)
        assert "hfgen.adapters.DFNModel.from_pretrained(path, base_model)" in str(err.value), (name, err.value)
    assert isinstance(hfgen.load(tmp_path / "dfn", base_model=mf2), DFNModel)  # what the message says works


def test_adapter_refuses_another_base_model(mf2, tmp_path):
    DFNModel(DFNConfig(), mf2).save_pretrained(tmp_path / "dfn", model_card=False)
    torch.manual_seed(2)
    with pytest.raises(ValueError, match="fingerprint"):
        DFNModel.from_pretrained(tmp_path / "dfn", base_model=MF2Model(tiny_config(build_face_tokenizer())))


# ---------------------------------------------------------------------------------- bad input


def test_unknown_au_names_are_refused(mf2):
    with pytest.raises(ValueError, match=r"unknown AUs \['AU99'\]"):
        DFNModel(DFNConfig(au_names=["AU1", "AU99"]), mf2)
    with pytest.raises(ValueError, match="AU names"):
        DFNConfig(au_names=["lip corner puller"])


def test_labels_of_the_wrong_width_are_refused(mf2, faces):
    dfn = DFNModel(DFNConfig(au_names=["AU1", "AU2"]), mf2)
    px = faces.pixel_values()[:4]
    with pytest.raises(ValueError, match=r"au_labels.*\[batch, 2\]"):
        dfn(pixel_values=px, au_labels=torch.zeros(4, 11))
    with pytest.raises(ValueError, match="emotion_labels"):
        dfn(pixel_values=px, emotion_labels=torch.tensor([0, 1, 2, 7]))


def test_images_of_the_wrong_size_are_refused(mf2):
    dfn = DFNModel(DFNConfig(), mf2)
    with pytest.raises(ValueError, match="pixel_values"):
        dfn(pixel_values=torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="global_states"):
        dfn(global_states=torch.zeros(2, 5, 16), au_states=torch.zeros(2, 3, 11, 16))


@pytest.mark.parametrize("kwargs,match", [(dict(layers="every:0"), "layers"), (dict(bottleneck_size=0), "bottleneck"),
                                          (dict(gate_temperature=0), "gate_temperature")])
def test_bad_dfn_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DFNConfig(**kwargs)
