"""The README's quickstart blocks run as written (offline, on CPU)."""

from pathlib import Path

from tests.doc_blocks import python_blocks, run_blocks

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return python_blocks(section)


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    blocks = quickstart_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    run_blocks(blocks, README)  # one namespace, in order, as a reader would paste them
    assert (tmp_path / "mdm-pipeline" / "model_index.json").is_file()
    assert (tmp_path / "nft-arithmetic" / "model.safetensors").is_file()
    assert "hfgen-nft" in (tmp_path / "nft-arithmetic" / "README.md").read_text()
