"""Smoke test of the benchmark: the smallest sizes, CSV columns and provenance (no timing assertions)."""
import json

import pandas as pd

from metagrad import bench
from metagrad.tasks.bench_problem import hidden_for, hyper_cleaning_mlp, inner_size


def test_bench_problem_sizes():
    assert inner_size(128) == 101_770
    assert hidden_for(100_000) == 126 or inner_size(hidden_for(100_000)) - 100_000 < 795
    problem, alpha = hyper_cleaning_mlp(N=16, hidden=2, T=3, batch=4)
    assert alpha["logit"].shape == (16,)
    problem.validate(alpha)


def test_quick_sweep_writes_csv_and_provenance(tmp_path):
    out = tmp_path / "smoke.csv"
    res = bench.run_benchmark(bench._config(
        ["--quick", "--sweep", "--vmap-vs-loop", "--T", "2", "--methods", "rmd", "fg2u", "fg2u-loop",
         "greedy", "fmd", "--out", str(out)]), echo=False)
    df = pd.read_csv(out)
    assert list(df.columns) == bench.COLUMNS
    assert set(df["label"]) == {"floor", "rmd", "fg2u", "fg2u-loop", "greedy", "fmd"}
    assert set(df["status"]) <= {"ok", "skipped", "error"}
    ok = df[df["status"] == "ok"]
    assert "floor" in set(ok["label"]) and "rmd" in set(ok["label"])
    assert (ok["time_s"] > 0).all() and (ok["peak_mem_bytes"] > 0).all()
    assert (ok[ok["label"] != "floor"]["time_ratio"] > 0).all()
    prov = json.loads(out.with_suffix(".json").read_text())
    for key in ("config", "torch", "device", "git_commit", "date_utc", "targets"):
        assert key in prov
    targets = res["targets"]
    assert list(targets.columns) == ["target", "threshold", "measured", "met", "detail"]
    assert targets["met"].str.match(r"met|MISSED|not measured").all()


def test_budget_skips_with_a_note(tmp_path):
    out = tmp_path / "skip.csv"
    bench.run_benchmark(bench._config(
        ["--quick", "--sweep", "--T", "2", "--methods", "fg2u-loop", "--budget-s", "1e-9",
         "--out", str(out)]), echo=False)
    df = pd.read_csv(out).set_index("label")
    assert df.loc["fg2u-loop", "status"] == "skipped"
    assert "budget" in df.loc["fg2u-loop", "note"]
