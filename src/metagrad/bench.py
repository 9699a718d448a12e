r"""The metagrad benchmark: wall time and peak memory of every estimator beside the plain inner run.

Run ``python -m metagrad.bench --quick`` for the speed targets (:mod:`metagrad.bench_targets`:
every contender against a plain PyTorch loop, interleaved over rounds, CPU-time medians
[min–max], met / missed; about 5 minutes), ``--targets`` for the same at every horizon, and
``python -m metagrad.bench`` for the sweep below (``--smoke``: tiny sizes in seconds, ``--help``).

**Problem** (:func:`metagrad.tasks.bench_problem.hyper_cleaning_mlp`): data hyper-cleaning, a
``784 → H → 10`` tanh MLP trained by SGD on N examples with one weight :math:`\sigma(\alpha_i)` per
example. ``--P`` sets H (P = 795 H + 10; the default ``--P 100000`` gives H = 126, P = 100,180), ``--N``
the number of hyperparameters (default 1,000), ``--batch`` the inner minibatch (default 100) and
the validation set has ``--n-val`` examples (default: the minibatch size, so that a validation
gradient costs about one inner step). With these defaults a full CPU run takes about 15-20 minutes
on a 2-core machine (estimators whose projected time exceeds ``--budget-s`` are skipped).

**Protocol.** For each horizon T (ascending) the *floor* —
:func:`metagrad.bench_targets.plain_loop`, T inner steps as a plain PyTorch loop — is measured first, then every estimator. Wall time and memory are measured in
*separate* runs, because the CPU memory tracker slows small ops down:

* time: one warm-up call, then the median of ``--repeats`` untracked calls, each preceded by a
  floor run; the row's ratio is its median over the median of *those* floor runs
  (``floor_time_s``), so that drifting load on a shared machine cancels. The warm-up is left out
  when the same code path already ran at a smaller T in this process (``fmd``: when ``fg2u`` ran)
  and the call is projected to take over 2 s; no further repeat starts once it would take the
  timed calls past half of ``--budget-s`` (at least one is always timed). The ``warmup``,
  ``n_repeats`` and ``note`` columns say what was done.
* memory: one call with ``track_memory=True`` — the live-tensor tracker on CPU (bytes of tensor
  storages created during the call and alive at once), the allocator peak on CUDA.
* skip rule: before each run the time of one call is projected — linearly in T from the same
  estimator's largest measured T, or from a prior ratio to the floor when it has not run yet —
  (``fmd``: from ``fg2u`` at the same T, times N/b) and the run is skipped
  (``status='skipped'``, reason in ``note``) when the projection exceeds
  ``--budget-s``; likewise when the projected memory (linear in T for rmd, √T with checkpointing,
  flat otherwise) exceeds 80 % of the free memory (``fmd``
  is checked against its own need, about 3·N·P numbers: "skipped: needs X GiB").

Sections (each flag selects one; with none given, all run): ``--sweep`` (the table above),
``--vmap-vs-loop`` (fg2u b = 32 vectorised vs a Python loop over directions), ``--distributed``
(fg2u at the same b on 1 and on 2 processes via :func:`metagrad.distributed.launch`, gloo on CPU,
one thread per process; 1 process × 2 threads is shown for context) and ``--torchopt`` (rmd
against the same unrolled loop written with TorchOpt's functional SGD, when ``torchopt`` is
importable; it is an optional extra, never a dependency).

**Threads.** On CPU the benchmark runs with one torch thread by default (``--threads``): ratios
to the floor are per-core, match the distributed section's one thread per process, and are far
less noisy on a shared machine, where intra-op threads that wait on each other turn a busy
neighbour into 5-10x slowdowns. ``--threads 0`` keeps torch's default.

**Output.** Two pivot tables (time and memory, with ratios to the floor) and a table of the
issue's targets with measured values and met/missed; a long-format CSV (``--out``, default
``results/bench/<tag>.csv``) and a JSON provenance file beside it (config, versions, device,
git commit, date, load average before and after — timings on a shared machine are noisy).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .estimators._checks import available_bytes

__all__ = ["main", "run_benchmark", "Variant", "VARIANTS", "COLUMNS", "torchopt_rmd"]

GiB = 2 ** 30
MiB = 2 ** 20

COLUMNS = [
    "label", "method", "options", "T", "P", "N", "b", "device", "dtype", "status", "note",
    "time_s", "time_min_s", "time_max_s", "n_repeats", "warmup", "peak_mem_bytes", "peak_mem_mib",
    "memory_method", "floor_time_s", "floor_mem_bytes", "time_ratio", "mem_ratio",
    "time_ratio_per_direction", "est_time_s", "inner_steps", "jvps", "vjps", "hvps", "outer_grads",
    "solver_calls",
]


# ---------------------------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One row of the table: a method of :func:`metagrad.hypergrad` with options (a function of
    T and the benchmark config), plus a prior time ratio to the floor used before it has run."""
    label: str
    method: str
    options: Callable[[int, Any], dict] = lambda T, cfg: {}
    prior: Callable[[Any], float] = lambda cfg: 3.0
    directions: Callable[[Any], int] = lambda cfg: 0
    mem_growth: float = 0.0  # memory ~ T ** mem_growth, for the projection (rmd: 1, checkpointed: 1/2)


