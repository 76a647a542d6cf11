"""IISAN / IISAN-Versa: the paper's claims as exact identities on tiny encoders built from configs."""

import copy
import json
import warnings

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel, ViTConfig, ViTModel

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, IISANConfig, IISANModel
from hfgen.adapters.side_adapter import SANB, GatedSideNetwork, MixtureSideNetwork, select_layers
from hfgen.data.recommendation import make_synthetic_recommendation, synthetic_backbone_configs
from hfgen.models import SASRecConfig, SASRecModel
from hfgen.trainers import SequentialRecConfig, SequentialRecTrainer
from hfgen.trainers.sequential_rec import SequentialRecCollator, SequentialRecommender, in_batch_softmax_loss


@pytest.fixture(scope="module")
def data():
    return make_synthetic_recommendation(num_users=120, seed=0)


def backbones(seed=0):
    torch.manual_seed(seed)
    return {m: AutoModel.from_config(c) for m, c in synthetic_backbone_configs().items()}


def adapter(data, layers="group:3", seed=0, pooling="mean", **kw):
    # random tiny encoders: their CLS vector barely depends on the input, so read the token mean
    model = IISANModel(IISANConfig(layers=layers, pooling=pooling, **kw), backbones(seed))
    model.set_item_inputs(data.item_inputs)
    return model


def batch(data, n=8):
    return SequentialRecCollator()([data.leave_one_out(10)["train"][i] for i in range(n)])


# ------------------------------------------------------------------------------- layer selection


@pytest.mark.parametrize("num_layers, kept", [
    (12, [1, 3, 5, 7, 9, 11]), (24, [3, 7, 11, 15, 19, 23]), (32, [1, 7, 13, 19, 25, 31]),
    (28, [2, 7, 12, 17, 22, 27]), (80, [4, 19, 34, 49, 64, 79]), (48, [2, 11, 20, 29, 38, 47]),
])
def test_group_layer_dropping_reproduces_the_official_versa_configs(num_layers, kept):
    # official lists are 0-based layer ids; hidden_states index = id + 1, plus the embedding output 0
    assert select_layers(num_layers, "group:6") == [0] + [i + 1 for i in kept]


def test_iisan_layerdrop_keeps_embedding_output_and_every_second_layer():
    assert select_layers(12, "every:2") == [0, 2, 4, 6, 8, 10, 12]  # the official 7 side blocks
    assert select_layers(6, "last") == [6] and select_layers(3, "all") == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="group:8"):
        select_layers(6, "group:8")
    with pytest.raises(ValueError, match="layers"):
        IISANConfig(layers="every-other")


# ----------------------------------------------------------------------------------- init & blocks


def test_gates_start_at_one_half_and_chain_is_a_geometric_average_when_sanbs_are_identity():
    torch.manual_seed(0)
    san = GatedSideNetwork(dim=8, bottleneck=4, num_blocks=5)
    assert torch.equal(san.gates, torch.full((5,), 0.5))
    for block in san.blocks:
        torch.nn.init.zeros_(block.up.weight)  # SANB(x) = x exactly
    h = torch.randn(3, 5, 8)
    # s^k = 0.5 h_k + 0.5 s^{k-1}, s^0 = 0  =>  s^K = sum_k 0.5^{K-k+1} h_k
    expected = sum(0.5 ** (5 - k) * h[:, k] for k in range(5))
    torch.testing.assert_close(san(h), expected, rtol=0, atol=1e-6)


def test_sanb_starts_near_identity():
    torch.manual_seed(0)
    x = torch.randn(16, 64)
    assert (SANB(64, 64)(x) - x).norm() / x.norm() < 0.01


