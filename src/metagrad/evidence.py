"""Read a page's result files into one tidy table of runs, the evidence its claims are judged on.

``runs(page, results_dir)`` returns one row per run: ``arm`` (the registry's name for the
method), ``seed`` (the pairing unit), the setting keys the registry's ``where`` selects on
(``dataset``, ``p_noise``, ``ipc``, ``T``, ``equation``, ...), the metrics, and the divergence
verdict of :func:`metagrad.divergence.detect` (``diverged``, ``diverged_reason``,
``diverged_at``). Pages whose claims are single measurements (``greedy_toy``,
``fg2u_gradient_quality``, ``fg2u_memory_time``) produce the metrics those claims name.
Nothing here trains or evaluates a model: only stored JSON is read.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .divergence import detect
from .results import repo_root

__all__ = ["runs", "results_dir", "ADAPTERS"]


def results_dir(page: str, scale: str = "book") -> Path:
    return repo_root() / "results" / page / scale


def _load(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _div(loss, **kw) -> dict:
    d = detect(loss, **kw)
    return {"diverged": d.diverged, "diverged_reason": d.reason, "diverged_at": d.at_step}


def _hypercleaning(folder: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(folder.glob("*_s[0-9]*.json")):
        p = _load(f)
        c, r = p["config"], p["result"]
        gamma = (c.get("options") or {}).get("gamma")
        arm = c["method"] if gamma is None else f"greedy{gamma:g}"
        rows.append({"arm": arm, "seed": c["seed"], "dataset": c["dataset"], "p_noise": c["p_noise"],
                     "gamma": gamma, **{m: r.get(m) for m in ("val_acc", "test_acc", "auroc")},
                     **_div(r.get("outer_loss", []), n_classes=10, steps=r.get("steps"),
                            final_metrics=[r.get("val_acc", 0.0)])})
    df = pd.DataFrame(rows)
    return _chosen_gamma(df, by=["dataset", "p_noise"], select="val_acc")


def _chosen_gamma(df: pd.DataFrame, by: list[str], select: str) -> pd.DataFrame:
    """Add arm ``greedy``: per setting, the γ whose mean ``select`` metric over seeds is largest
    (the paper tunes γ the same way); the chosen γ is in column ``gamma``."""
    if df.empty:
        return df
    g = df[df.arm.str.startswith("greedy") & df.gamma.notna()]
    if g.empty:
        return df
    means = g.groupby([*by, "gamma"])[select].mean().reset_index()
    best = means.loc[means.groupby(by)[select].idxmax(), [*by, "gamma"]]
    chosen = g.merge(best, on=[*by, "gamma"]).assign(arm="greedy")
    return pd.concat([df, chosen], ignore_index=True)


def _fewshot(folder: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(folder.glob("*__seed[0-9]*.json")):
        p = _load(f)
        c, r = p["config"], p["result"]
        gamma = (c.get("options") or {}).get("gamma")
        arm = c["method"] if gamma is None else f"greedy{gamma:g}"
        rows.append({"arm": arm, "seed": c["seed"], "shot": c["shot"], "way": c["way"],
                     "cell": c.get("cell", "base"), "gamma": gamma,
                     **{m: r.get(m) for m in ("test_acc", "select_acc", "oneshot_acc")},
                     **_div(r.get("curve", []), n_classes=c["way"], steps=r.get("steps"),
                            final_metrics=[r.get("test_acc", 0.0)])})
    return _chosen_gamma(pd.DataFrame(rows), by=["shot", "way", "cell"], select="select_acc")


_DC_ARMS = {"fg2u": "fg2u", "trgu": "trgu", "hessian-free": "hessian-free", "neumann": "neumann",
            "rgu-full": "rgu", "greedy": "greedy", "random-real": "random-real"}


def _condensation(folder: Path) -> pd.DataFrame:
    rows, whole = [], []
    for f in sorted(folder.glob("*.json")):
        p = _load(f)
        c, r = p["config"], p["result"]
        parts = f.stem.split("_")
        if "whole-data" in f.stem:
            whole.append({"arm": "whole-data", "seed": c["seed"], "dataset": parts[0],
                          "test_acc": r["test_acc"], "diverged": False, "diverged_reason": None,
                          "diverged_at": None})
            continue
        slug = parts[-1]
        hist = (r.get("history") or {}).get("outer_loss", [])
        row = {"arm": _DC_ARMS.get(slug, slug), "seed": c["seed"], "dataset": parts[0],
               "ipc": c["setup"]["ipc"], "test_acc": r["test_acc"], "test_acc_T": r.get("test_acc_T"),
               **_div(hist, n_classes=10, steps=r.get("steps"), final_metrics=[r["test_acc"]])}
        rows.append(row)
        # runs evaluated along the way (eval_every): arm "<arm>@<step>" is the run stopped after
        # that many outer steps: its test accuracy then, and divergence judged on its losses so far
        steps = r.get("steps") or max(1, len(hist))
        for e in r.get("evals") or []:
            upto = hist[:max(1, round(len(hist) * e["step"] / steps))]
            rows.append({**row, "arm": f"{row['arm']}@{e['step']}", "test_acc": e["test_acc"],
                         "test_acc_T": e["test_acc_T"],
                         **_div(upto, n_classes=10, steps=e["step"], final_metrics=[e["test_acc"]])})
    df = pd.DataFrame(rows)
    if whole and not df.empty:  # the whole-data reference does not depend on the IPC
        w = pd.DataFrame(whole)
        df = pd.concat([df] + [w.assign(ipc=ipc) for ipc in sorted(df.ipc.unique())], ignore_index=True)
    return df


_TP_ARMS = {"trgu-alone": "cheap-alone", "fg2u-alone": "fg2u-alone", "trgu-fg2u": "two-phase"}


def _two_phase(folder: Path) -> pd.DataFrame:
    """Metric ``test_acc_T`` at the common budget: the last evaluation of each run within the
    shortest of the schedules' mean wall times (``test_acc_T_end``: at the end of the run)."""
    runs, evals = [], []
    for f in sorted(folder.glob("*_seed[0-9]*.json")):
        p = _load(f)
        c, r = p["config"], p["result"]
        slug = f.stem.split("_")[-2]
        if slug not in _TP_ARMS:
            continue
        arm = _TP_ARMS[slug]
        hist = (r.get("history") or {}).get("outer_loss", [])
        runs.append({"arm": arm, "seed": c["seed"], "wall_time_s": r["wall_time_s"],
                     "test_acc_T_end": r["test_acc_T"],
                     **_div(hist, n_classes=10, steps=r.get("steps"), final_metrics=[r["test_acc_T"]])})
        evals += [{"arm": arm, "seed": c["seed"], **e} for e in r.get("evals", [])]
    df = pd.DataFrame(runs)
    if df.empty:
        return df
    budget = df.groupby("arm").wall_time_s.mean().min()
    ev = pd.DataFrame(evals)
    ev = ev[ev.wall_time_s <= budget].sort_values("step").groupby(["arm", "seed"]).last()
    df["test_acc_T"] = [ev.test_acc_T.get((a, s), math.nan) for a, s in zip(df.arm, df.seed)]
    df["budget_s"] = budget
    return df


