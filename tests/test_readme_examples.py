"""The README's python examples run as written.

Each ```python block of README.md is executed on its own, in a fresh namespace (a reader
copies one block at a time). The README must carry the bring-your-own-model examples:
``mg.from_module`` with a BatchNorm CNN, ``mg.implicit`` with a scipy solver and an outer loop
driven by a ``torch.optim`` optimiser.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
REQUIRED = {"mg.from_module": "from_module with a BatchNorm CNN",
            "mg.implicit": "implicit with a scipy solver",
            "torch.optim.": "outer_loop with a torch.optim optimiser"}


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def run_block(code: str, name: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, name, "exec"), namespace)
    return namespace


def test_readme_has_the_bring_your_own_model_examples():
    code = "\n".join(python_blocks(ROOT / "README.md"))
    missing = [what for needle, what in REQUIRED.items() if needle not in code]
    assert not missing, f"README.md lacks the python example(s): {missing}"


@pytest.mark.parametrize("i", range(len(python_blocks(ROOT / "README.md"))))
def test_readme_block_runs(i):
    code = python_blocks(ROOT / "README.md")[i]
    run_block(code, f"README.md[block {i}]")