def test_inter_modal_san_is_iisan_sigmoid_gate_for_two_modalities():
    torch.manual_seed(0)
    inter = MixtureSideNetwork({"text": 8, "image": 8}, 8, 4, 3, temperature=0.1, reference_modality=True)
    with torch.no_grad():
        inter.gate_logits["image"].copy_(torch.tensor([0.3, -0.2, 0.05]))
    h_t, h_i = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    u = torch.zeros(2, 8)
    for k in range(3):  # u^k = SANB(u^{k-1} + a h_img + (1 - a) h_text), a = sigmoid(w / 0.1)
        a = torch.sigmoid(inter.gate_logits["image"][k] / 0.1)
        u = inter.blocks[k](u + a * h_i[:, k] + (1 - a) * h_t[:, k])
    torch.testing.assert_close(inter({"text": h_t, "image": h_i}), u)
    assert sum(p.numel() for p in inter.gate_logits.parameters()) == 3  # one scalar gate per block


# ------------------------------------------------------------------------------ cached == uncached


def test_cached_and_uncached_give_identical_embeddings_loss_and_gradients(data):
    live = adapter(data).eval()
    cached = copy.deepcopy(live)
    cached.cache_hidden_states(progress_bar=False)
    torch.manual_seed(1)
    rec = SASRecModel(SASRecConfig()).eval()
    b = batch(data)
    grads = []
    for enc in (live, cached):
        model = SequentialRecommender(copy.deepcopy(rec), enc).eval()
        users, cand, inv, emb = model(b["item_ids"])
        loss = in_batch_softmax_loss(users, b["item_ids"], cand, inv, emb)
        loss.backward()
        grads.append((emb.detach(), loss.detach(), [p.grad.clone() for p in enc.parameters() if p.requires_grad]))
    (e1, l1, g1), (e2, l2, g2) = grads
    torch.testing.assert_close(e1, e2, rtol=0, atol=1e-5)
    torch.testing.assert_close(l1, l2, rtol=0, atol=1e-6)
    for a, b_ in zip(g1, g2):
        torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-6)


def test_cache_built_with_another_encoder_is_refused(data, tmp_path):
    a = adapter(data, seed=0)
    a.cache_hidden_states(progress_bar=False, path=tmp_path / "cache.safetensors")
    b = adapter(data, seed=1)  # other backbone weights
    with pytest.raises(ValueError, match="another 'text' encoder|another 'image' encoder"):
        b.load_hidden_state_cache(tmp_path / "cache.safetensors")
    c = adapter(data, seed=0, layers="every:2")  # same encoders, other kept layers
    with pytest.raises(ValueError, match="keeps layers"):
        c.load_hidden_state_cache(tmp_path / "cache.safetensors")
    same = adapter(data, seed=0)
    same.load_hidden_state_cache(tmp_path / "cache.safetensors")
    assert torch.equal(same.cache["text"], a.cache["text"])


# ----------------------------------------------------------------------------- frozen backbones


def test_backbones_get_no_gradients_and_stay_bitwise_identical_after_training(data, tmp_path):
    enc = adapter(data)
    before = {m: {k: v.clone() for k, v in bb.state_dict().items()} for m, bb in enc.backbones.items()}
    side_before = [p.detach().clone() for p in enc.intra.parameters()]
    splits = data.leave_one_out(10)
    args = SequentialRecConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=16,
                               learning_rate=1e-2, adapter_learning_rate=1e-2, save_strategy="no", disable_tqdm=True)
    trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), enc, args, splits["train"])
    trainer.train()
    for m, bb in enc.backbones.items():
        assert all(p.grad is None and not p.requires_grad for p in bb.parameters())
        assert all(torch.equal(v, before[m][k]) for k, v in bb.state_dict().items())
        assert not bb.training
    assert any(not torch.equal(p, q) for p, q in zip(enc.intra.parameters(), side_before))


# ------------------------------------------------------------------------------- asymmetric Versa


