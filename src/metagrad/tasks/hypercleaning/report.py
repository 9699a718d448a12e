"""Data hyper-cleaning: tables, figures and the numbers of the page's prose (pure functions of the runs)."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch.nn.functional as F

from ...report import fmt_mean_ci, mean_ci

from .setup import HyperCleaningConfig, METRICS, PAPER_TABLE
from .experiment import HyperCleaningResult, _reported, label, noise_check

# ------------------------------------------------------------------------------ presentation
def _summary(result: HyperCleaningResult) -> pd.DataFrame:
    rows = []
    for (d, p, m, g), grp in result.runs.groupby(["dataset", "p_noise", "method", "gamma"], sort=False, dropna=False):
        row = {"dataset": d, "p_noise": p, "method": m, "gamma": g, "label": grp.label.iloc[0],
               "#JVPs": int(grp["#JVPs"].iloc[0]), "seeds": len(grp),
               "chosen": m == "greedy" and result.chosen_gamma.get((d, float(p))) == g}
        for k in METRICS:
            mean, ci = mean_ci(grp[k].to_numpy(float) * (1 if k == "auroc" else 100))
            row[k], row[k + " ci"] = mean, ci
        rows.append(row)
    return pd.DataFrame(rows)


def paper_table() -> pd.DataFrame:
    """The paper's Table 2 as published (validation accuracy %, mean ± 95 % CI, 5 seeds)."""
    t = PAPER_TABLE.assign(cell=[fmt_mean_ci(m, c) for m, c in zip(PAPER_TABLE["val_acc (paper)"],
                                                                  PAPER_TABLE["ci (paper)"])])
    t["column"] = [f"{'MNIST' if d == 'mnist' else 'F-MNIST'} {p:g}" for d, p in zip(t.dataset, t.p_noise)]
    out = t.pivot(index=["method", "#JVPs (paper)"], columns="column", values="cell").reset_index()
    out["method"] = out["method"].map({"none": "no HPO (α = 0)", "t1t2": "T1−T2", "neumann": "IFT(5)",
                                       "greedy": "greedy γ=0.9"})
    order = ["no HPO (α = 0)", "T1−T2", "IFT(5)", "greedy γ=0.9"]
    out = out.set_index("method").loc[order].reset_index()
    out.columns.name = None
    return out[["method", "#JVPs (paper)", "MNIST 0.3", "MNIST 0.5", "F-MNIST 0.3", "F-MNIST 0.5"]]


def display_table(result: HyperCleaningResult, dataset: str | None = None) -> pd.DataFrame:
    """Ours (mean ± 95 % CI over seeds, accuracies in %) beside the paper's Table 2, for one
    dataset or (``None``) all. Each row's paper column is the paper's number for the same
    dataset; digits is not in the paper, so its rows show the paper's MNIST numbers for
    reference. ``*`` marks the γ chosen on validation accuracy."""
    s = _summary(result)
    if dataset is not None:
        s = s[s.dataset == dataset]
    out = []
    for _, r in s.iterrows():
        ref = "mnist" if r.dataset in ("digits", "mnist") else r.dataset
        pr = PAPER_TABLE[(PAPER_TABLE.dataset == ref) & (PAPER_TABLE.method == r.method)
                         & np.isclose(PAPER_TABLE.p_noise, r.p_noise)]
        if r.method == "greedy" and r.gamma != 0.9:
            pr = pr.iloc[0:0]
        out.append({"dataset": r.dataset, "p_noise": r.p_noise, "method": r.label + (" *" if r.chosen else ""),
                    "#JVPs (ours)": r["#JVPs"],
                    "val acc % (ours)": fmt_mean_ci(r.val_acc, r["val_acc ci"]),
                    "test acc % (ours)": fmt_mean_ci(r.test_acc, r["test_acc ci"]),
                    "AUROC (ours)": fmt_mean_ci(r.auroc, r["auroc ci"], 3),
                    "#JVPs (paper)": "" if pr.empty else str(int(pr["#JVPs (paper)"].iloc[0])),
                    "paper's data": "" if pr.empty else ref,
                    "val acc % (paper)": "" if pr.empty else
                    fmt_mean_ci(pr["val_acc (paper)"].iloc[0], pr["ci (paper)"].iloc[0])})
    return pd.DataFrame(out)