def _ckpt(T: int) -> int:
    return max(1, math.ceil(math.sqrt(T)))


VARIANTS: list[Variant] = [
    Variant("rmd", "rmd", prior=lambda c: 3.0, mem_growth=1.0),
    Variant("rmd-ckpt", "rmd", lambda T, c: {"checkpoint": _ckpt(T)}, prior=lambda c: 4.0,
            mem_growth=0.5),
    Variant("trgu", "trgu", lambda T, c: {"K": min(10, T)}, prior=lambda c: 3.0),
    Variant("fg2u", "fg2u", lambda T, c: {"b": c.b, "chunk": 32, "seed": c.seed},
            prior=lambda c: 4.0 * c.b, directions=lambda c: c.b),
    Variant("fg2u-loop", "fg2u", lambda T, c: {"b": c.b, "vectorize": False, "seed": c.seed},
            prior=lambda c: 6.0 * c.b, directions=lambda c: c.b),
    Variant("fg2u-zo", "fg2u-zo", lambda T, c: {"b": c.b, "seed": c.seed},
            prior=lambda c: c.b + 1.0, directions=lambda c: c.b),
    Variant("fmd", "fmd", prior=lambda c: 4.0 * c.N, directions=lambda c: c.N),
    Variant("greedy", "greedy", prior=lambda c: 4.0),
    Variant("t1t2", "t1t2", prior=lambda c: 1.5),
    Variant("fo", "fo", prior=lambda c: 1.5),
    Variant("neumann", "neumann", lambda T, c: {"K": 5}, prior=lambda c: 1.5),
    Variant("cg", "cg", lambda T, c: {"K": 5}, prior=lambda c: 1.5),
    Variant("hessian-free", "hessian-free", prior=lambda c: 1.5),
    Variant("torchopt", "torchopt", prior=lambda c: 3.0, mem_growth=1.0),
]
_BY_LABEL = {v.label: v for v in VARIANTS}
FLOOR = "floor"


def torchopt_available() -> str | None:
    """TorchOpt's version when it can be imported, else None (:func:`torchopt_missing` says why)."""
    return None if torchopt_missing() else getattr(__import__("torchopt"), "__version__", "unknown")


def torchopt_missing() -> str | None:
    """Why TorchOpt cannot be used here (``"not installed"`` or the import error), or None."""
    try:
        import torchopt  # noqa: F401
    except ModuleNotFoundError as err:
        return ("not installed (an optional extra: pip install torchopt)" if err.name == "torchopt"
                else f"cannot be imported: {err}")
    except Exception as err:  # noqa: BLE001 — e.g. a C++ extension built for another torch
        return f"cannot be imported with torch {torch.__version__}: {type(err).__name__}: {err}"[:300]
    return None