def test_versa_asymmetric_minilm_width_text_and_deeper_narrower_vit_align_and_train():
    torch.manual_seed(0)
    text = BertModel(BertConfig(vocab_size=100, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                intermediate_size=64, max_position_embeddings=16))  # MiniLM-L6 width and depth
    image = ViTModel(ViTConfig(image_size=16, patch_size=8, hidden_size=96, num_hidden_layers=12,
                               num_attention_heads=4, intermediate_size=64))
    cfg = IISANConfig(layers={"text": "all", "image": "group:3"}, head="versa")
    enc = IISANModel(cfg, {"text": text, "image": image})
    assert enc.layer_indices == {"text": [0, 1, 2, 3, 4, 5, 6], "image": [0, 2, 7, 12]}
    # DTL: one Linear(384 -> 96) per inter block, only on the wider encoder; the inter SAN is top-aligned (K = 4)
    assert set(enc.inter.dtl) == {"text"} and len(enc.inter.dtl["text"]) == 4
    assert enc.inter.dtl["text"][0].weight.shape == (96, 384) and enc.inter.blocks[0].down.in_features == 96
    assert len(enc.intra["text"].blocks) == 7 and len(enc.intra["image"].blocks) == 4
    n = 6
    inputs = {"text": {"input_ids": torch.randint(0, 100, (n, 8)), "attention_mask": torch.ones(n, 8, dtype=torch.long)},
              "image": {"pixel_values": torch.randn(n, 3, 16, 16)}}
    states, _ = enc.layer_states(**inputs)
    assert states["text"].shape == (n, 7, 384) and states["image"].shape == (n, 4, 96)
    # top alignment: the text's lower 3 states reach only the intra-modal SAN, never the inter-modal one
    u = enc.inter(states)
    bumped = dict(states, text=states["text"].clone())
    bumped["text"][:, :3] += 1.0
    torch.testing.assert_close(enc.inter(bumped), u)
    # it trains: one step of the in-batch loss moves the side network
    enc.set_item_inputs({m: {k: v for k, v in d.items()} for m, d in inputs.items()})
    model = SequentialRecommender(SASRecModel(SASRecConfig(max_seq_len=5)), enc)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 5, 4, 3, 2]])
    before = enc.inter.blocks[0].down.weight.detach().clone()
    loss = in_batch_softmax_loss(*model(ids)[:1], ids, *model(ids)[1:])
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, enc.inter.blocks[0].down.weight)


# ------------------------------------------------------------------------------- parameter count


def test_trainable_parameters_match_a_hand_count(data):
    enc = adapter(data, layers="group:3")  # text 48-d, 4 blocks; image 32-d, 4 blocks; inter at 32-d
    r, e = 64, 64
    sanb = lambda d: (d * r + r) + (r * d + d)  # noqa: E731
    head = lambda d: (d * d + d) + (d * e + e)  # noqa: E731
    K = 4
    hand = (K * sanb(48) + K) + (K * sanb(32) + K)  # intra SANs with one gate per block
    hand += K * (48 * 32 + 32) + K * sanb(32) + K  # inter: DTL 48->32 per block, SANBs, gates
    hand += head(48) + head(32) + head(32) + (3 * e * e + e)  # heads and com_dense
    assert enc.get_nb_trainable_parameters()[0] == hand
    rec = SASRecModel(SASRecConfig())
    d, L = 64, 10
    block = 3 * d * d + d * d + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * (2 * d)
    assert rec.num_parameters() == L * d + 2 * d + 2 * block


# ---------------------------------------------------------------------------------- save / load


