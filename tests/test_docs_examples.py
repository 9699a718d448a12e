"""The code on the documentation pages runs as written.

Every ```python block of a page is executed in order in one namespace (as a reader would paste
them); ```{code-block} python blocks (other libraries' code, shown for comparison) are not.
The README examples are checked by tests/test_readme_examples.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def run_blocks(path: Path) -> dict:
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for i, code in enumerate(python_blocks(path)):
        try:
            exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # name the block, keep the traceback
            raise AssertionError(f"{path.name}: python block {i} failed: {e!r}\n{code}") from e
    return namespace


def test_coming_from_page_runs_and_matches_plain_pytorch_maml():
    page = ROOT / "book" / "coming_from.md"
    assert len(python_blocks(page)) >= 4
    ns = run_blocks(page)
    assert ns["worst"] < 1e-10  # metagrad rmd == second-order MAML by hand (also asserted on the page)