def torchopt_rmd(problem, alpha):
    """``(grad, F)``: the same unrolled loop differentiated in reverse mode with TorchOpt's
    functional optimiser (``torchopt.sgd``, with ``momentum`` for :class:`~metagrad.optim.Momentum`,
    + ``apply_updates``, autograd with ``create_graph``), the way TorchOpt's documentation
    writes differentiable unrolling."""
    import torchopt
    names = list(alpha)
    a = {k: alpha[k].detach().requires_grad_() for k in names}
    w = {k: v.detach().clone().requires_grad_() for k, v in problem.w0(alpha).items()}
    mu = getattr(problem.optimizer, "momentum", 0.0)
    opt = torchopt.sgd(lr=problem.optimizer.lr, momentum=mu)
    state = opt.init(w)
    keys = list(w)
    for t in range(problem.T):
        loss = problem.inner_loss(w, a, problem.batch(t))
        g = dict(zip(keys, torch.autograd.grad(loss, [w[k] for k in keys], create_graph=True)))
        updates, state = opt.update(g, state, params=w, inplace=False)
        w = torchopt.apply_updates(w, updates, inplace=False)
    F = problem.outer_loss(w, a, problem.outer_batch)
    grads = torch.autograd.grad(F, [a[k] for k in names])
    return {k: g.detach() for k, g in zip(names, grads)}, F.detach()


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    T: list[int]
    methods: list[str]
    P: int
    N: int
    b: int
    batch: int
    n_val: int | None
    device: str
    dtype: str
    repeats: int
    budget_s: float
    seed: int
    compare_T: int
    sections: list[str]
    out: str
    quick: bool
    threads: int | None
    hidden: int = 0
    P_actual: int = 0
    extra: dict = field(default_factory=dict)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metagrad.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, nargs="+", default=None, help="horizons (default 10 50 200 1000)")
    p.add_argument("--methods", nargs="+", default=None,
                   help=f"rows to run (default all): {' '.join(v.label for v in VARIANTS)}")
    p.add_argument("--P", type=int, default=None, help="inner parameters, ~795*H (default 1e5)")
    p.add_argument("--N", type=int, default=None, help="hyperparameters = training examples (default 1000)")
    p.add_argument("--b", type=int, default=None, help="fg2u / fg2u-zo directions (default 32; --smoke: 8)")
    p.add_argument("--batch", type=int, default=None, help="inner minibatch size (default 100)")
    p.add_argument("--n-val", type=int, default=None, help="validation examples (default: --batch)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:k]")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=None, help="timed calls per run (default 3)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="skip a run whose projected time per call exceeds this (default 90 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare-T", type=int, default=None,
                   help="horizon of the vmap-vs-loop, distributed and TorchOpt comparisons (default 50)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in this process (default on CPU: 1, see the module doc; "
                        "0 keeps torch's default)")
    p.add_argument("--quick", action="store_true",
                   help="the speed targets, quick (T = 10, 50; about 5 min): see metagrad.bench_targets")
    p.add_argument("--targets", action="store_true", help="the speed targets at T = 10, 50, 200")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the targets protocol (>= 5)")
    p.add_argument("--smoke", action="store_true", help="sweep at tiny sizes: a smoke run in seconds")
    p.add_argument("--sweep", action="store_true", help="section: all methods x T")
    p.add_argument("--vmap-vs-loop", action="store_true", help="section: fg2u b=32 vectorised vs loop")
    p.add_argument("--distributed", action="store_true", help="section: fg2u on 1 vs 2 processes")
    p.add_argument("--torchopt", action="store_true", help="section: rmd vs TorchOpt (if installed)")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/<tag>.csv)")
    p.add_argument("--tag", default=None, help="name of the default CSV (default: the device type, "
                                                "'smoke' with --smoke)")
    return p


def _config(argv=None) -> Config:
    a = _parser().parse_args(argv)
    q = a.smoke
    dflt = (lambda quick, full: quick if q else full)
    sections = [s for s in ("sweep", "vmap-vs-loop", "distributed", "torchopt")
                if getattr(a, s.replace("-", "_"))] or ["sweep", "vmap-vs-loop", "distributed", "torchopt"]
    methods = a.methods or [v.label for v in VARIANTS if v.label != "torchopt"]
    bad = [m for m in methods if m not in _BY_LABEL]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {[v.label for v in VARIANTS]}")
    T = sorted(set(a.T or dflt([2, 4], [10, 50, 200, 1000])))
    tag = a.tag or ("smoke" if q else torch.device(a.device).type)
    cfg = Config(
        T=T, methods=methods, P=a.P or dflt(1600, 100_000), N=a.N or dflt(32, 1000),
        b=a.b or dflt(8, 32), batch=a.batch or dflt(8, 100), n_val=a.n_val, device=a.device, dtype=a.dtype,
        repeats=a.repeats or dflt(1, 3), budget_s=a.budget_s or dflt(5.0, 90.0), seed=a.seed,
        compare_T=a.compare_T or dflt(min(T), 50), sections=sections,
        out=a.out or f"results/bench/{tag}.csv", quick=q,
        extra={"targets": a.quick or a.targets, "targets_quick": a.quick, "rounds": a.rounds},
        threads=(1 if torch.device(a.device).type == "cpu" else 0) if a.threads is None else a.threads)
    from .tasks.bench_problem import hidden_for, inner_size
    cfg.hidden = hidden_for(cfg.P)
    cfg.P_actual = inner_size(cfg.hidden)
    return cfg


def _problem(cfg: Config, T: int):
    from .tasks.bench_problem import hyper_cleaning_mlp
    return hyper_cleaning_mlp(N=cfg.N, hidden=cfg.hidden, T=T, batch=cfg.batch, n_val=cfg.n_val,
                              seed=cfg.seed, dtype=getattr(torch, cfg.dtype), device=cfg.device)


# ---------------------------------------------------------------------------------------------
# One measurement
# ---------------------------------------------------------------------------------------------
def _call(label: str, problem, alpha, options: dict, track: bool):
    """One call; returns the Cost (wall time, and peak memory when ``track``)."""
    from . import hypergrad, unroll
    from .cost import Cost, measure
    device = alpha[next(iter(alpha))].device
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    if label == FLOOR:
        from .bench_targets import plain_loop
        cost = Cost()
        with measure(cost, device, track):
            plain_loop(problem, alpha)
        cost.inner_steps = problem.T
        return cost, None
    if label == "torchopt":
        cost = Cost()
        with measure(cost, device, track):
            grad, _ = torchopt_rmd(problem, alpha)
        return cost, grad
    res = hypergrad(problem, alpha, _BY_LABEL[label].method, track_memory=track, **options)
    return res.cost, res.grad