def test_adapter_save_load_round_trip_reproduces_scores_exactly(data, tmp_path):
    import hfgen

    enc = adapter(data).eval()
    with torch.no_grad():
        for p in enc.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))  # not the init
    ids = torch.arange(1, 20)
    want = enc(item_ids=ids).item_embeddings
    enc.save_pretrained(tmp_path / "adapter")
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "hfgen_checksums.json"]
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["hfgen_adapter_type"] == "IISANModel" and cfg["peft_type"].startswith("HFGEN_IISAN: an hfgen side adapter")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert not any(k.startswith("backbones.") for k in f.keys())
    loaded = IISANModel.from_pretrained(tmp_path / "adapter", backbones=backbones(0))
    loaded.set_item_inputs(data.item_inputs)
    assert torch.equal(loaded(item_ids=ids).item_embeddings, want)
    # hfgen.load dispatches on hfgen_adapter_type; without backbones the adapter reads cached states
    cacheless = hfgen.load(tmp_path / "adapter")
    assert isinstance(cacheless, IISANModel) and len(cacheless.backbones) == 0
    states, _ = enc.layer_states(item_ids=ids)
    assert torch.equal(cacheless(hidden_states=states).item_embeddings, want)
    # same architecture, other weights: the default fingerprint (config, names, shapes) cannot tell them apart,
    # the strict one (every weight byte) can
    IISANModel.from_pretrained(tmp_path / "adapter", backbones=backbones(1))
    strict = IISANModel(IISANConfig(layers="group:3", pooling="mean", strict_fingerprint=True), backbones(0))
    strict.save_pretrained(tmp_path / "strict")
    with pytest.raises(ValueError, match="not the encoder"):
        IISANModel.from_pretrained(tmp_path / "strict", backbones=backbones(1))


def test_trainer_save_writes_recommender_adapter_and_card(data, tmp_path):
    enc = adapter(data)
    splits = data.leave_one_out(10)
    args = SequentialRecConfig(output_dir=str(tmp_path / "run"), max_steps=1, save_strategy="no", disable_tqdm=True)
    trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), enc, args, splits["train"])
    trainer.save_model()
    out = tmp_path / "run"
    assert (out / "item_encoder" / "adapter_model.safetensors").is_file()
    assert "hfgen-iisan" in (out / "README.md").read_text() and "IISAN" in (out / "README.md").read_text()
    rec = AutoModel.from_pretrained(out)
    assert isinstance(rec, SASRecModel)


# -------------------------------------------------------------------------------- quality & errors


def test_iisan_trained_on_synthetic_data_beats_popularity_and_random(data, tmp_path):
    splits = data.leave_one_out(10)
    enc = adapter(data)
    enc.cache_hidden_states(progress_bar=False)
    torch.manual_seed(0)
    args = SequentialRecConfig(output_dir=str(tmp_path), num_train_epochs=50, per_device_train_batch_size=32,
                               learning_rate=1e-3, adapter_learning_rate=1e-3, save_strategy="no", disable_tqdm=True,
                               logging_strategy="no")
    trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), enc, args, splits["train"],
                                   item_popularity=data.popularity())
    trainer.train()
    hr = trainer.evaluate(splits["test"])["eval_hr@10"]
    pop = data.popularity().clone()
    pop[0] = -1
    test = splits["test"]
    from hfgen.metrics.ranking import ranking_metrics

    hist = SequentialRecCollator()(list(test))
    pop_hr = ranking_metrics(pop.expand(len(test), -1), hist["labels"], hist["history"])["hr@10"]
    random_hr = 10 / (data.num_items - 1)
    assert hr > max(pop_hr, random_hr) + 0.05, (hr, pop_hr, random_hr)