def plot_accuracy(result: HyperCleaningResult):
    """Validation and test accuracy (mean ± 95 % CI over seeds) per method, one panel per
    (dataset, p_noise); the paper's validation accuracy as black diamonds (MNIST numbers)."""
    from metagrad.figures import legend_outside, subplots
    s = _summary(result)
    panels = list(dict.fromkeys(zip(s.dataset, s.p_noise)))
    ncols = min(2, len(panels))
    fig, axes = subplots(ncols, -(-len(panels) // ncols), panel=(3.6, 3.4))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (d, p) in zip(axes.flat, panels):
        sp = s[(s.dataset == d) & (s.p_noise == p)].reset_index(drop=True)
        xs = np.arange(len(sp))
        ax.bar(xs - 0.2, sp.val_acc, 0.4, yerr=sp["val_acc ci"], capsize=2, label="validation (ours)", color="C0")
        ax.bar(xs + 0.2, sp.test_acc, 0.4, yerr=sp["test_acc ci"], capsize=2, label="test (ours)", color="C2")
        paper = PAPER_TABLE[(PAPER_TABLE.dataset == "mnist") & np.isclose(PAPER_TABLE.p_noise, p)].set_index("method")
        for x, m, g in zip(xs, sp.method, sp.gamma):
            if m in paper.index and (m != "greedy" or g == 0.9):
                ax.plot(x, paper.loc[m, "val_acc (paper)"], "kD", ms=5,
                        label="paper, MNIST (validation)" if x == xs[0] or m == "none" else None)
        ax.set_xticks(xs, [lab + (" *" if c else "") for lab, c in zip(sp.label, sp.chosen)],
                      rotation=60, ha="right")
        ax.set_title(f"{d}, p_noise = {p:g}")
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
    legend_outside(fig, where="below", ncols=3)
    return fig


def plot_curves(result: HyperCleaningResult, metric: str = "val_acc"):
    """``metric`` against outer steps (mean over seeds), one panel per (dataset, p_noise); a
    method has the same colour in every panel (panels may run different methods)."""
    from metagrad.figures import colors, legend_outside, subplots
    c = result.curves
    labels = list(dict.fromkeys(c.label)) if not c.empty else []
    pal = dict(zip(labels, colors(len(labels))))
    panels = list(dict.fromkeys(zip(c.dataset, c.p_noise))) if not c.empty else []
    ncols = min(2, max(1, len(panels)))
    fig, axes = subplots(ncols, -(-max(1, len(panels)) // ncols), panel=(3.6, 2.8))
    for ax in axes.flat[max(1, len(panels)):]:
        ax.set_visible(False)
    none = result.runs[result.runs.method == "none"].groupby(["dataset", "p_noise"])[metric].mean()
    for ax, (d, p) in zip(axes.flat, panels):
        cp = c[(c.dataset == d) & (c.p_noise == p)]
        for lab, g in cp.groupby("label", sort=False):
            m = g.groupby("step")[metric].mean()
            ax.plot(m.index, 100 * m.to_numpy() if metric != "auroc" else m.to_numpy(), lw=1.2, label=lab,
                    color=pal[lab])
        if (d, p) in none.index:
            v = none.loc[(d, p)]
            ax.axhline(100 * v if metric != "auroc" else v, color="grey", ls=":", lw=1, label="no HPO (α = 0)")
        ax.set_title(f"{d}, p_noise = {p:g}")
        ax.set_xlabel("outer step")
        ax.set_ylabel(METRICS[metric] + (" (%)" if metric != "auroc" else ""))
    if panels:
        legend_outside(fig, where="below", ncols=3)
    return fig


def plot_equal_compute(result: HyperCleaningResult, metric: str = "test_acc"):
    """The equal-compute view: each method's ``metric`` (γ of greedy as chosen) against its
    run's total hypergradient products (products per hypergradient × outer steps) and its
    outer-loop wall-clock, one row of panels per (dataset, p_noise)."""
    from metagrad.figures import quality_vs_cost
    r = _reported(result.runs, result.chosen_gamma).copy()
    r["products"] = r["#JVPs"] * r["steps"]
    r["wall_s"] = r["outer_wall_time_s"]
    r["setting"] = [f"{d}, p_noise = {p:g}" for d, p in zip(r.dataset, r.p_noise)]
    return quality_vs_cost(r, metric, ylabel=METRICS[metric] + (" (%)" if metric != "auroc" else ""),
                           panel="setting", scale=1 if metric == "auroc" else 100)


def _per_dataset(cfg: HyperCleaningConfig, describe) -> str:
    """``describe(config)`` once when every dataset shares it, else per dataset."""
    parts = {d: describe(cfg.for_dataset(d)) for d in cfg.datasets}
    if len(set(parts.values())) == 1:
        return next(iter(parts.values()))
    return "; ".join(f"{d}: {v}" for d, v in parts.items())


def _network(c: HyperCleaningConfig) -> str:
    side = (f", images pooled to {c.image_size}×{c.image_size}" if c.image_size else "") + (
        ", last layer initialised at 0" if c.head_init == "zero" else "")
    if c.model == "mlp":
        return f"MLP, one hidden layer of {c.hidden} ReLU units{side}"
    return f"CNN: 3 conv layers (3×3, stride 2) × {c.channels} channels + linear head{side}"


def setup_table(cfg: HyperCleaningConfig) -> pd.DataFrame:
    """Our settings beside the paper's (PAPERS.md B.3)."""
    sizes = "; ".join(f"{d}: {' / '.join(map(str, cfg.sizes[d]))}" for d in cfg.datasets)
    rows = [
        ("data", ", ".join(cfg.datasets) + " (MNIST: its 10 000-image test split, cut disjointly)",
         "MNIST, Fashion-MNIST"),
        ("train / validation / test", sizes, "1 000 / whole test split / — (validation = test)"),
        ("label noise p_noise", ", ".join(f"{p:g}" for p in cfg.p_noise) + " (a random other class)", "0.3, 0.5"),
        ("network", _per_dataset(cfg, _network), "3-layer CNN, 8 channels, 28×28"),
        ("inner loop", f"full-batch SGD lr {cfg.inner_lr:g}, momentum {cfg.inner_momentum:g}, T = {cfg.T}",
         "full-batch SGD lr 0.1, momentum 0.9, T = 10"),
        ("outer loop", _per_dataset(cfg, lambda c: f"Adam lr {c.outer_lr:g}, {c.steps} steps, α₀ = 0"),
         "Adam lr 0.1, 200 steps"),
        ("γ grid (greedy)", _per_dataset(cfg, lambda c: ", ".join(f"{g:g}" for g in c.gammas)),
         "0.9, 0.99, 0.999 (0.9 best)"),
        ("methods", _per_dataset(cfg, lambda c: ", ".join(label(c, m, g) for m in c.methods
                                                           for g in (c.gammas if m == "greedy" else (None,)))),
         "no HPO, T1−T2, IFT(5), greedy"),
        ("seeds", str(len(cfg.seeds)), "5"),
    ]
    return pd.DataFrame(rows, columns=["", "ours", "paper"])


def timings(result: HyperCleaningResult) -> str:
    """Mean wall time per outer step, per (dataset, method), from the result files."""
    r = result.runs[result.runs.steps > 0]
    t = (r.outer_wall_time_s / r.steps).groupby([r.dataset, r.label], sort=False).mean()
    return "\n".join(f"{d} {m}: wall time per outer step {x:.3f} s" for (d, m), x in t.items())


def facts(result: HyperCleaningResult) -> dict:
    """Numbers and sentences for the page's prose (to ``glue``)."""
    cfg = result.config
    s = _summary(result)
    out = {"n_seeds": len(cfg.seeds), "steps": _per_dataset(cfg, lambda c: str(c.steps)),
           "datasets": "; ".join(f"{d}: {_network(cfg.for_dataset(d))}" for d in cfg.datasets),
           "gammas": "; ".join(f"{d} p = {p:g}: γ = {g:g}" for (d, p), g in result.chosen_gamma.items()) or "none",
           "corrupted": "; ".join(f"{r.dataset}, p = {r.p_noise:g}: {r['corrupted fraction']:.3f}"
                                  for _, r in noise_check(result).iterrows())}
    rep = s[(s.method != "greedy") | s.chosen]
    out["comparison"] = "; ".join(
        f"{d}, p = {p:g}: " + ", ".join(f"{lab} {acc:.1f} % (AUROC {au:.3f})" for lab, acc, au in zip(g.label, g.test_acc, g.auroc))
        for (d, p), g in rep.groupby(["dataset", "p_noise"], sort=False))
    out["differences"] = "; ".join(f"{d}: {_difference(cfg.for_dataset(d))}" for d in cfg.datasets)
    out["baselines_vs_paper"] = _baselines_vs_paper(rep)
    out["still_rising"] = still_rising(result)
    beat = [f"{d}, p = {p:g}: " + (", ".join(
        f"{r.label} {r.test_acc - g[g.method == 'none'].test_acc.iloc[0]:+.1f} points (AUROC {r.auroc:.3f})"
        for r in g[g.method != "none"].itertuples()) or "no method ran")
        for (d, p), g in rep.groupby(["dataset", "p_noise"], sort=False) if (g.method == "none").any()]
    out["over_none"] = "; ".join(beat) or "no α = 0 run to compare with"
    out["spread"] = "; ".join(
        f"{d}: {g.groupby(['p_noise', 'method', 'gamma'], dropna=False).test_acc.std().mean() * 100:.1f} points "
        f"between seeds, {g.groupby(['p_noise', 'method', 'gamma'], dropna=False).test_acc.mean().groupby('p_noise').std().mean() * 100:.1f} "
        "between methods" for d, g in _reported(result.runs, result.chosen_gamma).groupby("dataset", sort=False))
    for row in rep.itertuples():
        key = f"{row.dataset}_{round(100 * row.p_noise)}_{row.method}"
        out[f"test_{key}"] = round(row.test_acc, 1)
        out[f"auroc_{key}"] = round(row.auroc, 3)
    return out


def _difference(c: HyperCleaningConfig) -> str:
    """How one dataset's setting differs from Table 2's (3-layer CNN, 8 channels, 28×28, 200 steps)."""
    diffs = []
    if c.model != "cnn":
        diffs.append(f"a one-hidden-layer MLP ({c.hidden} units) instead of the 3-layer CNN")
    elif c.channels != 8:
        diffs.append(f"the 3-layer CNN with {c.channels} channels instead of 8")
    if c.image_size:
        diffs.append(f"images pooled to {c.image_size}×{c.image_size}")
    if c.head_init == "zero":
        diffs.append("the last layer initialised at 0 (the paper does not state its initialisation)")
    if c.steps != 200:
        diffs.append(f"{c.steps} outer steps instead of 200")
    if tuple(c.gammas) != (0.9, 0.99, 0.999):
        diffs.append("γ in {" + ", ".join(f"{g:g}" for g in c.gammas) + "} only")
    return ", ".join(diffs) if diffs else "Table 2's network and schedule"


def _baselines_vs_paper(rep: pd.DataFrame) -> str:
    """Our T1−T2 and IFT(5) test accuracy beside the paper's validation accuracy, per setting
    (the paper's MNIST numbers stand beside the digits rows)."""
    parts = []
    for (d, p), g in rep.groupby(["dataset", "p_noise"], sort=False):
        ref = "mnist" if d in ("digits", "mnist") else d
        cells = []
        for m in ("t1t2", "neumann"):
            ours = g[g.method == m]
            paper = PAPER_TABLE[(PAPER_TABLE.dataset == ref) & (PAPER_TABLE.method == m)
                                & np.isclose(PAPER_TABLE.p_noise, p)]
            if not ours.empty and not paper.empty:
                cells.append(f"{ours.label.iloc[0]} {ours.test_acc.iloc[0]:.1f} % (paper "
                             f"{paper['val_acc (paper)'].iloc[0]:.1f} %)")
        if cells:
            parts.append(f"{d}, p = {p:g}: " + ", ".join(cells))
    return "; ".join(parts) or "no baseline ran"


def still_rising(result: HyperCleaningResult, frac: float = 0.2) -> str:
    """Per dataset, the methods whose mean validation accuracy over seeds rose over the last
    ``frac`` of the outer loop (a sign that more outer steps could change the order)."""
    c = result.curves
    if c.empty:
        return "no curves"
    parts = []
    for d, g in c.groupby("dataset", sort=False):
        last = g.step.max()
        m = g.groupby(["label", "p_noise", "step"], sort=False).val_acc.mean().reset_index()
        rising = sorted({lab for (lab, p), h in m.groupby(["label", "p_noise"], sort=False)
                         if h[h.step == last].val_acc.iloc[0] - h[h.step >= (1 - frac) * last].val_acc.iloc[0] > 0.005})
        parts.append(f"{d}: " + (", ".join(rising) if rising else "none")
                     + f" (rise > 0.5 points over the last {round(frac * last)} of {last} steps, mean over seeds)")
    return "; ".join(parts)