class Runner:
    """Runs (label, T) configurations once each, caching results for every section."""

    def __init__(self, cfg: Config, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.rows: dict[tuple[str, int], dict] = {}
        self.log = log
        self._problems: dict[int, tuple] = {}

    def problem(self, T: int):
        if T not in self._problems:
            self._problems = {T: _problem(self.cfg, T)}  # keep one horizon alive at a time
        return self._problems[T]

    # projections ---------------------------------------------------------------------------
    def _previous(self, label: str, T: int) -> dict | None:
        done = [r for (l, t), r in self.rows.items() if l == label and t < T and r["status"] == "ok"]
        return max(done, key=lambda r: r["T"]) if done else None

    def _projection(self, label: str, T: int) -> tuple[float | None, float | None]:
        prev = self._previous(label, T)
        if prev is not None:
            mem = prev["peak_mem_bytes"]
            growth = _BY_LABEL[label].mem_growth if label in _BY_LABEL else 0.0
            return (prev["time_s"] * T / prev["T"],
                    None if mem is None else mem * (T / prev["T"]) ** growth)
        if label == FLOOR:
            return None, None
        fg = self.rows.get(("fg2u", T))
        if label == "fmd" and fg is not None and fg["status"] == "ok":  # same vmapped code path
            return fg["time_s"] * self.cfg.N / self.cfg.b, None
        floor = self.rows.get((FLOOR, T))
        if floor is None or floor["status"] != "ok":
            return None, None
        return _BY_LABEL[label].prior(self.cfg) * floor["time_s"], None

    # the measurement -------------------------------------------------------------------------
    def measure(self, label: str, T: int) -> dict:
        key = (label, T)
        if key in self.rows:
            return self.rows[key]
        cfg = self.cfg
        variant = _BY_LABEL.get(label)
        options = variant.options(T, cfg) if variant else {}
        row = {c: None for c in COLUMNS}
        row.update(label=label, method=variant.method if variant else FLOOR,
                   options=json.dumps(options, sort_keys=True), T=T, P=cfg.P_actual, N=cfg.N,
                   b=(variant.directions(cfg) or None) if variant else None, device=cfg.device,
                   dtype=cfg.dtype, status="ok", note="")
        self.rows[key] = row
        try:
            self._measure_into(row, label, T, options)
        except Exception as e:  # a failed run is reported, never fatal to the benchmark
            from .errors import MemoryBudgetError
            oom = isinstance(e, (MemoryBudgetError, MemoryError, torch.OutOfMemoryError))
            row["status"] = "skipped" if oom else "error"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            row["note"] = (f"{'skipped: ' if oom else ''}{type(e).__name__}: {msg}")[:300]
            for c in ("time_s", "time_min_s", "time_max_s", "peak_mem_bytes", "peak_mem_mib"):
                row[c] = None
        self._ratios(row)
        return row

    def _skip(self, row, why: str) -> None:
        row["status"], row["note"] = "skipped", why

    def _measure_into(self, row: dict, label: str, T: int, options: dict) -> None:
        cfg = self.cfg
        if label == "torchopt" and torchopt_available() is None:
            return self._skip(row, "not measured: torchopt not installed")
        est_t, est_mem = self._projection(label, T)
        row["est_time_s"] = est_t
        free = available_bytes(self.device)
        if label == "fmd":
            el = torch.empty((), dtype=getattr(torch, cfg.dtype)).element_size()
            need = 3 * cfg.N * cfg.P_actual * el
            if need > 0.8 * free:
                return self._skip(row, f"skipped: needs {need / GiB:.1f} GiB "
                                       f"(N·P = {cfg.N:,}·{cfg.P_actual:,}; {free / GiB:.1f} GiB free)")
        if label != FLOOR and est_t is not None and est_t > cfg.budget_s:
            return self._skip(row, f"skipped: projected {est_t:.0f} s per call > budget {cfg.budget_s:g} s")
        if est_mem is not None and est_mem > 0.8 * free:
            return self._skip(row, f"skipped: needs ~{est_mem / GiB:.1f} GiB (projected from smaller T; "
                                   f"{free / GiB:.1f} GiB free)")
        problem, alpha = self.problem(T)
        notes = []
        # time: warm-up, then the median of untracked repeats
        warmed = self._previous(label, T) is not None or (
            label == "fmd" and self.rows.get(("fg2u", T), {}).get("status") == "ok")
        if warmed and est_t is not None and est_t > 2.0:
            row["warmup"] = "earlier T"
        else:
            cost, _ = _call(label, problem, alpha, options, track=False)
            row["warmup"] = f"{cost.wall_time_s:.3g}s"
            if cost.wall_time_s > cfg.budget_s and label != FLOOR:
                notes.append(f"warm-up took {cost.wall_time_s:.0f} s > budget; timed once")
        times, floors, spent = [], [], 0.0
        for _ in range(cfg.repeats):
            if label != FLOOR:  # a floor run right before each repeat: ratios robust to load drift
                floors.append(_call(FLOOR, problem, alpha, {}, track=False)[0].wall_time_s)
            cost, _ = _call(label, problem, alpha, options, track=False)
            times.append(cost.wall_time_s)
            spent += cost.wall_time_s
            if spent + times[-1] > cfg.budget_s / 2:
                break
        if len(times) < cfg.repeats:
            notes.append(f"{len(times)}/{cfg.repeats} repeats (budget)")
        row.update(time_s=statistics.median(times), time_min_s=min(times), time_max_s=max(times),
                   n_repeats=len(times))
        if floors:
            row["floor_time_s"] = statistics.median(floors)
        # memory: one tracked run
        cost, grad = _call(label, problem, alpha, options, track=True)
        row.update(peak_mem_bytes=cost.peak_memory_bytes, memory_method=cost.memory_method,
                   peak_mem_mib=None if cost.peak_memory_bytes is None else cost.peak_memory_bytes / MiB,
                   inner_steps=cost.inner_steps, jvps=cost.jvps, vjps=cost.vjps, hvps=cost.hvps,
                   outer_grads=cost.outer_grads, solver_calls=cost.solver_calls)
        if label == "torchopt":
            notes.append(self._agreement(problem, alpha, grad))
        row["note"] = "; ".join(n for n in notes if n)

    def _agreement(self, problem, alpha, grad) -> str:
        from . import hypergrad
        ref = hypergrad(problem, alpha, "rmd").grad
        num = sum(float((grad[k] - ref[k]).norm() ** 2) for k in ref) ** 0.5
        den = sum(float(ref[k].norm() ** 2) for k in ref) ** 0.5
        return f"rel. diff. to metagrad rmd {num / max(den, 1e-30):.1e}"

    def _ratios(self, row: dict) -> None:
        floor = self.rows.get((FLOOR, row["T"]))
        if floor is None or floor["status"] != "ok":
            return
        if row["floor_time_s"] is None:
            row["floor_time_s"] = floor["time_s"]
        row["floor_mem_bytes"] = floor["peak_mem_bytes"]
        if row["time_s"] is not None and row["floor_time_s"]:
            row["time_ratio"] = row["time_s"] / row["floor_time_s"]
            if row["b"]:
                row["time_ratio_per_direction"] = row["time_ratio"] / row["b"]
        if row["peak_mem_bytes"] is not None and floor["peak_mem_bytes"]:
            row["mem_ratio"] = row["peak_mem_bytes"] / floor["peak_mem_bytes"]


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------
def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)
    except ImportError:  # pragma: no cover
        class _Null:
            def update(self, n=1): ...
            def set_postfix_str(self, s): ...
            def close(self): ...
        return _Null()