def test_bad_inputs_give_clear_errors(data):
    enc = adapter(data)
    with pytest.raises(IndexError, match="not in the item table"):
        enc(item_ids=torch.tensor([data.num_items]))
    with pytest.raises(ValueError, match="does not know"):
        enc(text=data.item_inputs["text"], audio={"input_values": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="lacks modalities"):
        enc(text={k: v[:3] for k, v in data.item_inputs["text"].items()})
    with pytest.raises(ValueError, match="Batch sizes differ"):
        enc(text={k: v[:3] for k, v in data.item_inputs["text"].items()},
            image={k: v[:2] for k, v in data.item_inputs["image"].items()})
    with pytest.raises(ValueError, match="empty"):
        enc()
    with pytest.raises(ValueError, match="two encoders"):
        IISANConfig(modalities=["text", "image", "audio"])
    with pytest.raises(ValueError, match="backbone"):
        IISANModel(IISANConfig())  # no backbones and no recorded widths
    with pytest.raises(ValueError, match="tuning"):
        BackboneItemEncoderConfig(tuning="prefix")
    with pytest.raises(ValueError, match="adapter_size"):
        BackboneItemEncoderConfig(tuning="adapter", adapter_size=0)
    model = SequentialRecommender(SASRecModel(SASRecConfig()), enc)
    with pytest.raises(ValueError, match="no \\(history item, next item\\) pair"):
        ids = torch.zeros(2, 11, dtype=torch.long)
        ids[:, -1] = 3
        in_batch_softmax_loss(*model(ids)[:1], ids, *model(ids)[1:])


def test_empty_history_in_evaluation_is_refused(data, tmp_path):
    from datasets import Dataset

    enc = adapter(data)
    enc.cache_hidden_states(progress_bar=False)
    args = SequentialRecConfig(output_dir=str(tmp_path), disable_tqdm=True)
    trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), enc, args)
    bad = Dataset.from_list([{"item_ids": [0] * 10, "labels": 3, "history": []}])
    with pytest.raises(ValueError, match="empty history"):
        trainer.evaluate(bad)


def test_trainer_evaluation_counts_a_repeated_target_as_a_miss(data, tmp_path):
    """Evaluation masks every history item whatever the label (official rule): users whose target is a
    history item all miss, even with a model that ranks it first; ``eval_exclude_history=False`` ranks
    all items. Checked: unmasking the label again (old rule) gives HR@10 = 0.5 in the first assertion (random model)."""
    from datasets import Dataset

    enc = adapter(data)
    enc.cache_hidden_states(progress_bar=False)
    rows = [{"item_ids": [0] * 9 + [5], "labels": 5, "history": [5]},
            {"item_ids": [0] * 8 + [7, 9], "labels": 7, "history": [7, 9]}]
    for exclude, want in ((True, 0.0), (False, None)):
        args = SequentialRecConfig(output_dir=str(tmp_path), disable_tqdm=True, eval_exclude_history=exclude,
                                   eval_top_k=[10, data.num_items])
        trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), enc, args)
        m = trainer.evaluate(Dataset.from_list(rows))
        if want is not None:
            assert m["eval_hr@10"] == 0.0 and m[f"eval_hr@{data.num_items}"] == 0.0
            assert (trainer.eval_ranks["eval"] > data.num_items).all()
        else:
            assert m[f"eval_hr@{data.num_items}"] == 1.0  # every item ranked, the label among them


def test_in_batch_loss_equals_an_explicit_loop():
    torch.manual_seed(0)
    ids = torch.tensor([[0, 4, 2, 4], [1, 3, 2, 5]])
    users = torch.randn(2, 3, 6)
    cand, inv = torch.unique(ids, return_inverse=True)
    emb = torch.randn(len(cand), 6)
    logq = torch.randn(6)
    got = in_batch_softmax_loss(users, ids, cand, inv, emb, logq, negatives="distinct")
    losses = []
    for b in range(2):
        for t in range(3):
            if ids[b, t] == 0:
                continue
            logits = []
            for c_i, c in enumerate(cand.tolist()):
                masked = c == 0 or (c in ids[b].tolist() and c != ids[b, t + 1])
                logits.append(-1e4 if masked else float(users[b, t] @ emb[c_i] - logq[c]))
            target = cand.tolist().index(int(ids[b, t + 1]))
            losses.append(-torch.log_softmax(torch.tensor(logits), 0)[target])
    torch.testing.assert_close(got, torch.stack(losses).mean(), rtol=1e-5, atol=1e-5)


