"""Every method has a guide, docs/guides/<method>.md, and every python block of it runs as written (offline, CPU,
smoke size), in order, in one namespace, as a reader would paste them."""

from pathlib import Path

import pytest

from tests.doc_blocks import python_blocks, run_blocks

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "docs" / "guides"
BUILTIN = sorted(p.stem for p in (ROOT / "hfgen" / "methods").glob("*.py") if p.stem != "__init__")  # the manifests
# guides still to write (issue #34): each is an xfail that turns into a failure (strict) once its page exists
NOT_WRITTEN = {"popcorn"}
SECTIONS = ("## Dataset format", "## Quick start on your own task", "## Logged metrics", "## Main knobs",
            "## Saving and reloading", "## Pitfalls", "## Results")


def guides(methods):
    return [pytest.param(m, marks=pytest.mark.xfail(strict=True, reason="guide not written yet"))
            if m in NOT_WRITTEN else m for m in methods]


def test_one_guide_per_method():
    assert len(BUILTIN) == 10
    assert sorted(p.stem for p in GUIDES.glob("*.md")) == sorted(set(BUILTIN) - NOT_WRITTEN)


@pytest.mark.parametrize("method", guides(BUILTIN))
def test_guide_has_the_sections_and_links_its_results(method):
    text = (GUIDES / f"{method}.md").read_text()
    positions = [text.find(section) for section in SECTIONS]
    assert -1 not in positions, [s for s, p in zip(SECTIONS, positions) if p == -1]
    assert positions == sorted(positions)
    assert f"(../results/{method}.md)" in text
    assert (GUIDES.parent / "results" / f"{method}.md").is_file()
    quick_start = text.split("## Quick start on your own task", 1)[1].split("\n## ", 1)[0]
    assert python_blocks(quick_start), "the quick start needs code"


@pytest.mark.parametrize("method", guides(BUILTIN))
def test_guide_blocks_run(method, tmp_path, monkeypatch):
    page = GUIDES / f"{method}.md"
    blocks = python_blocks(page.read_text())
    assert blocks
    monkeypatch.chdir(tmp_path)
    run_blocks(blocks, page)
