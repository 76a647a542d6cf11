"""Assemble docs/results.md from the per-method sections that the reproduction scripts write.

Each script in scripts/ writes its measured numbers (with seeds and settings) to
docs/results/<method>.md and its figures to docs/figures/<method>_*.png; this joins the sections,
in zoo order, under one page (headings one level down, figure links made relative to docs/, and
every figure of a method shown under its section).

    python scripts/collect_results.py
"""

import re
from pathlib import Path

from hfgen.methods import builtin_methods

ORDER = ["core", *(info.name for info in builtin_methods())]  # the manifests' zoo order
TITLES = {"iisan": "IISAN and IISAN-Versa", "crossan": "CROSSAN"}
HEADER = """# hfgen results

Every number on this page was printed by a script in `scripts/` (named in each section, with its
seeds and settings) on the development machine: 2 CPU cores, no GPU. Figures are in
`docs/figures/`. Where a method does not show its paper's effect at this scale, the section says so.
To regenerate a section, run its script; then `python scripts/collect_results.py`.
"""


def section(name: str, text: str, figures: list[Path]) -> str:
    text = text.strip().replace("](../figures/", "](figures/")
    text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)  # nest the section's headings under this page
    if not text.startswith("## "):
        text = f"## {TITLES.get(name, name)}\n\n{text}"
    missing = [f for f in figures if f"](figures/{f.name})" not in text]
    if missing:
        text += "\n\n" + "\n".join(f"![{f.stem}](figures/{f.name})" for f in missing)
    return text + "\n"


def main() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    sections = {p.stem: p for p in (docs / "results").glob("*.md")}
    names = [n for n in ORDER if n in sections] + sorted(set(sections) - set(ORDER))
    parts = [HEADER] + [
        section(n, sections[n].read_text(), sorted((docs / "figures").glob(f"{n}_*.png"))) for n in names
    ]
    (docs / "results.md").write_text("\n".join(parts))
    print(f"wrote docs/results.md with {len(names)} section(s): {', '.join(names)}")


if __name__ == "__main__":
    main()
