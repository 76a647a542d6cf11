"""Run a Markdown page's ``python`` code blocks as a reader would paste them (used by the README and guide tests)."""

from __future__ import annotations

import re
from pathlib import Path

PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", flags=re.S)


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```` ```python ```` blocks of ``text``, in order."""
    return PYTHON_BLOCK.findall(text)


def run_blocks(blocks: list[str], source: str | Path) -> dict:
    """Execute ``blocks`` in order in one namespace (later blocks see earlier names); returns the namespace.

    ``source`` names the page in tracebacks. Run it inside a temporary working directory: blocks save artifacts.
    """
    namespace = {"__name__": "__doc_blocks__"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{source} (python block {index + 1})", "exec"), namespace)
    return namespace
