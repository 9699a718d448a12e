"""Shared fixtures for the metagrad test-suite.

* ``device``: every test that takes it runs on the CPU and on CUDA; the CUDA case is skipped
  (with a reason) when ``torch.cuda.is_available()`` is False.

Helpers (small problem instances, finite differences, relative errors) live in ``_helpers.py``.

The tests run single-threaded: the problems are tiny, so intra-op threads only add contention
(on a loaded 2-core machine, 2 threads made a 1 ms inner step take ~50 ms).
"""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """Run on the CPU and on CUDA (skipped without a GPU)."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available (torch.cuda.is_available() is False)")
    return torch.device(request.param)