def _run_configs(runner: Runner, configs: list[tuple[str, int]], desc: str) -> None:
    bar = _progress(len(configs), desc)
    try:
        for label, T in configs:
            bar.set_postfix_str(f"{label} T={T}")
            runner.measure(label, T)
            bar.update(1)
    finally:
        bar.close()


def run_sweep(runner: Runner) -> None:
    cfg = runner.cfg
    configs = []
    for T in cfg.T:
        configs.append((FLOOR, T))
        configs += [(m, T) for m in cfg.methods]
    _run_configs(runner, configs, "sweep")


def run_vmap_vs_loop(runner: Runner) -> dict:
    T = runner.cfg.compare_T
    _run_configs(runner, [(FLOOR, T), ("fg2u", T), ("fg2u-loop", T)], "vmap vs loop")
    v, l = runner.rows[("fg2u", T)], runner.rows[("fg2u-loop", T)]
    out = {"T": T, "b": runner.cfg.b, "vmap_s": v["time_s"], "loop_s": l["time_s"],
           "note": "; ".join(x for x in (v["note"], l["note"]) if x)}
    out["speedup"] = (l["time_ratio"] / v["time_ratio"]) if v["time_ratio"] and l["time_ratio"] else None
    return out


def run_torchopt(runner: Runner) -> dict:
    T = runner.cfg.compare_T
    version = torchopt_available()
    if version is None:
        return {"T": T, "version": None, "note": "not measured: torchopt not installed"}
    _run_configs(runner, [(FLOOR, T), ("rmd", T), ("torchopt", T)], "rmd vs torchopt")
    r, o = runner.rows[("rmd", T)], runner.rows[("torchopt", T)]
    # each time over its own interleaved floor runs, so that load drift between the rows cancels
    ratio = r["time_ratio"] / o["time_ratio"] if r["time_ratio"] and o["time_ratio"] else None
    return {"T": T, "version": version, "rmd_s": r["time_s"], "torchopt_s": o["time_s"],
            "ratio": ratio, "rmd_mem": r["peak_mem_bytes"], "torchopt_mem": o["peak_mem_bytes"],
            "note": "; ".join(x for x in (r["note"], o["note"]) if x)}


