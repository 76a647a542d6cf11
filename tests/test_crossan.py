"""CROSSAN (reconstruction): N modality side adapters with MoMEF fusion, on tiny encoders built from configs."""

import copy

import pytest
import torch
from transformers import AutoModel

from hfgen.adapters import CROSSANConfig, CROSSANModel
from hfgen.data.recommendation import make_synthetic_recommendation, synthetic_backbone_configs
from hfgen.models import SASRecConfig, SASRecModel
from hfgen.trainers import SequentialRecConfig, SequentialRecTrainer

MODALITIES = ("text", "image", "audio", "video")


@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    return {m: AutoModel.from_config(c) for m, c in synthetic_backbone_configs(MODALITIES, 3).items()}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_recommendation(num_users=60, modalities=MODALITIES, factor_values=3, items_per_type=2,
                                         missing={"audio": 0.3}, seed=0)


def crossan(encoders, data, modalities=MODALITIES, **kw):
    cfg = CROSSANConfig(modalities=list(modalities), pooling="mean", **kw)
    model = CROSSANModel(cfg, {m: encoders[m] for m in modalities})
    model.set_item_inputs({m: data.item_inputs[m] for m in modalities},
                          {m: a for m, a in data.item_available.items() if m in modalities})
    return model


def test_adding_a_modality_adds_exactly_its_adapters_parameters(encoders, data):
    r, e, c = 64, 64, 32
    three = crossan(encoders, data, MODALITIES[:3], cross_dim=c)
    four = crossan(encoders, data, MODALITIES, cross_dim=c)
    d, K = encoders["video"].config.hidden_size, 4  # video: 32-d, group:3 -> 4 kept states
    sanb = (d * r + r) + (r * d + d)
    own = K * sanb + K  # its intra-modal SAN with one gate per block
    own += (d * e + e) + (e * e + e)  # its expert
    own += e + 1  # its router
    own += K  # its gate logits in the cross-modal SAN
    own += K * (d * c + c) if d != c else 0  # its DTLs (none here: video is already 32-d)
    assert four.get_nb_trainable_parameters()[0] - three.get_nb_trainable_parameters()[0] == own
    pairwise = crossan(encoders, data, MODALITIES, cross_dim=c, cross_modal="pairwise", fusion="concat")
    assert len(pairwise.cross) == 6 and len(four.cross) == 1  # M(M-1)/2 inter SANs vs one
    assert four.get_nb_trainable_parameters()[0] < pairwise.get_nb_trainable_parameters()[0]


def test_missing_modality_gets_zero_router_weight_and_does_not_leak(encoders, data):
    model = crossan(encoders, data).eval()
    ids = torch.arange(1, data.num_items)
    out = model(item_ids=ids)
    lacks = ~data.item_available["audio"][ids]
    assert lacks.any() and torch.isfinite(out.item_embeddings).all()
    w = out.router_weights
    audio = model.expert_names.index("audio")
    assert torch.equal(w[lacks, audio], torch.zeros(int(lacks.sum())))
    torch.testing.assert_close(w.sum(-1), torch.ones(len(ids)))
    # whatever the absent audio's states hold, the embedding is the same
    states, available = model.layer_states(item_ids=ids)
    noisy = dict(states, audio=states["audio"] + 100 * torch.randn_like(states["audio"]))
    keep = model.embed(states, available).item_embeddings[lacks]
    torch.testing.assert_close(model.embed(noisy, available).item_embeddings[lacks], keep)
    # a modality absent from the whole batch is missing for every item
    partial = model(text={k: v[:3] for k, v in data.item_inputs["text"].items()},
                    image={k: v[:3] for k, v in data.item_inputs["image"].items()})
    assert torch.isfinite(partial.item_embeddings).all()
    assert (partial.router_weights[:, [model.expert_names.index(m) for m in ("audio", "video")]] == 0).all()


def test_cached_and_uncached_agree_in_eval_mode(encoders, data):
    live = crossan(encoders, data).eval()
    cached = copy.deepcopy(live)
    cached.cache_hidden_states(progress_bar=False)
    ids = torch.arange(1, data.num_items)
    a, b = live(item_ids=ids), cached(item_ids=ids)
    torch.testing.assert_close(a.item_embeddings, b.item_embeddings, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.router_weights, b.router_weights, rtol=0, atol=1e-6)


def test_save_load_round_trip_reproduces_scores_and_router_exactly(encoders, data, tmp_path):
    import hfgen

    model = crossan(encoders, data).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    ids = torch.arange(1, 30)
    want = model(item_ids=ids)
    model.save_pretrained(tmp_path / "crossan")
    loaded = hfgen.load(tmp_path / "crossan", backbones=dict(encoders))
    assert isinstance(loaded, CROSSANModel)
    loaded.set_item_inputs(data.item_inputs, data.item_available)
    got = loaded(item_ids=ids)
    assert torch.equal(got.item_embeddings, want.item_embeddings)
    assert torch.equal(got.router_weights, want.router_weights)
    assert "hfgen-crossan" in (tmp_path / "crossan" / "README.md").read_text()


def test_router_learns_to_down_weight_a_zeroed_modality(encoders, tmp_path):
    mods = ("text", "image", "audio")
    data = make_synthetic_recommendation(num_users=150, modalities=mods, factor_values=3, items_per_type=2,
                                         zero_modalities=("audio",), seed=1)
    model = crossan(encoders, data, mods)
    model.cache_hidden_states(progress_bar=False)
    audio = model.expert_names.index("audio")
    ids = torch.arange(1, data.num_items)
    with torch.no_grad():
        before = model.eval()(item_ids=ids).router_weights[:, audio].mean().item()
    splits = data.leave_one_out(10)
    torch.manual_seed(0)
    args = SequentialRecConfig(output_dir=str(tmp_path), num_train_epochs=25, per_device_train_batch_size=32,
                               learning_rate=1e-3, adapter_learning_rate=1e-3, save_strategy="no",
                               logging_strategy="no", disable_tqdm=True)
    SequentialRecTrainer(SASRecModel(SASRecConfig()), model, args, splits["train"]).train()
    with torch.no_grad():
        after = model.eval()(item_ids=ids).router_weights[:, audio].mean().item()
    assert after < before and after < 1 / len(model.expert_names), (before, after)


def test_bad_inputs_give_clear_errors(encoders, data):
    model = crossan(encoders, data)
    with pytest.raises(ValueError, match="does not know"):
        model(text=data.item_inputs["text"], smell={"x": torch.zeros(3)})
    with pytest.raises(ValueError, match="Batch sizes differ"):
        model(text={k: v[:3] for k, v in data.item_inputs["text"].items()},
              audio={k: v[:4] for k, v in data.item_inputs["audio"].items()})
    with pytest.raises(ValueError, match="empty"):
        model()
    with pytest.raises(ValueError, match="modalities"):
        CROSSANConfig(modalities=[])
    with pytest.raises(ValueError, match="does not know"):
        CROSSANModel(CROSSANConfig(modalities=["text"]), {"text": encoders["text"], "audio": encoders["audio"]})
    with pytest.raises(ValueError, match="fusion"):
        CROSSANConfig(fusion="mean")
    no_items = torch.zeros(2, len(MODALITIES), dtype=torch.bool)
    with pytest.raises(ValueError, match="none of the modalities"):
        model(item_ids=torch.tensor([1, 2]), available=no_items)
