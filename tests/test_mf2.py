"""MF^2 (arXiv 2504.10351): the alignment losses, the model's identities, save/load and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel
from transformers.models.clip.modeling_clip import image_text_contrastive_loss as clip_loss

from hfgen.data.faces import au_prompts, build_face_tokenizer, emotion_prompts, make_synthetic_faces
from hfgen.models.mf2 import (
    MF2Config,
    MF2Model,
    global_contrastive_loss,
    local_contrastive_loss,
    multi_positive_contrastive_loss,
)
from hfgen.trainers.mf2 import MF2DataCollator


def tiny_config(tokenizer, **kwargs):
    vision = dict(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    text = dict(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
    return MF2Config(vision_config=vision, text_config=text, projection_dim=8, **kwargs)


def tiny_clip_config(tokenizer, **kwargs):
    """MF^2 on CLIP's vision and text towers (tiny configs, built offline)."""
    from transformers import CLIPTextConfig, CLIPVisionConfig

    vision = CLIPVisionConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=32)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=64, pad_token_id=0, bos_token_id=2,
                          eos_token_id=3)
    return MF2Config(vision_config=vision, text_config=text, projection_dim=8, **kwargs)


@pytest.fixture(scope="module")
def tokenizer():
    return build_face_tokenizer()


@pytest.fixture(scope="module", params=["vit-bert", "clip"])
def model(request, tokenizer):
    torch.manual_seed(0)
    return MF2Model((tiny_config if request.param == "vit-bert" else tiny_clip_config)(tokenizer)).eval()


@pytest.fixture(scope="module")
def batch(tokenizer):
    faces = make_synthetic_faces(12, image_size=16, seed=3)
    return MF2DataCollator(tokenizer)([faces[i] for i in range(len(faces))])


def orthonormal(n, dim, seed=0):
    q, _ = torch.linalg.qr(torch.randn(dim, n, generator=torch.Generator().manual_seed(seed)))
    return q.T  # [n, dim], orthonormal rows


# ------------------------------------------------------------------------------------ losses


def test_global_loss_is_clip_loss_when_all_descriptions_differ():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(multi_positive_contrastive_loss(logits), clip_loss(logits.T), atol=1e-6)
    distinct_ids = torch.arange(6)
    img, txt = F.normalize(torch.randn(6, 5), dim=-1), F.normalize(torch.randn(6, 5), dim=-1)
    loss, sims = global_contrastive_loss(img, txt, torch.tensor(math.log(10.0)), distinct_ids)
    assert torch.allclose(loss, clip_loss(sims.T), atol=1e-6)


@pytest.mark.parametrize("B,s", [(2, 1.0), (4, 5.0), (8, 14.285)])
def test_perfectly_aligned_embeddings_give_closed_form_loss(B, s):
    e = orthonormal(B, 16)
    loss, _ = global_contrastive_loss(e, e, torch.tensor(math.log(s)))
    # each row: logits s on the diagonal, 0 elsewhere -> -log(e^s / (e^s + B - 1))
    assert loss.item() == pytest.approx(math.log(1 + (B - 1) * math.exp(-s)), rel=1e-5, abs=1e-6)


def test_identical_descriptions_are_positives_with_closed_form_loss():
    # 6 faces in 2 groups of 3; within a group the faces and the (identical) descriptions coincide
    s, groups = 4.0, torch.tensor([0, 0, 0, 1, 1, 1])
    e = orthonormal(2, 8)[groups]
    loss, _ = global_contrastive_loss(e, e, torch.tensor(math.log(s)), groups)
    # target uniform over the n=3 positives, which share logit s; the other 3 have logit 0
    n, B = 3, 6
    assert loss.item() == pytest.approx(math.log(n + (B - n) * math.exp(-s)), rel=1e-5)
    # with B identical pairs the logits are all equal and the loss is log(B) whatever the scale
    same = F.normalize(torch.ones(2, 4), dim=-1)
    assert global_contrastive_loss(same, same, torch.tensor(3.0), torch.tensor([7, 7]))[0].item() == \
        pytest.approx(math.log(2))


def test_local_loss_closed_form_over_face_au_pairs():
    # B=2 faces, K=2 AUs; AU0 has distinct states (texts 0, 1), AU1 the same state for both (text 2)
    s = 3.0
    basis = orthonormal(3, 8)
    ids = torch.tensor([[0, 2], [1, 2]])
    z = basis[ids]  # each local feature equals its description's embedding
    loss = local_contrastive_loss(z, z, torch.tensor(math.log(s)), ids)
    # 4 (face, AU) rows: the AU0 rows have 1 positive among 4 (others 0): log(1 + 3e^-s);
    # the AU1 rows have 2 positives with logit s and 2 zeros: log(2 + 2e^-s)
    expected = (2 * math.log(1 + 3 * math.exp(-s)) + 2 * math.log(2 + 2 * math.exp(-s))) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    per_au = local_contrastive_loss(z, z, torch.tensor(math.log(s)), ids, per_au=True)
    assert per_au.item() == pytest.approx((math.log(1 + math.exp(-s)) + math.log(2)) / 2, rel=1e-5)


