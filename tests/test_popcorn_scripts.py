"""The LLMPopcorn experiment script (tiny settings), its data split, its intervals and the official queries."""

import numpy as np
import pytest


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_popcorn_eval_script_records_both_prompts_and_the_popularity_model(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    runs, path = load_script("popcorn_eval").main(seeds=(0,), num_videos=40, epochs=1, num_queries=2, num_retrieved=2,
                                                  raw_dir=tmp_path / "raw", work_dir=tmp_path)
    record = read_record(path)
    assert path.name == "eval_stand_in.json" and record["settings"]["claim"]["measurable"] is False
    assert "LLM" in record["settings"]["claim"]["reason"]
    effects = load_script("collect_results").effects_table({"popcorn/eval_stand_in": record}, ["core", "popcorn"])
    assert "not measurable here: needs an instruction-tuned LLM" in effects
    check_arms(record, ["basic", "enhanced"], ["predicted_popularity", "rule_score"])
    check_arms(record, ["popularity model (held-out)"], ["nmse", "spearman", "mae"])
    assert all(len(record["metrics"][arm]["predicted_per_query"][0]) == 2 for arm in ("basic", "enhanced"))
    assert len(runs) == 1 and set(runs[0]["regressor"]) == {"nmse", "spearman", "mae"}
    sizes = runs[0]["sizes"]
    assert sum(sizes.values()) == 40 and min(sizes.values()) > 0


def test_split_has_disjoint_video_ids_and_covers_the_table():
    from hfgen.data.microlens import SPLIT_NAMES, make_synthetic_microlens, split_microlens

    table = make_synthetic_microlens(num_videos=50, num_frames=1, image_size=8, seed=0)
    parts = split_microlens(table, retrieval_fraction=0.4, eval_fraction=0.2, seed=3)
    ids = {name: set(parts[name]["video_id"]) for name in SPLIT_NAMES}
    assert not ids["retrieval_pool"] & ids["popularity_train"]
    assert not ids["retrieval_pool"] & ids["popularity_eval"]
    assert not ids["popularity_train"] & ids["popularity_eval"]
    assert set.union(*ids.values()) == set(table["video_id"])
    assert [len(parts[n]) for n in SPLIT_NAMES] == [20, 20, 10]
    assert split_microlens(table, seed=3)["retrieval_pool"]["video_id"] == parts["retrieval_pool"]["video_id"]


def test_split_keeps_all_rows_of_one_video_together_and_refuses_bad_fractions():
    import datasets

    from hfgen.data.microlens import SPLIT_NAMES, split_microlens

    table = datasets.Dataset.from_dict({"video_id": [1, 1, 2, 3, 3, 3, 4, 5], "x": list(range(8))})
    parts = split_microlens(table, retrieval_fraction=0.2, eval_fraction=0.2)
    ids = [set(parts[n]["video_id"]) for n in SPLIT_NAMES]
    assert sum(len(parts[n]) for n in SPLIT_NAMES) == 8 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for kwargs, match in ((dict(retrieval_fraction=0.0), "retrieval_fraction"), (dict(eval_fraction=1.2), "eval_fraction"),
                          (dict(retrieval_fraction=0.6, eval_fraction=0.5), "< 1")):
        with pytest.raises(ValueError, match=match):
            split_microlens(table, **kwargs)
    with pytest.raises(ValueError, match="video_id"):
        split_microlens(datasets.Dataset.from_dict({"x": [1, 2, 3]}))


def test_bootstrap_interval_has_the_known_answer(load_script):
    ci = load_script("popcorn_eval").bootstrap_ci
    # a constant has a zero-width interval at that constant
    assert ci(np.full(30, 2.5)) == (2.5, 2.5, 2.5)
    # the mean of n draws: the bootstrap interval approaches mean ± 1.96 sd/sqrt(n)
    x = np.random.default_rng(0).normal(1.0, 2.0, 400)
    m, lo, hi = ci(x, num_resamples=20_000)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert m == pytest.approx(x.mean()) and lo == pytest.approx(m - half, abs=0.02) and hi == pytest.approx(m + half, abs=0.02)


def test_official_queries_are_the_200_llmpopcorn_prompts():
    from hfgen.pipelines.popcorn.queries import SOURCE, official_queries

    assert SOURCE.startswith("GAIR-Lab/LLMPopcorn@")
    abstract, concrete = official_queries("abstract"), official_queries("concrete")
    assert len(abstract) == len(concrete) == 100 and len(set(abstract + concrete)) == 200
    assert abstract[0] == "Summarize the top 5 trending anime this season with a brief analysis."
    assert concrete[0].startswith("Create a video showcasing Goku")
    with pytest.raises(ValueError, match="kind"):
        official_queries("funny")
