r"""The speed targets: every contender against a plain PyTorch loop, interleaved in one process.

``python -m metagrad.bench --quick`` (about 5 minutes of CPU time on one core) or
``python -m metagrad.bench --targets`` (all horizons). The problem is
:func:`metagrad.tasks.bench_problem.hyper_cleaning_mlp`: a tanh MLP 784-256-10 (P = 203,530),
full batch of 256 examples whose 256 example-weight logits are α, float32, one thread.

**Protocol.** For each (T, optimiser) the contenders run in ``--rounds`` (≥ 5) rounds; within a
round each runs once, in an order rotated from round to round, after a warm-up call and a
``gc.collect()``. Time is the *process CPU time* of the call (``time.process_time``: time spent
waiting for a busy core does not count). A ratio is computed per round against the reference
measured in the same round, and reported as the median [min–max] over rounds; a target is *met*
when the median is within its threshold in every configuration. Peak memory comes from one
call under :class:`metagrad.cost.LiveTensorTracker` (deterministic).

**Contenders.** ``floor``: :func:`plain_loop`, the same inner problem written as a plain
PyTorch loop (``torch.autograd.grad``, no graph). ``run``: :func:`metagrad.unroll.run`.
``hand``: :func:`handwritten_rmd`, reverse mode written by hand (``create_graph=True`` then one
backward). ``rmd``, ``greedy``, ``t1t2``: :func:`metagrad.hypergrad` with ``validate=False``
(the one-time input check is left out, as it is from the hand-written loops). ``torchopt``:
the same unroll with TorchOpt's functional SGD (with momentum for the momentum
configurations), only when ``torchopt`` can be imported (an optional extra; otherwise the
output says why it was not measured).
"""
from __future__ import annotations

import gc
import statistics
import time
from typing import Callable

import torch

from ._tree import tree_detach

__all__ = ["plain_loop", "handwritten_rmd", "interleave", "paired_ratios", "summary", "Target"]


def _opt_numbers(problem) -> tuple[float, float | None]:
    opt = problem.optimizer
    return float(opt.lr), (float(opt.momentum) if hasattr(opt, "momentum") else None)


def plain_loop(problem, alpha):
    """The floor: ``problem``'s T inner steps (SGD or heavy-ball momentum with numeric
    hyperparameters) as a plain PyTorch loop — ``torch.autograd.grad``, no graph kept."""
    lr, mu = _opt_numbers(problem)
    w0 = problem.w0(alpha)
    names, a = list(w0), tree_detach(alpha)
    w = [w0[k].detach() for k in names]
    v = [torch.zeros_like(x) for x in w] if mu is not None else None
    for t in range(problem.T):
        w = [x.requires_grad_() for x in w]
        loss = problem.inner_loss(dict(zip(names, w)), a, problem.batch(t))
        g = torch.autograd.grad(loss, w)
        with torch.no_grad():
            if mu is None:
                w = [x - lr * gi for x, gi in zip(w, g)]
            else:
                v = [mu * vi + gi for vi, gi in zip(v, g)]
                w = [x - lr * vi for x, vi in zip(w, v)]
    return dict(zip(names, w))


def handwritten_rmd(problem, alpha):
    """``(dF/dα, F)`` by reverse mode written by hand: the unrolled loop under autograd with
    ``create_graph=True`` for every inner gradient, then one backward pass."""
    lr, mu = _opt_numbers(problem)
    w0 = problem.w0(alpha)
    names, keys = list(w0), list(alpha)
    a = {k: alpha[k].detach().requires_grad_() for k in keys}
    w = [w0[k].detach().requires_grad_() for k in names]
    v = [torch.zeros_like(x) for x in w] if mu is not None else None
    for t in range(problem.T):
        loss = problem.inner_loss(dict(zip(names, w)), a, problem.batch(t))
        g = torch.autograd.grad(loss, w, create_graph=True)
        if mu is None:
            w = [x - lr * gi for x, gi in zip(w, g)]
        else:
            v = [mu * vi + gi for vi, gi in zip(v, g)]
            w = [x - lr * vi for x, vi in zip(w, v)]
    F = problem.outer_loss(dict(zip(names, w)), a, problem.outer_batch)
    grads = torch.autograd.grad(F, [a[k] for k in keys])
    return {k: g.detach() for k, g in zip(keys, grads)}, F.detach()