def official_loss_inputs():
    """The inputs ``scripts/golden/record_iisan.py`` feeds the official loss: 3 users, 4 history slots + the next
    one, padding (id 0), items 3 and 5 shared across users and 3 repeated within one; one embedding per slot
    (``score_embs``: ``item_embs[inverse]``), the popularity list with entry 0 = 1 (as the official code builds
    it)."""
    torch.manual_seed(0)
    L, d, n_items = 4, 6, 9
    ids = torch.tensor([[0, 0, 3, 5, 3], [1, 3, 2, 7, 5], [0, 4, 8, 2, 6]])
    users = torch.randn(3, L, d)
    cand, inv = torch.unique(ids, return_inverse=True)
    emb = torch.randn(len(cand), d)
    counts = torch.rand(n_items) + 0.1
    pop = torch.cat([torch.ones(1), counts[1:] / counts[1:].sum()])
    return dict(ids=ids, users=users, item_embs=emb, slot_embs=emb[inv.reshape(-1)], pop_prob_list=pop)


def test_slot_loss_equals_the_official_iisan_loss():
    """``negatives="slots"`` (the official recipe) against the official loss's recorded value and gradients
    (GAIR-Lab/IISAN ``Code_Cached/model/model.py`` ``Model.forward``; ``tests/golden/data/iisan/inbatch_loss.*``,
    written by ``scripts/golden/record_iisan.py``): duplicates across users are kept as separate negatives,
    ``- log p`` per slot. Checked: with ``negatives="distinct"`` the difference is 0.10, and dropping the logQ term
    from the library gives 0.16."""
    from tests.golden.recorded import load_recording

    recorded, _ = load_recording("iisan", "inbatch_loss")
    inputs = official_loss_inputs()
    for key in ("ids", "users", "item_embs", "slot_embs", "pop_prob_list"):
        assert torch.equal(inputs[key], recorded[key]), key
    ids, pop = inputs["ids"], inputs["pop_prob_list"]
    cand, inv = torch.unique(ids, return_inverse=True)
    users = inputs["users"].clone().requires_grad_(True)
    emb = inputs["item_embs"].clone().requires_grad_(True)
    got = in_batch_softmax_loss(users, ids, cand, inv, emb, pop.log(), negatives="slots")
    torch.testing.assert_close(got.detach(), recorded["loss"], rtol=1e-6, atol=1e-6)
    grad_users, grad_emb = torch.autograd.grad(got, [users, emb])
    torch.testing.assert_close(grad_users, recorded["grad_users"], rtol=1e-5, atol=1e-6)
    # the official loss sees one embedding per slot: an item's gradient is the sum over its slots
    want_emb = torch.zeros_like(grad_emb).index_add(0, inv.reshape(-1), recorded["grad_slot_embs"])
    torch.testing.assert_close(grad_emb, want_emb, rtol=1e-5, atol=1e-6)
    other = in_batch_softmax_loss(users, ids, cand, inv, emb, pop.log(), negatives="distinct")
    assert (other - recorded["loss"]).abs() > 1e-3  # the distinct-item variant is a different loss here


def test_official_recipe_defaults_and_the_hfgen_recipe():
    c = SequentialRecConfig(output_dir="x")
    assert (c.recipe, c.lr_scheduler_type, c.max_grad_norm, c.in_batch_negatives, c.early_stopping_patience) == \
        ("iisan", "constant", 0.0, "slots", 10)
    c = SequentialRecConfig(output_dir="x", recipe="hfgen")
    assert (c.lr_scheduler_type, c.max_grad_norm, c.in_batch_negatives, c.early_stopping_patience) == \
        ("linear", 1.0, "distinct", 0)
    c = SequentialRecConfig(output_dir="x", lr_scheduler_type="cosine", in_batch_negatives="distinct")
    assert c.lr_scheduler_type == "cosine" and c.in_batch_negatives == "distinct" and c.max_grad_norm == 0.0
    with pytest.raises(ValueError, match="recipe"):
        SequentialRecConfig(output_dir="x", recipe="sasrec")
    with pytest.raises(ValueError, match="in_batch_negatives"):
        SequentialRecConfig(output_dir="x", in_batch_negatives="all")


