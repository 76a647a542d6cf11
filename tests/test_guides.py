"""Every method has a guide, docs/guides/<method>.md, and every python block of it runs as written (offline, CPU,
smoke size), in order, in one namespace, as a reader would paste them."""

from pathlib import Path

import pytest

from tests.doc_blocks import python_blocks, run_blocks

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "docs" / "guides"
BUILTIN = sorted(p.stem for p in (ROOT / "hfgen" / "methods").glob("*.py") if p.stem != "__init__")  # the manifests
SECTIONS = ("## Dataset format", "## Quick start on your own task", "## Logged metrics", "## Main knobs",
            "## Saving and reloading", "## Pitfalls", "## Results")


def test_one_guide_per_method():
    assert len(BUILTIN) == 10
    assert sorted(p.stem for p in GUIDES.glob("*.md")) == BUILTIN


@pytest.mark.parametrize("method", BUILTIN)
def test_guide_has_the_sections_and_links_its_results(method):
    text = (GUIDES / f"{method}.md").read_text()
    positions = [text.find(section) for section in SECTIONS]
    assert -1 not in positions, [s for s, p in zip(SECTIONS, positions) if p == -1]
    assert positions == sorted(positions)
    assert f"(../results/{method}.md)" in text
    assert (GUIDES.parent / "results" / f"{method}.md").is_file()
    quick_start = text.split("## Quick start on your own task", 1)[1].split("\n## ", 1)[0]
    assert python_blocks(quick_start), "the quick start needs code"


@pytest.mark.parametrize("method", BUILTIN)
def test_guide_blocks_run(method, tmp_path, monkeypatch):
    page = GUIDES / f"{method}.md"
    blocks = python_blocks(page.read_text())
    assert blocks
    monkeypatch.chdir(tmp_path)
    run_blocks(blocks, page)