def cpu_time(fn: Callable[[], object]) -> float:
    """Process CPU seconds of one call of ``fn`` (after a ``gc.collect()``, not timed)."""
    gc.collect()
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def interleave(contenders: dict[str, Callable[[], object]], rounds: int, *,
               warmup: bool = True, progress: Callable[[str], None] | None = None) -> dict[str, list]:
    """CPU times of every contender over ``rounds`` rounds, one call each per round, the order
    rotated each round (so that drifting load falls on every contender alike)."""
    names = list(contenders)
    if warmup:
        for n in names:
            contenders[n]()
    times: dict[str, list] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(cpu_time(contenders[n]))
        if progress is not None:
            progress(f"round {r + 1}/{rounds}")
    return times


def paired_ratios(times: dict[str, list], num: str, den: str) -> list[float]:
    """Per-round ratios ``num / den`` (both measured in the same round)."""
    return [a / b for a, b in zip(times[num], times[den])]


def summary(values: list[float]) -> dict:
    """``{median, min, max, n}`` of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt(s: dict | None, digits: int = 2) -> str:
    """``median [min–max]`` (scientific notation for values below 0.01)."""
    if not s:
        return "-"
    spec = f".{digits}f" if abs(s["median"]) >= 0.01 or s["median"] == 0 else ".1e"
    return f"{s['median']:{spec}} [{s['min']:{spec}}–{s['max']:{spec}}]"


class Target:
    """A ratio target checked over several configurations: met when every configuration's
    median is within the threshold (``<=`` or, with ``at_least``, ``>=``)."""

    def __init__(self, name: str, threshold: float, *, at_least: bool = False):
        self.name, self.threshold, self.at_least = name, threshold, at_least
        self.cases: list[tuple[str, dict]] = []
        self.note = ""

    def add(self, where: str, values: list[float] | dict) -> None:
        self.cases.append((where, values if isinstance(values, dict) else summary(values)))

    def ok(self, s: dict) -> bool:
        return s["median"] >= self.threshold if self.at_least else s["median"] <= self.threshold

    def row(self) -> dict:
        rel = ">=" if self.at_least else "<="
        if not self.cases:
            return {"target": self.name, "threshold": f"{rel} {self.threshold:g}", "met": "not measured",
                    "worst": "-", "cases": self.note}
        worst = (min if self.at_least else max)(self.cases, key=lambda c: c[1]["median"])
        return {"target": self.name, "threshold": f"{rel} {self.threshold:g}",
                "met": "met" if all(self.ok(s) for _, s in self.cases) else "MISSED",
                "worst": f"{fmt(worst[1])} ({worst[0]})",
                "cases": "; ".join(f"{w}: {fmt(s)}" for w, s in self.cases)
                + (f"; {self.note}" if self.note else "")}


# ---------------------------------------------------------------------------------------------
# The sections
# ---------------------------------------------------------------------------------------------
HIDDEN, N, BATCH = 256, 256, 256


def bench_problem(T: int, optimizer: str, *, hidden: int = HIDDEN, dtype=torch.float32):
    """The targets' problem: ``(problem, alpha)`` with SGD or momentum (μ = 0.9)."""
    from .tasks.bench_problem import hyper_cleaning_mlp
    return hyper_cleaning_mlp(N=N, hidden=hidden, T=T, batch=BATCH, lr=0.1, dtype=dtype,
                              momentum=0.9 if optimizer == "momentum" else None)


