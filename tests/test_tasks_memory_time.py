"""The memory/time page's computed prose follows the measurements."""
from __future__ import annotations

import pandas as pd

from metagrad.tasks import memory_time as mt


def _memory(greedy_growth: float) -> pd.DataFrame:
    rows = []
    for T, f in ((10, 1.0), (1000, greedy_growth)):
        rows += [{"method": "greedy", "T": T, "peak_MiB": 2.0 * f}, {"method": "fo", "T": T, "peak_MiB": 1.0},
                 {"method": "rmd", "T": T, "peak_MiB": T * 1.0}]
    return pd.DataFrame(rows)


def test_flat_md_calls_flat_only_below_the_tolerance():
    flat = mt.flat_md(_memory(1.002), methods={"greedy": "greedy", "fo": "first-order"})
    assert "Greedy, first-order are flat in *T*" in flat and "factor 1.002 at most (greedy)" in flat
    grows = mt.flat_md(_memory(3.0), methods={"greedy": "greedy", "fo": "first-order"})
    assert "flat" not in grows and "greedy's peak memory still grows by a factor 3.00" in grows


def test_chunk_md_follows_memory_and_time():
    c = pd.DataFrame({"chunk": [1, 4, 32, "python loop"], "peak_MiB": [2.0, 4.0, 25.0, float("nan")],
                      "seconds": [2.4, 0.8, 0.3, 2.5]})
    text = mt.chunk_md(c)
    assert "from `chunk` = 1 to 32" in text.lower() and "factor 12.5" in text and "falls by a factor 8.0:" in text
    c2 = c.assign(seconds=[2.4, 0.2, 0.3, 2.5])
    assert "falls by a factor 8.0 (not at every step)" in mt.chunk_md(c2)
    c3 = c.assign(seconds=[0.3, 0.8, 0.6, 2.5])
    assert "does not fall (factor 2.00 slower)" in mt.chunk_md(c3)


def test_processes_md_words_the_speedup_by_its_value():
    def p(s):
        return pd.DataFrame({"processes": [1, 2], "speedup": [1.0, s]})
    assert "1.42 (ideal 2): sharding pays off" in mt.processes_md(p(1.42))
    assert "overhead outweighs" in mt.processes_md(p(0.63))
    assert "near-linear" in mt.processes_md(p(1.95))
