r"""(FG)²U Figure 1: memory against the horizon T, and time against memory budget and processes.

Three measurements on the benchmark's hyper-cleaning problem
(:func:`metagrad.tasks.bench_problem.hyper_cleaning_mlp`):

* :func:`memory_vs_T` — peak memory of each estimator against T (``track_memory=True``: the CUDA
  allocator peak on a GPU, live tensor bytes on CPU; deterministic on CPU);
* :func:`time_vs_chunk` — (FG)²U's wall time per hypergradient against the number of directions
  pushed through the loop at once (``chunk``: the memory budget), with its peak memory;
* :func:`time_vs_processes` — (FG)²U's wall time with its b directions sharded over 1..k
  processes (``torch.distributed``, gloo on CPU), beside the ideal 1/k line.
"""
from __future__ import annotations

import time

import pandas as pd
import torch

from .. import distributed
from ..estimators import hypergrad
from .bench_problem import hyper_cleaning_mlp

__all__ = ["METHODS", "PAPER_FIGURE1", "memory_vs_T", "time_vs_chunk", "time_vs_processes",
           "plot_memory", "plot_time", "flat_md", "chunk_md", "processes_md"]

#: estimator name -> options used in the memory sweep
METHODS = {
    "rmd": {}, "trgu": {"K": 5}, "hessian-free": {}, "neumann": {"K": 5}, "greedy": {"gamma": 0.9},
    "t1t2": {}, "fo": {}, "fg2u": {"b": 8, "chunk": 8, "seed": 0},
}

#: Shen et al. 2024, Figure 1 (values read off the plot, ≈): CIFAR-100, IPC 50, on GPUs.
PAPER_FIGURE1 = pd.DataFrame([
    {"method": "trgu", "memory_GiB": 2.9, "s_per_step": 0.75},
    {"method": "hessian-free", "memory_GiB": 2.85, "s_per_step": 0.75},
    {"method": "fg2u (1 GPU, small budget)", "memory_GiB": 1.2, "s_per_step": 37.0},
    {"method": "fg2u (1 GPU, 35 GiB budget)", "memory_GiB": 35.0, "s_per_step": 9.0},
    {"method": "fg2u (8 GPUs)", "memory_GiB": None, "s_per_step": 1.5},
])


def _problem(cfg: dict, T: int, device="cpu"):
    return hyper_cleaning_mlp(N=cfg["N"], hidden=cfg["hidden"], T=T, batch=cfg["batch"],
                              seed=cfg.get("seed", 0), device=device)


def memory_vs_T(cfg: dict, Ts, methods: dict | None = None, device="cpu") -> pd.DataFrame:
    """One row per (method, T): peak memory in MiB and the cost counts of one hypergradient."""
    rows = []
    for T in Ts:
        problem, alpha = _problem(cfg, T, device)
        for name, options in (methods or METHODS).items():
            res = hypergrad(problem, alpha, name, track_memory=True, **options)
            rows.append({"method": name, "T": T, "peak_MiB": res.cost.peak_memory_bytes / 2**20,
                         "jvps": res.cost.jvps, "vjps": res.cost.vjps, "hvps": res.cost.hvps,
                         "memory_method": res.cost.memory_method})
    return pd.DataFrame(rows)


def _timed(problem, alpha, repeats: int, **options) -> float:
    hypergrad(problem, alpha, "fg2u", **options)  # warm-up
    times = []
    for _ in range(repeats):
        times.append(hypergrad(problem, alpha, "fg2u", **options).cost.wall_time_s)
    return float(sorted(times)[len(times) // 2])


def time_vs_chunk(cfg: dict, T: int, b: int, chunks, *, repeats: int = 3, device="cpu") -> pd.DataFrame:
    """fg2u with ``b`` directions, ``chunk`` of them at a time: median seconds and peak MiB."""
    problem, alpha = _problem(cfg, T, device)
    rows = []
    for c in chunks:
        mem = hypergrad(problem, alpha, "fg2u", b=b, chunk=c, seed=0, track_memory=True)
        rows.append({"chunk": c, "seconds": _timed(problem, alpha, repeats, b=b, chunk=c, seed=0),
                     "peak_MiB": mem.cost.peak_memory_bytes / 2**20})
    loop = _timed(problem, alpha, repeats, b=b, seed=0, vectorize=False)
    rows.append({"chunk": "python loop", "seconds": loop, "peak_MiB": float("nan")})
    return pd.DataFrame(rows)


def _sharded_fg2u(cfg: dict, T: int, b: int, repeats: int):
    """Runs in every process of a group: this rank's share of the b directions, all-reduced."""
    problem, alpha = _problem(cfg, T)
    hypergrad(problem, alpha, "fg2u", b=b, seed=0)
    times = []
    for _ in range(repeats):
        torch.distributed.barrier()
        start = time.perf_counter()
        hypergrad(problem, alpha, "fg2u", b=b, seed=0)
        times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2])


def time_vs_processes(cfg: dict, T: int, b: int, processes, *, repeats: int = 3) -> pd.DataFrame:
    """fg2u wall time with its b directions sharded over k processes (one thread each)."""
    rows = []
    for k in processes:
        per_rank = distributed.launch(_sharded_fg2u, k, cfg, T, b, repeats, threads_per_process=1)
        rows.append({"processes": k, "seconds": max(per_rank)})
    df = pd.DataFrame(rows)
    df["ideal_seconds"] = df["seconds"].iloc[0] / df["processes"]
    df["speedup"] = df["seconds"].iloc[0] / df["seconds"]
    return df