def _hg(method: str, problem, alpha, **options):
    from . import hypergrad
    return lambda: hypergrad(problem, alpha, method, validate=False, **options)


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of tensor storages ``fn`` allocates (:class:`~metagrad.cost.LiveTensorTracker`)."""
    from .cost import LiveTensorTracker
    gc.collect()
    with LiveTensorTracker() as tracker:
        fn()
    return tracker.peak


def time_section(T_list, optimizers, rounds: int, log) -> tuple[list, dict]:
    """Run / rmd / greedy / t1t2 against the floor and the hand-written unroll."""
    from .bench import torchopt_available, torchopt_rmd
    from . import unroll
    raw, by_config = [], {}
    for opt in optimizers:
        for T in T_list:
            problem, alpha = bench_problem(T, opt)
            c = {"floor": lambda: plain_loop(problem, alpha),
                 "run": lambda: unroll.run(problem, alpha),
                 "hand": lambda: handwritten_rmd(problem, alpha),
                 "rmd": _hg("rmd", problem, alpha),
                 "greedy": _hg("greedy", problem, alpha),
                 "t1t2": _hg("t1t2", problem, alpha)}
            if torchopt_available():
                c["torchopt"] = lambda: torchopt_rmd(problem, alpha)
            where = f"T={T} {opt}"
            times = interleave(c, rounds, progress=lambda s: log(f"  {where}: {s}"))
            mem = {k: peak_bytes(c[k]) for k in ("hand", "rmd") + (("torchopt",) if "torchopt" in c else ())}
            by_config[where] = {"times": times, "mem": mem}
            for label, ts in times.items():
                raw += [{"section": "time", "config": where, "label": label, "round": i, "cpu_s": x}
                        for i, x in enumerate(ts)]
            raw += [{"section": "memory", "config": where, "label": k, "round": 0, "peak_bytes": v}
                    for k, v in mem.items()]
            log(f"  {where}: " + ", ".join(f"{k} {statistics.median(v):.3g}s" for k, v in times.items()))
    return raw, by_config


def time_targets(by_config: dict) -> list[Target]:
    run = Target("plain run (unroll.run) / floor", 1.05)
    rmd = Target("rmd / hand-written autograd unroll, time", 1.0)
    rmd_mem = Target("rmd / hand-written autograd unroll, peak memory", 1.0)
    topt = Target("rmd / TorchOpt, time", 1.0)
    topt_mem = Target("rmd / TorchOpt, peak memory", 1.0)
    greedy = Target("greedy / floor", 2.5)
    t1t2 = Target("t1t2 / floor", 1.15)
    for where, d in by_config.items():
        ts, mem = d["times"], d["mem"]
        run.add(where, paired_ratios(ts, "run", "floor"))
        rmd.add(where, paired_ratios(ts, "rmd", "hand"))
        greedy.add(where, paired_ratios(ts, "greedy", "floor"))
        t1t2.add(where, paired_ratios(ts, "t1t2", "floor"))
        rmd_mem.add(where, [mem["rmd"] / mem["hand"]])
        if "torchopt" in ts:
            topt.add(where, paired_ratios(ts, "rmd", "torchopt"))
            topt_mem.add(where, [mem["rmd"] / mem["torchopt"]])
    from .bench import torchopt_missing
    for t in (topt, topt_mem):
        if not t.cases:
            t.note = f"not measured: torchopt {torchopt_missing() or 'was not run'}"
    return [run, rmd, rmd_mem, topt, topt_mem, greedy, t1t2]


def fg2u_section(T_fg: int, T_rmd: int, b: int, rounds: int, log) -> tuple[list, list[Target], dict]:
    """fg2u with ``memory_budget`` = rmd's peak at ``T_rmd`` / 4 against the unbounded chunk."""
    from . import hypergrad
    from .estimators.forward import chunk_for_budget
    problem, alpha = bench_problem(T_fg, "sgd")
    rmd_peak = peak_bytes(_hg("rmd", problem.replace(T=T_rmd), alpha))
    budget = rmd_peak // 4
    chunk = chunk_for_budget(problem, alpha, b, budget)
    c = {"fg2u-unbounded": _hg("fg2u", problem, alpha, b=b, seed=0),
         "fg2u-budget": _hg("fg2u", problem, alpha, b=b, seed=0, memory_budget=budget)}
    times = interleave(c, rounds, progress=lambda s: log(f"  fg2u T={T_fg}: {s}"))
    peaks = {k: peak_bytes(f) for k, f in c.items()}
    same = float((hypergrad(problem, alpha, "fg2u", b=b, seed=0, validate=False).grad["logit"]
                  - hypergrad(problem, alpha, "fg2u", b=b, seed=0, memory_budget=budget,
                              validate=False).grad["logit"]).abs().max())
    where = f"T={T_fg}, b={b}, chunk {chunk} of {b}"
    mem = Target(f"fg2u memory_budget=rmd peak/4: fg2u peak / rmd peak (rmd at T={T_rmd})", 0.25)
    mem.add(where, [peaks["fg2u-budget"] / rmd_peak])
    tim = Target("fg2u memory_budget: time / unbounded chunk", 1.5)
    tim.add(where, paired_ratios(times, "fg2u-budget", "fg2u-unbounded"))
    info = {"T": T_fg, "T_rmd": T_rmd, "b": b, "rmd_peak": rmd_peak, "budget": budget, "chunk": chunk,
            "peaks": peaks, "max_abs_diff_budget_vs_unbounded": same}
    raw = [{"section": "fg2u", "config": where, "label": k, "round": i, "cpu_s": x}
           for k, ts in times.items() for i, x in enumerate(ts)]
    raw += [{"section": "memory", "config": where, "label": k, "round": 0, "peak_bytes": v}
            for k, v in peaks.items()] + [{"section": "memory", "config": f"T={T_rmd} sgd",
                                           "label": "rmd", "round": 0, "peak_bytes": rmd_peak}]
    log(f"  fg2u: rmd peak {rmd_peak / 2**20:.1f} MiB, budget chunk {chunk}, peaks "
        + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in peaks.items()))
    return raw, [mem, tim], info


