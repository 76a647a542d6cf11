"""Shared by the masked-diffusion scripts: write one named section of ``docs/results/masked_diffusion.md``."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "masked_diffusion.md"
HEADER = "# Masked diffusion models and the first-hitting sampler (arXiv 2409.02908): measured results\n"


def write_section(key: str, markdown: str, path: Path = RESULTS) -> Path:
    """Replace (or append) the section between ``<!-- key:start -->`` and ``<!-- key:end -->``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.is_file() else HEADER
    block = f"<!-- {key}:start -->\n{markdown.strip()}\n<!-- {key}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