def test_official_recipe_steps_are_plain_adam_at_constant_lr_without_clipping(tmp_path):
    """Three full-batch steps of the trainer equal three steps of ``torch.optim.Adam`` at the constant lr
    on the unclipped gradient of the slot loss (its norm is > 1, so clipping would show). Max abs weight
    difference: 5.6e-5 (fused vs plain Adam kernels); checked on purpose: ``max_grad_norm=1.0`` gives
    0.15, ``lr_scheduler_type="linear"`` 0.074, ``in_batch_negatives="distinct"`` 0.30, ``recipe="hfgen"`` 0.25."""
    from datasets import Dataset

    seqs = [[1, 2, 3, 4, 5, 2, 6], [3, 4, 5, 6, 7, 8, 1], [2, 9, 8, 7, 1, 3, 4]]
    train = Dataset.from_list([{"item_ids": [0] + s[:-2]} for s in seqs])  # 6 = max_seq_len + 1 items
    cfg = SASRecConfig(num_items=10, max_seq_len=5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    rec = SASRecModel(cfg)
    ref = copy.deepcopy(rec)
    pop = torch.arange(10).float() + 1
    args = SequentialRecConfig(output_dir=str(tmp_path), max_seq_len=5, num_train_epochs=3, learning_rate=0.05,
                               per_device_train_batch_size=3, save_strategy="no", disable_tqdm=True,
                               logging_strategy="no", report_to="none", seed=0)
    trainer = SequentialRecTrainer(rec, None, args, train, item_popularity=pop)
    trainer.train()
    # the same two steps by hand
    model = SequentialRecommender(ref)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    p = pop.clamp_min(1.0)
    ids = torch.tensor(train["item_ids"])
    norms = []
    for _ in range(3):
        users, cand, inv, emb = model(ids)
        loss = in_batch_softmax_loss(users, ids, cand, inv, emb, (p / p.sum()).log(), negatives="slots")
        opt.zero_grad()
        loss.backward()
        norms.append(torch.norm(torch.stack([q.grad.norm() for q in model.parameters() if q.grad is not None])))
        opt.step()
    assert min(norms) > 1.0
    for (n, a), b in zip(trainer.model.recommender.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-4, msg=n)


def test_early_stopping_after_patience_evaluations_without_gain(data, tmp_path):
    """Every target repeats a history item, so validation HR@10 stays 0: the run stops after the first
    evaluation plus ``patience`` without gain, not after 50 epochs."""
    from datasets import Dataset

    enc = adapter(data)
    enc.cache_hidden_states(progress_bar=False)
    splits = data.leave_one_out(10)
    valid = Dataset.from_list([{"item_ids": r["item_ids"], "labels": r["history"][-1], "history": r["history"]}
                               for r in splits["validation"].select(range(16))])
    args = SequentialRecConfig(output_dir=str(tmp_path), num_train_epochs=50, per_device_train_batch_size=64,
                               eval_strategy="epoch", save_strategy="no", early_stopping_patience=3,
                               disable_tqdm=True, logging_strategy="no", report_to="none")
    trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), enc, args, splits["train"].select(range(64)),
                                   {"valid": valid}, item_popularity=data.popularity())
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_valid_hr@10" in h]
    assert len(evals) == 1 + 3 and args.metric_for_best_model == "valid_hr@10"