def plot_memory(df: pd.DataFrame):
    """Peak memory against T, one line per estimator (log-log)."""
    import seaborn as sns
    from metagrad.figures import legend_outside, subplots
    fig, axes = subplots(panel=(5.4, 3.4))
    ax = axes[0, 0]
    sns.lineplot(data=df, x="T", y="peak_MiB", hue="method", style="method", markers=True,
                 dashes=False, ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="horizon T (inner steps)", ylabel="peak memory (MiB)",
           title="Peak memory of one hypergradient against T")
    legend_outside(fig, where="right")
    return fig


def plot_time(chunks: pd.DataFrame, procs: pd.DataFrame):
    """(FG)²U time against the memory budget (chunk) and against the number of processes."""
    from metagrad.figures import legend_outside, subplots
    fig, axes = subplots(2, panel=(3.6, 2.9))
    a, b = axes[0]
    vec = chunks[chunks["chunk"] != "python loop"]
    a.plot(vec["peak_MiB"], vec["seconds"], "o-")
    for _, r in vec.iterrows():  # labels beside the points, inside the frame
        a.annotate(f"chunk={r['chunk']}", (r["peak_MiB"], r["seconds"]), fontsize=9,
                   xytext=(6, 4), textcoords="offset points")
    a.margins(x=0.25, y=0.2)
    a.set(xlabel="peak memory (MiB)", ylabel="seconds per hypergradient (s)",
          title="(FG)²U: time against\nmemory budget")
    b.plot(procs["processes"], procs["seconds"], "o-", label="measured")
    b.plot(procs["processes"], procs["ideal_seconds"], "k--", label="ideal 1/k")
    b.set(xlabel="processes", ylabel="seconds per hypergradient (s)", xticks=list(procs["processes"]),
          title="(FG)²U: time against\nprocesses")
    legend_outside(fig, where="below")
    return fig


# ------------------------------------------------------------------------------ the page's prose
#: the estimators that store no trajectory, with the names the page gives them
NO_TRAJECTORY = {"greedy": "greedy", "t1t2": "T1−T2", "fo": "first-order",
                 "hessian-free": "Hessian-free", "neumann": "Neumann"}


def flat_md(memory: pd.DataFrame, *, methods: dict | None = None, tolerance: float = 1.1) -> str:
    """Whether the estimators that store no trajectory (``methods``: name -> label) are flat in T:
    the largest ratio of a method's peak memory at the longest horizon to its peak at the
    shortest, and "flat" only when that ratio stays below ``tolerance``."""
    methods = methods or NO_TRAJECTORY
    m = memory[memory.method.isin(list(methods))].sort_values("T")
    ratio = m.groupby("method").peak_MiB.agg(lambda x: x.iloc[-1] / x.iloc[0])
    worst = ratio.idxmax()
    names = ", ".join(methods[k] for k in methods if k in ratio.index)
    names = names[0].upper() + names[1:]
    T0, T1 = m["T"].min(), m["T"].max()
    if ratio.max() < tolerance:
        return (f"{names} are flat in *T* as well (they store no trajectory): from *T* = {T0} to {T1} "
                f"their peak memory changes by a factor {ratio.max():.3f} at most ({methods[worst]}).")
    return (f"Of {names}, which store no trajectory, {methods[worst]}'s peak memory still grows by a factor "
            f"{ratio.max():.2f} from *T* = {T0} to {T1}.")


def chunk_md(chunks: pd.DataFrame) -> str:
    """(FG)²U's memory and time against the number of directions pushed through the loop at
    once (the numeric ``chunk`` rows): the factors between the smallest and largest chunk and
    whether memory rises and time falls at every step."""
    c = chunks[pd.to_numeric(chunks.chunk, errors="coerce").notna()].copy()
    c["chunk"] = c.chunk.astype(int)
    c = c.sort_values("chunk")
    mem_up = bool((c.peak_MiB.diff().dropna() > 0).all())
    time_down = bool((c.seconds.diff().dropna() < 0).all())
    m = c.peak_MiB.iloc[-1] / c.peak_MiB.iloc[0]
    t = c.seconds.iloc[0] / c.seconds.iloc[-1]
    lo, hi = c.chunk.iloc[0], c.chunk.iloc[-1]
    text = (f"From `chunk` = {lo} to {hi} directions pushed through the loop at once, (FG)²U's peak memory "
            f"{'grows' if m > 1 else 'changes'} by a factor {m:.1f}"
            f"{'' if mem_up else ' (not at every step)'} and its time per hypergradient ")
    if t > 1:
        text += (f"falls by a factor {t:.1f}{'' if time_down else ' (not at every step)'}: "
                 "the trade the paper's Figure 1 shows.")
    else:
        text += f"does not fall (factor {1 / t:.2f} slower): the paper's trade does not show at this scale."
    return text


def processes_md(procs: pd.DataFrame) -> str:
    """The speed-up of sharding (FG)²U's directions over the most processes measured, worded by
    its value (faster, or not, than one process)."""
    r = procs.sort_values("processes").iloc[-1]
    k, s = int(r.processes), float(r.speedup)
    text = f"With {k} processes the speed-up over one is {s:.2f} (ideal {k}): "
    if s > 1:
        return text + ("sharding pays off even on this small CPU problem, less than linearly (spawn and "
                       "all-reduce overhead)." if s < 0.9 * k else "near-linear scaling, as the paper reports.")
    return text + ("on this small CPU problem the spawn and all-reduce overhead outweighs the split; "
                   "the paper reports near-linear scaling on GPUs.")