def _dist_worker(cfg_dict: dict, T: int, repeats: int) -> dict:
    """Runs in each process of :func:`metagrad.distributed.launch`: times fg2u with the global
    b sharded over the ranks (barriers around each call, so the slowest rank counts)."""
    import torch.distributed as dist
    from . import hypergrad
    cfg = Config(**cfg_dict)
    rank = dist.get_rank()
    if cfg.device.startswith("cuda"):
        cfg.device = f"cuda:{rank}"
        torch.cuda.set_device(rank)
    problem, alpha = _problem(cfg, T)
    opts = {"b": cfg.b, "chunk": 32, "seed": cfg.seed}
    hypergrad(problem, alpha, "fg2u", track_memory=False, **opts)  # warm-up
    times = []
    for _ in range(repeats):
        dist.barrier()
        if cfg.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = hypergrad(problem, alpha, "fg2u", track_memory=False, **opts)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    return {"rank": rank, "times": times, "threads": torch.get_num_threads(),
            "grad_norm": float(res.grad["logit"].norm())}


def run_distributed(runner: Runner) -> dict:
    from .distributed import launch
    cfg = runner.cfg
    T = cfg.compare_T
    out = {"T": T, "b": cfg.b, "runs": []}
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and torch.cuda.device_count() < 2:
        out["note"] = "not measured: 2 processes on CUDA need 2 GPUs"
        return out
    backend = "nccl" if dev.type == "cuda" else "gloo"
    cfg_dict = {k: v for k, v in cfg.__dict__.items()}
    runs = [(1, 1), (2, 1)] + ([(1, 2)] if dev.type == "cpu" and not cfg.quick else [])
    bar = _progress(len(runs), "distributed")
    try:
        for nprocs, threads in runs:
            bar.set_postfix_str(f"{nprocs} proc x {threads} thread")
            t0 = time.perf_counter()
            try:
                res = launch(_dist_worker, nprocs, cfg_dict, T, max(cfg.repeats, 2), backend=backend,
                             threads_per_process=threads)
                times = [max(r["times"][i] for r in res) for i in range(len(res[0]["times"]))]
                out["runs"].append({"nprocs": nprocs, "threads": threads, "time_s": statistics.median(times),
                                    "times": times, "wall_with_spawn_s": time.perf_counter() - t0})
            except Exception as e:
                out["runs"].append({"nprocs": nprocs, "threads": threads, "time_s": None,
                                    "error": f"{type(e).__name__}: {str(e)[:200]}"})
            bar.update(1)
    finally:
        bar.close()
    by = {(r["nprocs"], r["threads"]): r["time_s"] for r in out["runs"]}
    if by.get((1, 1)) and by.get((2, 1)):
        out["speedup"] = by[(1, 1)] / by[(2, 1)]
    if by.get((1, 2)) and by.get((2, 1)):
        out["speedup_vs_1proc_2threads"] = by[(1, 2)] / by[(2, 1)]
    return out


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def _fmt_time(r) -> str:
    if r["status"] != "ok":
        return "skipped" if r["status"] == "skipped" else "error"
    s = f"{r['time_s']:.3g}s"
    return s + (f" ({r['time_ratio']:.2f}x)" if r["time_ratio"] is not None and r["label"] != FLOOR else "")


def _fmt_mem(r) -> str:
    if r["status"] != "ok" or r["peak_mem_bytes"] is None:
        return "-" if r["status"] == "ok" else r["status"]
    s = f"{r['peak_mem_bytes'] / MiB:.3g}MiB"
    return s + (f" ({r['mem_ratio']:.2f}x)" if r["mem_ratio"] is not None and r["label"] != FLOOR else "")


def pivot_tables(df):
    """Two wide tables (rows: estimators, columns: T): time with ratio, memory with ratio."""
    import pandas as pd
    order = [FLOOR] + [v.label for v in VARIANTS]
    df = df.copy()
    df["_o"] = df["label"].map({l: i for i, l in enumerate(order)})
    df = df.sort_values(["_o", "T"])
    time_t = df.assign(v=df.apply(_fmt_time, axis=1)).pivot_table(
        index="label", columns="T", values="v", aggfunc="first", sort=False)
    mem_t = df.assign(v=df.apply(_fmt_mem, axis=1)).pivot_table(
        index="label", columns="T", values="v", aggfunc="first", sort=False)
    return time_t.fillna(""), mem_t.fillna("")