def _pde(folder: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(folder.glob("*_s[0-9]*.json")):
        p = _load(f)
        r = p["result"]
        traj = r.get("trajectory") or {}
        rows.append({"arm": r["solver"], "seed": r["seed"], "equation": r["equation"],
                     "eps_nu": r["eps_nu"], "eps_u": r["eps_u"],
                     **_div([x for x in traj.get("outer_loss", []) if x is not None], final_metrics=[r["eps_nu"], r["eps_u"]])})
    return pd.DataFrame(rows)


def _toy(folder: Path) -> pd.DataFrame:
    """Per (T, method): ``final_loss``; ``cosine_common``: the mean cosine with the exact
    hypergradient over the first k outer steps, k the shortest prefix over the horizon's
    methods on which every cosine is defined (so all methods are averaged over the same steps);
    ``k_common``; ``largest_increase`` of the loss over one outer step."""
    rows = []
    for f in sorted(folder.glob("T*_s[0-9]*.json")):
        p = _load(f)
        c, r = p["config"], p["result"]
        key = f.stem.split("_")[1]
        cos = np.asarray(r["cosine"], dtype=float)
        loss = np.asarray(r["loss"], dtype=float)
        finite = np.isfinite(cos)
        prefix = int(np.argmin(finite)) if not finite.all() else len(cos)
        rows.append({"arm": key, "seed": c["seed"], "T": c["T"], "final_loss": float(loss[-1]),
                     "largest_increase": float(np.max(np.diff(loss), initial=0.0)),
                     "_cos": cos, "_prefix": prefix, **_div(loss)})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    paper = ~df.arm.str.startswith("fg2u")  # the common steps are those of the paper's methods
    k = df[paper].groupby("T")._prefix.min()
    df["k_common"] = df["T"].map(k)
    df["cosine_common"] = [float(np.mean(c[:kk])) if kk > 0 else math.nan
                           for c, kk in zip(df._cos, df.k_common)]
    return df.drop(columns=["_cos", "_prefix"])


def _gradient_quality(folder: Path) -> pd.DataFrame:
    """One row per (estimator, unit = checkpoint × problem) with ``cosine``; (FG)²U's arms are
    ``fg2u-b<b>``. Page-level measurements go into rows of arm ``page``."""
    from .tasks.condensation import fg2u_expected_cosine
    from .stats import mean_ci
    q = _load(folder / "quality.json")["result"]
    rows = []
    for c in q["cosines"]:
        arm = c["estimator"] if c["b"] == 0 else f"fg2u-b{c['b']}"
        rows.append({"arm": arm, "seed": c["checkpoint"] * 1000 + c["problem"], "b": c["b"],
                     "cosine": float(np.mean(c["cos"])), "_all": c["cos"], "diverged": False,
                     "diverged_reason": None, "diverged_at": None})
    df = pd.DataFrame(rows)
    excess = []
    for b, g in df[df.b > 0].groupby("b"):
        allc = np.concatenate([np.asarray(x, float) for x in g._all])
        m, lo, hi = mean_ci(allc)
        pred = fg2u_expected_cosine(q["N"], int(b))
        excess.append(max(0.0, abs(m - pred) - max(hi - m, 0.05 * pred)))
    costs = {(c["estimator"], c["b"]): c["peak_memory_bytes"] for c in q["costs"]}
    fg1 = [v for (e, b), v in costs.items() if e.startswith("(FG)") and b == 1]
    page = {"arm": "page", "seed": 0, "lemma31_max_excess": max(excess) if excess else math.nan,
            "peak_memory_ratio_fg2u_trgu": (fg1[0] / costs[("TRGU K=2", 0)]) if fg1 else math.nan,
            "diverged": False, "diverged_reason": None, "diverged_at": None}
    return pd.concat([df.drop(columns="_all"), pd.DataFrame([page])], ignore_index=True)


def _memory_time(folder: Path) -> pd.DataFrame:
    mem = pd.DataFrame(_load(folder / "memory.json")["result"])
    chunks = pd.DataFrame(_load(folder / "chunks.json")["result"])
    procs = pd.DataFrame(_load(folder / "processes.json")["result"])

    def growth(method):
        s = mem[mem.method == method].set_index("T").peak_MiB.sort_index()
        return float(s.iloc[-1] / s.iloc[0])
    tmax = mem["T"].max()
    at = mem[mem["T"] == tmax].set_index("method").peak_MiB
    vec = chunks[chunks.chunk.apply(lambda x: isinstance(x, (int, float)))].copy()
    vec = vec.sort_values("chunk")
    procs = procs.sort_values("processes")
    page = {"arm": "page", "seed": 0, "fg2u_memory_growth": growth("fg2u"),
            "rgu_memory_growth": growth("rmd"), "fg2u_over_rgu_memory": float(at["fg2u"] / at["rmd"]),
            "time_largest_over_smallest_chunk": float(vec.seconds.iloc[-1] / vec.seconds.iloc[0]),
            "time_most_over_one_process": float(procs.seconds.iloc[-1] / procs.seconds.iloc[0]),
            "diverged": False, "diverged_reason": None, "diverged_at": None}
    for m in mem.method.unique():
        page[f"memory_growth_{m}"] = growth(m)
    return pd.DataFrame([page])


def _lm(folder: Path) -> pd.DataFrame:
    from .tasks.lm import evidence_rows  # the page's own reader (arms rmd-d<depth>, fg2u-d<depth>)
    return evidence_rows(folder)


ADAPTERS = {"fg2u_lm": _lm, "greedy_hypercleaning": _hypercleaning, "greedy_fewshot": _fewshot,
            "fg2u_condensation": _condensation, "fg2u_two_phase": _two_phase, "fg2u_pde": _pde,
            "greedy_toy": _toy, "fg2u_gradient_quality": _gradient_quality,
            "fg2u_memory_time": _memory_time, "greedy_features": _memory_time}
#: pages whose evidence is another page's result files
SOURCES = {"greedy_features": "fg2u_memory_time"}


def runs(page: str, folder: str | Path | None = None, scale: str = "book") -> pd.DataFrame:
    """The tidy table of ``page``'s runs from the JSON files in ``folder`` (default
    ``results/<page>/<scale>``); an empty table when there is none."""
    folder = Path(folder) if folder is not None else results_dir(SOURCES.get(page, page), scale)
    if page not in ADAPTERS:
        return pd.DataFrame()
    if not folder.is_dir() or not any(folder.glob("*.json")):
        return pd.DataFrame()
    return ADAPTERS[page](folder)
