"""The compiled-transition target: ``compile=True`` against the uncompiled estimator on a small
problem (P ≤ 10⁴), interleaved like every other target (:mod:`metagrad.bench_targets`).

Beside the ratio, the share of the uncompiled call's CPU time spent in matrix products is
measured (``torch.profiler``, one call, so as noisy as any single timing on a shared machine):
compiling removes the Python and dispatch work around the products, while the products
themselves mostly remain, so a large share means little room for a speed-up.
Compile time is measured separately: the wall time of the first compiled call after
:func:`metagrad.compiled.clear` (inductor compiles kernels in worker processes, whose CPU
time the process clock would not see). Gradients are checked against the uncompiled ones.
"""
from __future__ import annotations

import time
import warnings

import torch

from .bench_targets import Target, bench_problem, interleave, paired_ratios

__all__ = ["compile_section", "SMALL_HIDDEN"]

SMALL_HIDDEN = 12  # 784-12-10: P = 9,550


def _rel(a, b) -> float:
    num = sum(float((a[k] - b[k]).norm()) ** 2 for k in b) ** 0.5
    den = sum(float(b[k].norm()) ** 2 for k in b) ** 0.5
    return num / max(den, 1e-30)


_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def product_share(fn) -> float:
    """Share of one call's self CPU time spent in matrix products (``torch.profiler``): work that
    mostly remains after compiling."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in _PRODUCTS) / max(total, 1e-9)


def compile_section(rounds: int, log, *, quick: bool = True, T: int | None = None):
    from . import compiled, hypergrad
    T = T or (20 if quick else 50)
    problem, alpha = bench_problem(T, "sgd", hidden=SMALL_HIDDEN)
    P = sum(v.numel() for v in problem.w0(alpha).values())
    methods = {"rmd": {}, "greedy": {}, "fg2u": {"b": 8, "seed": 0}}
    speed = Target(f"compile=True speed-up, uncompiled / compiled time (P={P:,}, T={T})", 2.0,
                   at_least=True)
    agree = Target("compile=True gradient, relative difference to uncompiled (float32)", 1e-6)
    raw, info = [], {"P": P, "T": T, "methods": {}}
    if not compiled.available():
        speed.note = agree.note = "not measured: torch.compile is not available"
        return raw, [speed, agree], info
    for method, opts in methods.items():
        def call(c, method=method, opts=opts):
            return hypergrad(problem, alpha, method, validate=False, compile=c, **opts)
        ref = call(False)
        compiled.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            res = call(True)
            compile_s = time.perf_counter() - t0
        fell_back = [str(w.message)[:200] for w in caught
                     if str(w.message).startswith("metagrad: torch.compile")]
        rel = _rel(res.grad, ref.grad)
        share = product_share(lambda: call(False))
        log(f"  {method}: first compiled call {compile_s:.1f} s, rel. diff {rel:.1e}"
            + (f", FELL BACK: {fell_back[0]}" if fell_back else ""))
        times = interleave({"uncompiled": lambda: call(False), "compiled": lambda: call(True)},
                           rounds, progress=lambda s, m=method: log(f"  {m} compiled: {s}"))
        where = f"{method}" + (" (fell back: uncompiled)" if fell_back else "")
        speed.add(where, paired_ratios(times, "uncompiled", "compiled"))
        agree.add(method, [rel])
        info["methods"][method] = {"compile_wall_s": compile_s, "rel_diff": rel, "fell_back": fell_back,
                                   "uncompiled_matrix_product_share": share,
                                   "median_uncompiled_s": sorted(times["uncompiled"])[rounds // 2],
                                   "median_compiled_s": sorted(times["compiled"])[rounds // 2]}
        raw += [{"section": "compile", "config": f"P={P} T={T} {method}", "label": k, "round": i,
                 "cpu_s": x} for k, ts in times.items() for i, x in enumerate(ts)]
        raw.append({"section": "compile-time", "config": f"P={P} T={T} {method}", "label": "compiled",
                    "round": 0, "wall_s": compile_s})
    speed.note = "compile time (first call, wall): " + ", ".join(
        f"{m} {d['compile_wall_s']:.0f} s" for m, d in info["methods"].items()) + (
        "; share of the uncompiled call's CPU time in matrix products (torch.profiler, one call): "
        + ", ".join(f"{m} {d['uncompiled_matrix_product_share']:.0%}" for m, d in info["methods"].items()))
    return raw, [speed, agree], info