def test_logit_scale_is_clamped_at_100_as_in_clip():
    e = orthonormal(3, 4)
    _, logits = global_contrastive_loss(e, e, torch.tensor(10.0))
    assert logits.max().item() == pytest.approx(100.0)


# ------------------------------------------------------------------------------------- model


def test_model_loss_matches_the_losses_on_its_own_embeddings(model, batch):
    with torch.no_grad():
        out = model(**batch, return_loss=True, global_loss_weight=0.7, local_loss_weight=0.3)
        ids = torch.unique(torch.cat([batch["input_ids"], batch["attention_mask"]], 1), dim=0, return_inverse=True)[1]
        glob, _ = global_contrastive_loss(out.image_embeds, out.text_embeds, model.logit_scale, ids)
    assert torch.allclose(out.loss_global, glob)
    assert torch.allclose(out.loss, 0.7 * out.loss_global + 0.3 * out.loss_local)
    # identical descriptions -> identical embeddings, and deduplicated encoding == encoding every row
    with torch.no_grad():
        direct = F.normalize(model.get_text_features(batch["input_ids"], batch["attention_mask"]), dim=-1)
    assert torch.allclose(out.text_embeds, direct, atol=1e-6)


def test_global_only_ablation_skips_the_local_level(model, batch):
    out = model(**batch, return_loss=True, local_loss_weight=0.0)
    assert out.loss_local is None and torch.allclose(out.loss, out.loss_global)


