"""Assemble docs/results.md from the per-method sections that the reproduction scripts write.

Each script in scripts/ writes its measured numbers (with seeds and settings) to
docs/results/<method>.md; this joins them, in zoo order, under one page.

    python scripts/collect_results.py
"""

from pathlib import Path

ORDER = ["core", "nft", "masked_diffusion", "gft", "ddo", "consistency_bridge", "analytic_precond",
         "iisan", "crossan", "mf2", "popcorn"]
HEADER = """# hfgen results

Every number on this page was printed by a script in `scripts/` (named in each section, with its
seeds and settings) on the development machine: 2 CPU cores, no GPU. Figures are in
`docs/figures/`. Where a method does not show its paper's effect at this scale, the section says so.
To regenerate a section, run its script; then `python scripts/collect_results.py`.
"""


def main() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    sections = {p.stem: p for p in (docs / "results").glob("*.md")}
    names = [n for n in ORDER if n in sections] + sorted(set(sections) - set(ORDER))
    parts = [HEADER] + [sections[n].read_text().strip() + "\n" for n in names]
    (docs / "results.md").write_text("\n".join(parts))
    print(f"wrote docs/results.md with {len(names)} section(s): {', '.join(names)}")


if __name__ == "__main__":
    main()
