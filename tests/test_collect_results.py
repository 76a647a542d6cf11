"""`scripts/collect_results.py --check`: every published number and figure is rendered from a raw record.

The first test is how CI runs the check on this checkout; the others show, on a copy of the docs, that deleting or
editing a record (or a rendered number, or adding a figure no record produced) makes it fail.
"""

import json
import shutil

import pytest

from hfgen.results import read_record, write_record


@pytest.fixture
def collect(load_script):
    return load_script("collect_results")


@pytest.fixture
def copy(tmp_path, collect):
    """A copy of this checkout's README and docs, which passes the check."""
    shutil.copytree(collect.ROOT / "docs", tmp_path / "docs")
    shutil.copy(collect.ROOT / "README.md", tmp_path / "README.md")
    assert collect.main(["--check", "--root", str(tmp_path)]) == 0
    return tmp_path


def test_docs_and_readme_match_the_raw_records(collect, capsys):
    assert collect.main(["--check"]) == 0, capsys.readouterr().err


def records(root):
    return sorted((root / "docs" / "results" / "raw").rglob("*.json"))


def test_deleting_any_record_fails_the_check(copy, collect, capsys):
    paths = records(copy)
    assert paths, "no raw record to delete"
    for path in paths:
        saved = path.read_bytes()
        path.unlink()
        assert collect.main(["--check", "--root", str(copy)]) == 1, f"deleting {path.name} went unnoticed"
        path.write_bytes(saved)
    assert collect.main(["--check", "--root", str(copy)]) == 0


def test_editing_a_per_seed_value_fails_the_check(copy, collect, capsys):
    for path in records(copy):
        record = json.loads(path.read_text())
        arm = next(a for a, values in record["metrics"].items() if values)
        metric = next(m for m, v in record["metrics"][arm].items() if isinstance(v, list) and v
                      and isinstance(v[0], (int, float)))
        record["metrics"][arm][metric][0] += 0.5
        path.write_text(json.dumps(record))
        assert collect.main(["--check", "--root", str(copy)]) == 1, f"editing {path.name} went unnoticed"
        assert "differs from what its records render" in capsys.readouterr().err


def test_editing_a_rendered_number_or_adding_an_unbacked_figure_fails(copy, collect, capsys):
    page = copy / "docs" / "results" / "nft.md"
    text = page.read_text()
    block = text.index("<!-- record nft/")
    digit = next(i for i in range(block, len(text)) if text[i].isdigit())
    page.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    assert collect.main(["--check", "--root", str(copy)]) == 1
    page.write_text(text)
    (copy / "docs" / "figures" / "withdrawn_demo.png").write_bytes(b"\x89PNG")
    assert collect.main(["--check", "--root", str(copy)]) == 1
    assert "withdrawn_demo.png: no current record produced" in capsys.readouterr().err


def test_a_new_record_renders_through_the_generic_table_with_paired_verdicts(tmp_path, collect):
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "figures").mkdir()
    figure = tmp_path / "docs" / "figures" / "toy_curve.png"
    figure.write_bytes(b"\x89PNG toy")
    write_record("toy", "study", seeds=[0, 1, 2], raw_dir=tmp_path / "docs" / "results" / "raw", figures=[figure],
                 metrics={"base": {"acc": [0.5, 0.6, 0.7]}, "new": {"acc": [0.6, 0.5, 0.8]},
                          "same": {"acc": [0.5, 0.6, 0.7]}},
                 settings={"baseline": "base", "higher_is_better": {"acc": True}, "lr": 0.1,
                           "claim": {"text": "new beats base", "arm": "new", "baseline": "base", "metric": "acc"}})
    page = tmp_path / "docs" / "results" / "toy.md"
    page.write_text("# Toy\n\n<!-- record toy/study -->\n<!-- end record -->\n\n![curve](../figures/toy_curve.png)\n")
    assert collect.main(["--check", "--root", str(tmp_path)]) == 1  # not rendered yet
    assert collect.main(["--root", str(tmp_path)]) == 0
    assert collect.main(["--check", "--root", str(tmp_path)]) == 0
    text = page.read_text()
    assert "| new | 0.633 [" in text and "| base | 0.600 [0.352, 0.848] |" in text
    assert "new − base, acc: 0.033 [" in text and "→ no difference" in text
    assert "**not shown**" in text and "lr=0.1" in text and "seeds [0, 1, 2]" in text
    assert "## Toy" in (tmp_path / "docs" / "results.md").read_text()
    figure.write_bytes(b"\x89PNG changed")
    assert collect.main(["--check", "--root", str(tmp_path)]) == 1