def test_logq_without_popularity_warns(data, tmp_path):
    enc = adapter(data)
    enc.cache_hidden_states(progress_bar=False)
    args = SequentialRecConfig(output_dir=str(tmp_path), disable_tqdm=True)
    train = data.leave_one_out(10)["train"]
    with pytest.warns(UserWarning, match="item_popularity"):
        SequentialRecTrainer(SASRecModel(SASRecConfig()), args, train, item_encoder=enc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SequentialRecTrainer(SASRecModel(SASRecConfig()), args, train, item_encoder=enc, item_popularity=data.popularity())
        SequentialRecTrainer(SASRecModel(SASRecConfig()), SequentialRecConfig(
            output_dir=str(tmp_path), disable_tqdm=True, logq_correction=False), train, item_encoder=enc)


def test_lora_and_full_baselines_train_only_what_they_should(data):
    frozen_elsewhere = backbones(0)
    for bb in frozen_elsewhere.values():
        bb.requires_grad_(False)  # e.g. shared with an IISAN adapter before
    for tuning in ("frozen", "lora", "full"):
        enc = BackboneItemEncoder(BackboneItemEncoderConfig(tuning=tuning), copy.deepcopy(frozen_elsewhere))
        names = [n for n, p in enc.named_parameters() if p.requires_grad]
        in_backbone = [n for n in names if n.startswith("backbones.")]
        if tuning == "frozen":
            assert not in_backbone
        elif tuning == "lora":
            assert in_backbone and all("lora_" in n for n in in_backbone)
        else:
            assert len(in_backbone) == sum(1 for n, _ in enc.backbones.named_parameters())


def test_adapter_baseline_starts_at_the_frozen_backbone_and_trains_only_bottlenecks(data):
    frozen = backbones(0)
    enc = BackboneItemEncoder(BackboneItemEncoderConfig(tuning="adapter", adapter_size=4), copy.deepcopy(frozen))
    for m, bb in enc.backbones.items():
        bb.eval(), frozen[m].eval()  # no dropout
        inputs = {k: v[:3] for k, v in data.item_inputs[m].items()}
        with torch.no_grad():  # W_up = 0: every adapter is the identity before training
            torch.testing.assert_close(bb(**inputs).last_hidden_state, frozen[m](**inputs).last_hidden_state)
        trained = [n for n, p in bb.named_parameters() if p.requires_grad]
        layers, hidden = bb.config.num_hidden_layers, bb.config.hidden_size
        assert trained and all(".adapter." in n for n in trained)
        assert len({n.rsplit(".adapter.", 1)[0] for n in trained}) == 2 * layers  # after attention and FFN outputs
        assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 2 * layers * (2 * hidden * 4 + hidden + 4)
        with torch.no_grad():
            for n, p in bb.named_parameters():
                if n.endswith("adapter.up.weight"):
                    p.normal_()
        assert not torch.allclose(bb(**inputs).last_hidden_state, frozen[m](**inputs).last_hidden_state)


def test_optimizer_gives_recommender_adapter_and_backbone_their_own_learning_rates(data, tmp_path):
    """The official FFT/LoRA baselines tune backbone weights at their own rate (FFT text: 5e-5)."""
    enc = BackboneItemEncoder(BackboneItemEncoderConfig(tuning="full"), backbones(0))
    enc.set_item_inputs(data.item_inputs)
    args = SequentialRecConfig(output_dir=str(tmp_path), learning_rate=1e-3, adapter_learning_rate=2e-4,
                               backbone_learning_rate=5e-5, report_to="none")
    trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), enc, args, data.leave_one_out(10)["train"])
    trainer.create_optimizer()
    lr_of = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    core = trainer.model
    assert {lr_of[id(p)] for p in core.recommender.parameters()} == {1e-3}
    assert {lr_of[id(p)] for n, p in enc.named_parameters() if n.startswith("backbones.")} == {5e-5}
    assert {lr_of[id(p)] for n, p in enc.named_parameters() if not n.startswith("backbones.")} == {2e-4}
    assert len(lr_of) == sum(1 for p in core.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="backbone_learning_rate"):
        SequentialRecConfig(output_dir=str(tmp_path), backbone_learning_rate=0.0)