def test_zero_shot_au_logit_is_the_log_odds_of_present_vs_absent(model, tokenizer, batch):
    on, off = au_prompts(model.config.au_names)
    on, off = tokenizer(on, padding=True, return_tensors="pt"), tokenizer(off, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.zero_shot_au_logits(batch["pixel_values"], on.input_ids, off.input_ids, on.attention_mask,
                                           off.attention_mask)
        z = F.normalize(model.get_au_features(batch["pixel_values"]), dim=-1)
        t_on = F.normalize(model.get_text_features(on.input_ids, on.attention_mask), dim=-1)
        t_off = F.normalize(model.get_text_features(off.input_ids, off.attention_mask), dim=-1)
        s = model.local_logit_scale.exp()
        two_way = torch.stack([s * (z * t_on).sum(-1), s * (z * t_off).sum(-1)], -1).softmax(-1)[..., 0]
    assert torch.allclose(torch.sigmoid(logits), two_way, atol=1e-6)


def test_zero_shot_emotion_logits_rank_like_image_text_similarity(model, tokenizer, batch):
    prompts = tokenizer(emotion_prompts(model.config.emotion_names), padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.zero_shot_emotion_logits(batch["pixel_values"], prompts.input_ids, prompts.attention_mask)
        n = len(batch["pixel_values"])
        out = model(batch["pixel_values"], prompts.input_ids[:1].expand(n, -1), prompts.attention_mask[:1].expand(n, -1))
    assert logits.shape == (12, len(model.config.emotion_names))
    assert torch.allclose(logits[:, 0], out.logits_per_image[:, 0], atol=1e-5)


def test_last_layer_multilevel_states_are_the_aligned_features(model, batch):
    L = model.config.vision_config.num_hidden_layers
    with torch.no_grad():
        g, a = model.multilevel_states(batch["pixel_values"], [0, L])
        assert g.shape == (12, 2, 16) and a.shape == (12, 2, len(model.config.au_names), 16)
        assert torch.allclose(model.visual_projection(g[:, -1]), model.get_image_features(batch["pixel_values"]),
                              atol=1e-5)
        assert torch.allclose(model.local_projection(a[:, -1]), model.get_au_features(batch["pixel_values"]),
                              atol=1e-5)


def test_save_load_round_trip_through_auto_classes_and_hfgen_load(model, batch, tmp_path):
    import hfgen

    model.save_pretrained(tmp_path / "mf2")
    assert (tmp_path / "mf2" / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(tmp_path / "mf2")
    assert isinstance(config, MF2Config) and config.au_names == model.config.au_names
    for loaded in (AutoModel.from_pretrained(tmp_path / "mf2"), hfgen.load(tmp_path / "mf2")):
        assert isinstance(loaded, MF2Model)
        with torch.no_grad():
            a = model(**batch, return_loss=True)
            b = loaded.eval()(**batch, return_loss=True)
        assert torch.equal(a.loss, b.loss) and torch.equal(a.au_embeds, b.au_embeds)


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("shape", [(2, 3, 24, 24), (2, 1, 16, 16), (3, 16, 16)])
def test_images_of_wrong_size_or_channels_are_refused(model, shape):
    with pytest.raises(ValueError, match="pixel_values"):
        model.get_image_features(torch.zeros(shape))


def test_wrong_number_of_au_descriptions_is_refused(model, batch):
    with pytest.raises(ValueError, match="one description per AU"):
        model(batch["pixel_values"], au_input_ids=batch["au_input_ids"][:, :3])


def test_missing_descriptions_for_the_loss_are_refused(model, batch):
    with pytest.raises(ValueError, match="au_input_ids"):
        model(batch["pixel_values"], batch["input_ids"], return_loss=True)


@pytest.mark.parametrize("kwargs,match", [
    (dict(au_names=["AU1", "brow"]), "AU names"),
    (dict(au_names=["AU1", "AU1"]), "duplicates"),
    (dict(emotion_names=["happy"]), "emotion_names"),
    (dict(au_attention_heads=3), "au_attention_heads"),
])
def test_bad_config_is_refused(tokenizer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(tokenizer, **kwargs)


# ------------------------------------------------------------------------------- any AutoModel


def test_towers_are_the_auto_models_of_their_configs(tokenizer):
    from transformers import BertModel, CLIPTextModel, CLIPVisionModel, ViTModel

    vit_bert, clip = MF2Model(tiny_config(tokenizer)), MF2Model(tiny_clip_config(tokenizer))
    assert type(vit_bert.vision_model) is ViTModel and type(vit_bert.text_model) is BertModel
    assert vit_bert.vision_model.pooler is None and vit_bert.text_model.pooler is None  # MF^2 pools itself
    assert type(clip.vision_model) is CLIPVisionModel and type(clip.text_model) is CLIPTextModel
    assert clip.config.vision_config.model_type == "clip_vision_model"


def test_clip_image_tokens_get_clips_final_norm(tokenizer, batch):
    """CLIP's vision tower returns un-normalised tokens and normalises only the pooled [CLS] (``post_layernorm``);
    MF^2's global feature must be that normalised [CLS], as ViT's is. Checked by breaking it: returning the
    last hidden state without the norm fails with max abs diff 0.47."""
    torch.manual_seed(0)
    clip = MF2Model(tiny_clip_config(tokenizer)).eval()
    with torch.no_grad():
        tokens, _ = clip.image_tokens(batch["pixel_values"])
        pooled = clip.vision_model(pixel_values=batch["pixel_values"]).pooler_output
    assert torch.allclose(tokens[:, 0], pooled, atol=1e-6)


def test_clip_towers_train_and_save_load_round_trip(tokenizer, batch, tmp_path):
    torch.manual_seed(0)
    clip = MF2Model(tiny_clip_config(tokenizer))
    opt = torch.optim.Adam(clip.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = clip(**batch, return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert clip.vision_model.get_submodule("post_layernorm").weight.grad is not None
    clip.save_pretrained(tmp_path / "mf2-clip")
    loaded = AutoModel.from_pretrained(tmp_path / "mf2-clip").eval()
    clip.eval()
    with torch.no_grad():
        assert torch.equal(clip(**batch, return_loss=True).loss, loaded(**batch, return_loss=True).loss)


def test_dfn_runs_on_a_clip_mf2(tokenizer, batch):
    from hfgen.adapters.dfn import DFNConfig, DFNModel

    torch.manual_seed(0)
    clip = MF2Model(tiny_clip_config(tokenizer))
    dfn = DFNModel(DFNConfig(layers="every:1", bottleneck_size=4), clip)
    states = dfn.cache_states(batch["pixel_values"])
    out = dfn(**states)
    assert out.au_logits.shape == (12, len(clip.config.au_names)) and torch.isfinite(out.emotion_logits).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(vision_config={"model_type": "bert", "vocab_size": 10}), "vision_config.*image_size"),
    (dict(vision_final_norm="no.such.module"), "vision_final_norm"),
])
def test_unusable_towers_are_refused(tokenizer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfg = tiny_config(tokenizer, **{k: v for k, v in kwargs.items() if k != "vision_config"})
        if "vision_config" in kwargs:
            MF2Config(vision_config=kwargs["vision_config"], text_config=cfg.text_config)
        MF2Model(cfg)
