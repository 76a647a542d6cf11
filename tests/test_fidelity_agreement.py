"""`scripts/fidelity_agreement.py`: rerunning a table reproduces the committed record's rendered rows.

The masked diffusion table (about a second) is measured again into a temporary records folder and rendered by
`scripts/collect_results.py`; its rows must equal those of the committed `docs/results/raw/fidelity/` record.
"""

from hfgen.results import read_record


def rows(collect, record):
    return collect.render_fidelity(record, {}).split("\n\n")[0]


def test_rerunning_the_masked_diffusion_table_reproduces_its_record(load_script, tmp_path):
    collect = load_script("collect_results")
    fidelity = load_script("fidelity_agreement")
    fidelity.masked_diffusion_table(tmp_path)
    fresh = read_record(tmp_path / "fidelity" / "masked_diffusion.json")
    committed = read_record(collect.ROOT / "docs" / "results" / "raw" / "fidelity" / "masked_diffusion.json")
    assert fresh["seeds"] == committed["seeds"] and fresh["settings"] == committed["settings"]
    assert rows(collect, fresh) == rows(collect, committed)
    assert "0 of 128 tokens differ" in rows(collect, fresh)
