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
