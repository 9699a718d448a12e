"""Faults and bad input (issue 13): nothing lost, nothing silently wrong, every error names the
value or the file and the fix.

The cases live in ``_fault_cases.py`` (so that ``scripts/probe_faults.py`` can count them):
``BAD_INPUTS`` feed one bad value or file each and pass only if it is refused with a metagrad
error naming it and the fix (or, for numpy / 0-dim tensor scalars, accepted with the same
result); ``FAULTS`` inject one fault each (kill -9 mid-run, truncated / garbage / empty /
crafted files, two concurrent writers, a trickling or dying server, SIGTERM, a full disk) and pass
only if nothing is lost. Case ids start with the issue item they cover (b = bad input, f = fault).
"""
from __future__ import annotations

import sys

import pytest

import _fault_cases as cases


def test_every_issue_item_has_a_case():
    items = {c.__name__[1] for c in cases.BAD_INPUTS + cases.FAULTS}
    assert items >= set("012345678"), sorted(items)


@pytest.mark.parametrize("case", cases.BAD_INPUTS, ids=lambda c: c.__name__)
def test_bad_input_is_refused_clearly(case, tmp_path):
    case(tmp_path)


@pytest.mark.parametrize("case", cases.FAULTS, ids=lambda c: c.__name__)
def test_fault_is_survived(case, tmp_path):
    if sys.platform == "win32" and case.__name__.startswith(("f0_", "f4_two", "f7_sigterm")):
        pytest.skip("needs POSIX signals and fork")
    case(tmp_path)
