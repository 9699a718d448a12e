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
        ["--smoke", "--sweep", "--vmap-vs-loop", "--T", "2", "--methods", "rmd", "fg2u", "fg2u-loop",
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
        ["--smoke", "--sweep", "--T", "2", "--methods", "fg2u-loop", "--budget-s", "1e-9",
         "--out", str(out)]), echo=False)
    df = pd.read_csv(out).set_index("label")
    assert df.loc["fg2u-loop", "status"] == "skipped"
    assert "budget" in df.loc["fg2u-loop", "note"]


def test_targets_contenders_compute_the_same_thing():
    """The floor and the hand-written unroll are the same computation as metagrad's run / rmd
    (so that the benchmark's ratios compare equal work)."""
    import torch
    import metagrad as mg
    from metagrad import bench_targets as bt, unroll
    for momentum in (None, 0.9):
        problem, alpha = hyper_cleaning_mlp(N=16, hidden=3, T=4, batch=16, momentum=momentum,
                                            dtype=torch.float64)
        w_plain, w_run = bt.plain_loop(problem, alpha), unroll.run(problem, alpha)[0]
        for k in w_run:
            assert torch.allclose(w_plain[k], w_run[k], rtol=1e-12, atol=1e-14)
        g_hand, F_hand = bt.handwritten_rmd(problem, alpha)
        res = mg.hypergrad(problem, alpha, "rmd")
        assert torch.allclose(g_hand["logit"], res.grad["logit"], rtol=1e-10, atol=1e-14)
        assert torch.allclose(F_hand, res.loss)


def test_targets_protocol_pieces():
    from metagrad import bench_targets as bt
    calls = []
    times = bt.interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 5)
    assert [len(v) for v in times.values()] == [5, 5]
    assert calls[2:6] == ["a", "b", "b", "a"]  # warm-up, then the order rotates each round
    assert bt.paired_ratios({"x": [2.0, 4.0], "y": [1.0, 2.0]}, "x", "y") == [2.0, 2.0]
    t = bt.Target("x / y", 1.05)
    t.add("T=10", [1.0, 1.2, 1.01])
    t.add("T=50", [0.9, 1.0, 0.95])
    row = t.row()
    assert row["met"] == "met" and row["worst"].startswith("1.01 [1.00–1.20] (T=10)")
    t.add("T=200", [1.1, 1.1, 1.2])
    assert t.row()["met"] == "MISSED"
    assert bt.Target("never run", 1.0).row()["met"] == "not measured"