def test_equivalence_claims_need_the_whole_interval_inside_the_margin(collect):
    record = {"settings": {"claim": {"arm": "a", "baseline": "b", "metric": "m", "margin": 0.05}},
              "metrics": {"a": {"m": [1.0, 1.01, 0.99]}, "b": {"m": [1.0, 1.0, 1.0]}}}
    assert collect.claim_effect(record) == "shown"
    record["metrics"]["a"]["m"] = [1.0, 1.09, 0.95]
    assert collect.claim_effect(record) == "not shown"
    record["settings"]["claim"]["measurable"] = False
    assert collect.claim_effect(record) == "not measurable here"


def test_the_demo_table_renders_from_the_main_jobs_record(tmp_path, collect):
    from hfgen.demos import DemoResult, write_demo_record

    (tmp_path / "docs" / "results").mkdir(parents=True)
    results = [DemoResult(method="nft", claim="paper: x", metric="accuracy (higher is better)", baseline_name="rft",
                          baseline_value=0.25, method_value=0.5, seconds=12.0), ("gft", "RuntimeError: boom")]
    write_demo_record(results, seed=0, started=0.0, raw_dir=tmp_path / "docs" / "results" / "raw")
    (tmp_path / "docs" / "results" / "core.md").write_text("# Main job\n\n<!-- record demo/all -->\n<!-- end record -->\n")
    assert collect.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "docs" / "results" / "core.md").read_text()
    assert "| nft | accuracy (higher is better) | rft: 0.25 | 0.5 | 12 | not re-measured |" in text
    assert "| gft | FAILED: RuntimeError: boom |" in text and "2 demos, seed 0" in text


def test_mf2_adaptation_pairs_each_arm_with_full_fine_tuning_of_the_same_pretraining(tmp_path, collect):
    path = write_record("mf2", "face_au_adaptation", seeds=[0, 1, 2], raw_dir=tmp_path,
                        metrics={f"{p} / {a}": {"f1": [base + d, base + 2 * d, base + 3 * d]}
                                 for p, base in (("global-only", 0.3), ("global+local", 0.5))
                                 for a, d in (("DFN", 0.01), ("full fine-tuning", 0.02))},
                        settings={"baseline": "global+local / full fine-tuning", "higher_is_better": {"f1": True}})
    text = collect.RENDERERS["mf2/face_au_adaptation"](read_record(path), {})
    assert "- global-only / DFN − global-only / full fine-tuning, f1: -0.020 [" in text
    assert "- global+local / DFN − global+local / full fine-tuning, f1:" in text
    assert "global-only / DFN − global+local" not in text  # never across pretrainings


def test_a_record_is_dirty_only_when_files_other_than_run_outputs_differ(tmp_path, monkeypatch):
    import subprocess

    from hfgen import results

    (tmp_path / "docs" / "results" / "raw" / "m").mkdir(parents=True)
    (tmp_path / "docs" / "figures").mkdir()
    code, figure = tmp_path / "code.py", tmp_path / "docs" / "figures" / "own.png"
    other = tmp_path / "docs" / "results" / "raw" / "m" / "other.json"
    code.write_text("x = 1\n"), figure.write_bytes(b"a"), other.write_text("{}\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    monkeypatch.setattr(results, "RAW_DIR", tmp_path / "docs" / "results" / "raw")
    figure.write_bytes(b"b"), other.write_text("{ }\n")  # the run's figure (git's first status line) and another record
    assert results._dirty([figure]) is False
    code.write_text("x = 2\n")
    assert results._dirty([figure]) is True