# ---------------------------------------------------------------------------------------------
# The entry point (``python -m metagrad.bench --quick`` / ``--targets``)
# ---------------------------------------------------------------------------------------------
def run_targets(*, quick: bool = True, rounds: int = 5, out: str | None = None,
                sections=("time", "fg2u", "compile"), echo: bool = True, T=None,
                optimizers=("sgd", "momentum")) -> dict:
    """Measure every target; print the table; write ``<out>.csv`` (raw per-round CPU times and
    peaks) and ``<out>.json`` (provenance, configuration, targets)."""
    import json
    import sys
    from pathlib import Path
    import pandas as pd
    from .bench import _device_name, _git, _loadavg, torchopt_available
    if rounds < 5:
        raise ValueError(f"rounds must be >= 5 (got {rounds}): ratios are medians over rounds")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if echo else (lambda s: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    T_list = list(T or ([10, 50] if quick else [10, 50, 200]))
    raw, targets, info = [], [], {}
    loadavg_start = _loadavg()
    commit, dirty = _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))
    try:
        if "time" in sections:
            log(f"time section: T={T_list}, {list(optimizers)}, {rounds} rounds")
            r, by_config = time_section(T_list, optimizers, rounds, log)
            raw += r
            targets += time_targets(by_config)
        if "fg2u" in sections:
            log("fg2u memory-budget section")
            r, tg, info["fg2u"] = fg2u_section(10 if quick else 50, 200, 32, rounds, log)
            raw += r
            targets += tg
        if "compile" in sections:
            try:
                from .bench_compile import compile_section
            except ImportError:
                t = Target("compiled transition (P <= 1e4): uncompiled / compiled time", 2.0, at_least=True)
                t.note = "not measured: no compiled transition in this version"
                targets.append(t)
            else:
                log("compile section")
                r, tg, info["compile"] = compile_section(rounds, log, quick=quick)
                raw += r
                targets += tg
    finally:
        torch.set_num_threads(threads)
    table = pd.DataFrame([t.row() for t in targets], columns=["target", "threshold", "met", "worst", "cases"])
    out = Path(out or f"results/bench/targets-{'quick' if quick else 'full'}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(raw).to_csv(out, index=False)
    prov = {
        "command": "python -m metagrad.bench " + ("--quick" if quick else "--targets"),
        "argv": sys.argv[1:], "quick": quick, "rounds": rounds, "T": T_list,
        "optimizers": list(optimizers), "sections": list(sections),
        "problem": {"name": "hyper_cleaning_mlp", "hidden": HIDDEN, "P": 784 * HIDDEN + HIDDEN + HIDDEN * 10 + 10,
                    "N": N, "batch": BATCH, "n_val": BATCH, "dtype": "float32", "lr": 0.1,
                    "momentum": 0.9},
        "timing": "process CPU time (time.process_time), contenders interleaved, order rotated per "
                  "round; ratios per round against the reference of the same round; median [min-max]",
        "torch": torch.__version__, "torch_threads": 1, "device_name": _device_name(torch.device("cpu")),
        "torchopt": torchopt_available(), "git_commit": commit, "git_dirty": dirty,
        "date_utc": __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
        .isoformat(timespec="seconds"),
        "loadavg_start": loadavg_start, "loadavg_end": _loadavg(),
        "wall_s": time.perf_counter() - t_start, "cpu_s": time.process_time() - cpu_start,
        "info": info, "targets": table.to_dict(orient="records"),
    }
    out.with_suffix(".json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    if echo:
        with pd.option_context("display.width", 250, "display.max_colwidth", 200):
            print(f"\nmetagrad speed targets: tanh MLP 784-{HIDDEN}-10 (P={prov['problem']['P']:,}), "
                  f"batch {BATCH}, α = {N} example-weight logits, float32, 1 thread, {rounds} rounds; "
                  f"ratios: median [min–max] of per-round CPU-time ratios")
            print(table[["target", "threshold", "met", "worst"]].to_string(index=False))
            print("\nPer configuration:")
            for _, r in table.iterrows():
                print(f"  {r['target']}: {r['cases']}")
            print(f"\nwrote {out} and {out.with_suffix('.json')} ({prov['wall_s']:.0f} s wall, "
                  f"{prov['cpu_s']:.0f} s CPU; load average {loadavg_start} -> {prov['loadavg_end']})")
    return {"targets": table, "raw": raw, "provenance": prov}