def _ok(rows, label):
    return {T: r for (l, T), r in rows.items() if l == label and r["status"] == "ok"}


def _why_missing(rows, label, T) -> str:
    r = rows.get((label, T))
    if r is None:
        return f"{label} at T={T} not run"
    note = r["note"] if r["note"].startswith(r["status"]) else f"{r['status']}: {r['note']}"
    return f"{label} at T={T} {note}"


def targets_table(runner: Runner | None, vl: dict | None, dist_: dict | None, topt: dict | None):
    """The issue's targets, with the measured value and met / missed / not measured."""
    import pandas as pd
    rows = runner.rows if runner else {}
    T_all = sorted(runner.cfg.T) if runner else []
    Tmin, Tmax = (T_all[0], T_all[-1]) if T_all else (None, None)
    out = []

    def add(target, threshold, value, met, detail=""):
        out.append({"target": target, "threshold": threshold,
                    "measured": "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else value),
                    "met": met, "detail": detail})

    def verdict(value, ok):
        return "not measured" if value is None else ("met" if ok else "MISSED")

    def mem_flat(label, limit=1.1):
        ok = _ok(rows, label)
        lo, hi = Tmin, Tmax
        name = f"{label} mem(T={hi})/mem(T={lo})"
        if lo in ok and hi in ok and ok[lo]["peak_mem_bytes"]:
            v = ok[hi]["peak_mem_bytes"] / ok[lo]["peak_mem_bytes"]
            return add(name, f"<= {limit}", v, verdict(v, v <= limit))
        measured = sorted(T for T in ok if ok[T]["peak_mem_bytes"])
        partial = ""
        if len(measured) >= 2:
            a, b = measured[0], measured[-1]
            partial = (f"partial: mem(T={b})/mem(T={a}) = "
                       f"{ok[b]['peak_mem_bytes'] / ok[a]['peak_mem_bytes']:.3g}; ")
        missing = hi if hi not in ok else lo
        add(name, f"<= {limit}", None, "not measured", partial + _why_missing(rows, label, missing))

    def time_ratio(label, limit, per_direction=False):
        ok = _ok(rows, label)
        key = "time_ratio_per_direction" if per_direction else "time_ratio"
        vals = {T: r[key] for T, r in ok.items() if r[key] is not None}
        name = f"{label} time{' per direction' if per_direction else ''} / floor"
        if not vals:
            return add(name, f"<= {limit}", None, "not measured", _why_missing(rows, label, Tmax))
        T = max(vals)
        detail = "at largest measured T; all: " + ", ".join(f"T={t}: {v:.2f}" for t, v in sorted(vals.items()))
        add(f"{name} (T={T})", f"<= {limit}", vals[T], verdict(vals[T], vals[T] <= limit), detail)

    if runner is not None and any(l == "fg2u" for (l, _) in rows):
        mem_flat("fg2u")
        okf, okr = _ok(rows, "fg2u"), _ok(rows, "rmd")
        name = f"fg2u mem / rmd mem (T={Tmax})"
        if Tmax in okf and Tmax in okr and okr[Tmax]["peak_mem_bytes"]:
            v = okf[Tmax]["peak_mem_bytes"] / okr[Tmax]["peak_mem_bytes"]
            add(name, "<= 0.1", v, verdict(v, v <= 0.1))
        else:
            common = sorted(set(okf) & set(okr))
            partial = ""
            if common:
                t = common[-1]
                partial = (f"partial: at T={t} {okf[t]['peak_mem_bytes'] / okr[t]['peak_mem_bytes']:.3g}; ")
            miss = "fg2u" if Tmax not in okf else "rmd"
            add(name, "<= 0.1", None, "not measured", partial + _why_missing(rows, miss, Tmax))
    for label, lim in (("greedy", 2.5), ("t1t2", 1.15)):
        if runner is not None and any(l == label for (l, _) in rows):
            mem_flat(label)
            time_ratio(label, lim)
    if runner is not None and any(l == "fg2u" for (l, _) in rows):
        time_ratio("fg2u", 4.0, per_direction=True)
    if vl is not None:
        v = vl.get("speedup")
        add(f"fg2u b={vl['b']}: loop time / vmap time (T={vl['T']})", ">= 2", v, verdict(v, v is not None and v >= 2),
            "" if v else vl.get("note", ""))
    if topt is not None:
        v = topt.get("ratio")
        if topt.get("version") is None:
            add("rmd time / TorchOpt time", "<= 1.0", None, "not measured: torchopt not installed")
        else:
            add(f"rmd time / TorchOpt time (T={topt['T']}, torchopt {topt['version']})", "<= 1.0", v,
                verdict(v, v is not None and v <= 1.0), topt.get("note", ""))
    if dist_ is not None:
        v = dist_.get("speedup")
        detail = dist_.get("note", "") or "; ".join(
            f"{r['nprocs']}p x {r['threads']}t: " + (f"{r['time_s']:.3g}s" if r.get("time_s") else r.get("error", "?"))
            for r in dist_["runs"])
        if dist_.get("speedup_vs_1proc_2threads"):
            detail += f"; 2p x 1t vs 1p x 2t: {dist_['speedup_vs_1proc_2threads']:.2f}x"
        add(f"fg2u b={dist_['b']}: 1-process / 2-process time (T={dist_['T']}, 1 thread each)", ">= 1.7",
            v, verdict(v, v is not None and v >= 1.7), detail)
    return pd.DataFrame(out, columns=["target", "threshold", "measured", "met", "detail"])


# ---------------------------------------------------------------------------------------------
# Provenance and the entry point
# ---------------------------------------------------------------------------------------------
def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except Exception:
        return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def provenance(cfg: Config) -> dict:
    import pandas as pd
    from . import __version__
    dev = torch.device(cfg.device)
    return {
        "config": {k: v for k, v in cfg.__dict__.items() if k != "extra"},
        "problem": {"name": "hyper_cleaning_mlp", "hidden": cfg.hidden, "P": cfg.P_actual, "N": cfg.N,
                    "batch": cfg.batch, "n_val": cfg.n_val or cfg.batch, "input_dim": 784, "classes": 10},
        "metagrad": __version__, "torch": torch.__version__, "pandas": pd.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "device": cfg.device, "device_name": _device_name(dev),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torchopt": torchopt_available(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
    }


def run_benchmark(cfg: Config, *, echo: bool = True) -> dict:
    """Run the selected sections; write the CSV and its JSON provenance; return the tables."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_benchmark(cfg, echo)
    finally:
        torch.set_num_threads(threads)


def _run_benchmark(cfg: Config, echo: bool) -> dict:
    import pandas as pd
    prov = provenance(cfg)
    prov["loadavg_start"] = _loadavg()
    t0 = time.perf_counter()
    runner = Runner(cfg)
    vl = dist_ = topt = None
    if "sweep" in cfg.sections:
        run_sweep(runner)
    if "vmap-vs-loop" in cfg.sections:
        vl = run_vmap_vs_loop(runner)
    if "torchopt" in cfg.sections:
        topt = run_torchopt(runner)
    if "distributed" in cfg.sections:
        dist_ = run_distributed(runner)
    df = pd.DataFrame(list(runner.rows.values()), columns=COLUMNS).sort_values(["T"], kind="stable")
    targets = targets_table(runner, vl, dist_, topt)
    prov.update(loadavg_end=_loadavg(), total_wall_s=time.perf_counter() - t0,
                vmap_vs_loop=vl, distributed=dist_, torchopt_comparison=topt,
                targets=targets.to_dict(orient="records"))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    out.with_suffix(".json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    time_t, mem_t = pivot_tables(df) if len(df) else (pd.DataFrame(), pd.DataFrame())
    if echo:
        with pd.option_context("display.width", 250, "display.max_columns", 50,
                               "display.max_colwidth", 120):
            print(f"\nmetagrad benchmark: hyper-cleaning MLP, P={cfg.P_actual:,} (H={cfg.hidden}), "
                  f"N={cfg.N:,}, batch={cfg.batch}, {cfg.device} {prov['device_name']}, "
                  f"torch {torch.__version__}, {torch.get_num_threads()} threads")
            print("\nWall time (median), ratio to the floor (plain inner run of T steps):")
            print(time_t.to_string())
            print(f"\nPeak memory ({df['memory_method'].dropna().iloc[0] if df['memory_method'].notna().any() else '-'}),"
                  f" ratio to the floor:")
            print(mem_t.to_string())
            notes = df[df["note"].astype(bool)][["label", "T", "status", "note"]]
            if len(notes):
                print("\nNotes:")
                print(notes.to_string(index=False))
            print("\nTargets:")
            print(targets.to_string(index=False))
            print(f"\nwrote {out} and {out.with_suffix('.json')} "
                  f"({prov['total_wall_s']:.0f} s; load average {prov['loadavg_start']} -> {prov['loadavg_end']})")
    return {"rows": df, "time": time_t, "memory": mem_t, "targets": targets, "provenance": prov}


def main(argv=None) -> int:
    cfg = _config(argv)
    if cfg.extra["targets"]:
        from .bench_targets import run_targets
        quick = cfg.extra["targets_quick"]
        out = cfg.out if "--out" in (argv or sys.argv[1:]) else None
        run_targets(quick=quick, rounds=cfg.extra["rounds"], out=out)
        return 0
    run_benchmark(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
