"""Few-shot meta-learning: tables, figures and the numbers of the page's prose (pure functions of the runs)."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from ...report import fmt_mean_ci

from .setup import FewShotConfig, METHODS, _LABELS
from .experiment import FewShotResult, reported

# ------------------------------------------------------------------------------ presentation
def setting_label(shot: int, way: int, cell: str = "base") -> str:
    """``"1-shot 5-way"``, or ``"1-shot 5-way, cell long"`` for a cell other than the base."""
    return f"{shot}-shot {way}-way" + ("" if cell == "base" else f", cell {cell}")


def cell_table(cfg: FewShotConfig) -> pd.DataFrame:
    """One row per extra cell: its setting and the fields it changes from the base settings."""
    rows = []
    for c in cfg.cells:
        over = {k: v for k, v in c.items() if k not in ("name", "shot", "way")}
        rows.append({"cell": c["name"], "setting": f"{c['shot']}-shot {c['way']}-way",
                     "differs from the base settings": "; ".join(
                         f"{k} {_words(v)} (base {_words(getattr(cfg, k))})" for k, v in over.items()) or "nothing"})
    return pd.DataFrame(rows, columns=["cell", "setting", "differs from the base settings"])


def _words(v) -> str:
    return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def display_table(result: FewShotResult, shot: int) -> pd.DataFrame:
    """The rows of one shot, formatted: ours (mean ± CI %) beside the paper's; a ``cell``
    column when the page runs extra cells."""
    t = result.table[result.table.shot == shot]
    f = lambda m, h: fmt_mean_ci(m, h) if not pd.isna(m) else ""
    cells = {"cell": t.cell} if (t.cell != "base").any() else {}
    out = pd.DataFrame({
        "way": t.way, **cells, "method (ours)": t.ours.fillna(""), "#JVPs (ours)": _ints(t["#JVPs (ours)"]),
        "acc % (ours)": [f(m, h) for m, h in zip(t["acc (ours)"], t["ci (ours)"])],
        "20-way runs % (ours)": [f(m, h) for m, h in zip(t["20-way runs (ours)"], t["ci runs"])],
        "method (paper)": t["paper label"].fillna(""), "#JVPs (paper)": _ints(t["#JVPs (paper)"]),
        "acc % (paper)": [f(m, h) for m, h in zip(t["acc (paper)"], t["ci (paper)"])]})
    return out.reset_index(drop=True)


def _ints(col) -> list[str]:
    return ["" if pd.isna(x) else str(int(x)) for x in col]


def plot_comparison(result: FewShotResult, shot: int):
    """Bar chart per (way, cell): our accuracy (mean ± 95 % CI) beside the paper's, for one shot."""
    from metagrad.figures import legend_outside, subplots
    t = result.table[result.table.shot == shot]
    panels = list(dict.fromkeys(zip(t.way, t.cell)))
    methods = [m for m in METHODS if m in set(t.method)]
    ncols = min(2, len(panels))
    fig, axes = subplots(ncols, -(-len(panels) // ncols), panel=(3.6, 3.0))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (way, cell) in zip(axes.flat, panels):
        tw = t[(t.way == way) & (t.cell == cell)].set_index("method")
        xs = np.arange(len(methods))
        for off, col, ci, lab, color in ((-0.2, "acc (ours)", "ci (ours)", "ours", "C0"),
                                         (0.2, "acc (paper)", "ci (paper)", "paper", "C1")):
            vals = [tw[col].get(m, np.nan) for m in methods]
            errs = [tw[ci].get(m, np.nan) for m in methods]
            ax.bar(xs + off, vals, 0.4, yerr=errs, label=lab, color=color, capsize=2)
        ax.axhline(100 / way, color="grey", lw=0.8, ls=":")
        ax.set_xticks(xs, [_LABELS[m] for m in methods], rotation=60, ha="right")
        ax.set_title(setting_label(shot, way, cell))
        ax.set_ylabel("held-out accuracy (%)")
    legend_outside(fig, where="below", ncols=2)
    return fig


def expected_cost(cfg: FewShotConfig, method: str) -> int:
    """Products per hypergradient each estimator is defined to need (JVPs + VJPs + HVPs):
    FO 0, T1−T2 1 VJP, IFT(K) K+1 HVPs, greedy T VJPs, full RMD T VJPs, (FG)²U T·b JVPs."""
    return {"init": 0, "fo": 0, "t1t2": 1, "neumann": cfg.neumann_K + 1, "greedy": cfg.T, "rmd": cfg.T,
            "fg2u": cfg.T * cfg.fg2u_b}[method]


def cost_check(result: FewShotResult) -> pd.DataFrame:
    """Measured products per hypergradient (from the cost records) against :func:`expected_cost`."""
    t = result.table.dropna(subset=["ours"])
    exp = [expected_cost(result.configs.get((s, w, c), result.config), m)
           for s, w, c, m in zip(t.shot, t.way, t.cell, t.method)]
    return pd.DataFrame({"shot": t.shot, "way": t.way, "cell": t.cell, "method": t.ours,
                         "#JVPs measured": t["#JVPs (ours)"].astype(int),
                         "#JVPs by definition": exp, "ok": t["#JVPs (ours)"].to_numpy() == np.array(exp)}
                        ).reset_index(drop=True)


def timings(result: FewShotResult) -> str:
    """One line per (setting, method): mean wall time per outer step over seeds."""
    t = result.table.dropna(subset=["ours"])
    return "\n".join(f"{setting_label(s, w, c)} {m}: wall time per outer step {x:.3f} s"
                      for s, w, c, m, x in zip(t.shot, t.way, t.cell, t.ours, t["s per outer step"]) if x > 0)


def setup_table(cfg: FewShotConfig) -> pd.DataFrame:
    """Our settings beside the paper's (Table 3 protocol, PAPERS.md B.3)."""
    rows = [
        ("data", "Omniglot (see the data note) or digits", "Omniglot, 1 623 characters"),
        ("image size", f"{cfg.image_size}×{cfg.image_size}", "28×28"),
        ("held-out classes", f"{cfg.val_fraction:.0%}", "20 %"),
        ("settings (shot, way)", ", ".join(f"{s}-shot {w}-way" for s, w in cfg.settings),
         "1-shot 2/3/5/10-way; 10-shot 3/4/5-way"),
        ("network", f"{cfg.depth} conv layers × {cfg.width} channels; α = layers "
                    f"{', '.join(str(i) for i in range(2, cfg.depth + 1, 2))}", "6 conv layers × 32; α = layers 2, 4, 6"),
        ("query examples per class", str(cfg.n_query), "10"),
        ("tasks per outer step", str(cfg.meta_batch), "not stated"),
        ("inner loop", f"full-batch SGD lr {cfg.inner_lr:g}, momentum {cfg.inner_momentum:g}, T = {cfg.T}",
         "full-batch SGD lr 0.1, momentum 0.9, T = 5"),
        ("outer loop", f"Adam lr {cfg.outer_lr:g}, {cfg.outer_steps} steps", "Adam lr 1e-3, 2 000 steps"),
        ("γ grid (greedy)", ", ".join(f"{g:g}" for g in cfg.gammas), "0.9, 0.99, 0.999"),
        ("seeds", str(len(cfg.seeds)), "5"),
        ("evaluation episodes", f"{cfg.n_select} choose γ, {cfg.n_test} reported", "not stated"),
    ] + ([("extra cells", ", ".join(c["name"] for c in cfg.cells), "")] if cfg.cells else [])  # settings: cell_table
    return pd.DataFrame(rows, columns=["", "ours", "paper"])


def summary(result: FewShotResult) -> dict:
    """Scale-independent facts for the page's prose (strings and numbers to ``glue``)."""
    cfg = result.config
    return {
        "settings": ", ".join(setting_label(s, w, c) for s, w, c, _ in cfg.cell_configs()),
        "n_seeds": len(cfg.seeds), "outer_steps": cfg.outer_steps, "width": cfg.width, "depth": cfg.depth,
        "gammas": ", ".join(f"{g:g} at {setting_label(*k)}" for k, g in result.chosen_gamma.items()) or "none",
        "data_note": result.data_note,
        "oneshot": _oneshot_sentence(result),
        "at_chance": _chance_sentence(result),
        "greedy_time": greedy_time_sentence(result.table),
    }


def greedy_time_sentence(table: pd.DataFrame) -> str:
    """Greedy's wall time per outer step against full RMD's, per setting (mean over seeds):
    both need T products through the inner step, so the ratio measures what greedy's extra T
    query-loss gradients cost. Worded from the ratio."""
    t = table.dropna(subset=["ours"])
    parts = []
    for (shot, way, cell), g in t.groupby(["shot", "way", "cell"], sort=False):
        g = g.set_index("method")
        if not {"greedy", "rmd"} <= set(g.index):
            continue
        tg, tr = float(g.loc["greedy", "s per outer step"]), float(g.loc["rmd", "s per outer step"])
        if not (tg > 0 and tr > 0):
            continue
        r = tg / tr
        what = (f"if the whole difference is theirs, the extra query gradients take "
                f"{100 * (1 - 1 / r):.0f} % of greedy's wall time" if r > 1
                else "the extra query gradients do not make greedy slower")
        parts.append(f"at {setting_label(shot, way, cell)} {g.loc['greedy', 'ours']} takes {tg:.3f} s per outer "
                     f"step against {tr:.3f} s for {g.loc['rmd', 'ours']}, {r:.2f} times as long; {what}")
    if not parts:
        return "No full RMD run at this scale to compare greedy's wall time with."
    return ("Against full RMD, which needs the same T products through the inner step: "
            + "; ".join(parts) + " (means over seeds).")


def _chance_sentence(result: FewShotResult, margin: float = 5.0) -> str:
    """Methods whose reported held-out accuracy ends within ``margin`` points of chance."""
    t = result.table.dropna(subset=["ours"])
    near = t[t["acc (ours)"] < 100 / t.way + margin]
    return "; ".join(f"{m} at {setting_label(s, w, c)} ({a:.1f} %, chance {100 / w:.1f} %)"
                     for m, s, w, c, a in zip(near.ours, near.shot, near.way, near.cell, near["acc (ours)"])) or "none"


def _oneshot_sentence(result: FewShotResult) -> str:
    t = result.table.dropna(subset=["ours"])
    t = t[t["20-way runs (ours)"].notna()]
    if t.empty:
        return "not evaluated (no all_runs.zip)"
    order = [(s, w, c) for s, w, c, _ in result.config.cell_configs()]  # the page's first setting first
    have = set(zip(t.shot, t.way, t.cell))
    shot, way, cell = next((k for k in order if k in have), (t.shot.iloc[0], t.way.iloc[0], t.cell.iloc[0]))
    t = t[(t.shot == shot) & (t.way == way) & (t.cell == cell)]
    return (f"with the warp layers meta-trained at {setting_label(shot, way, cell)}: " +
            ", ".join(f"{m} {fmt_mean_ci(a, c, 1)} %" for m, a, c in zip(t.ours, t["20-way runs (ours)"], t["ci runs"])))


def plot_curves(result: FewShotResult):
    """Outer (query) loss during meta-training, mean over seeds of ten equal blocks of steps,
    one panel per setting; greedy at its chosen γ; ln(way) (a uniform prediction) dotted."""
    from metagrad.figures import legend_outside, subplots
    rep = reported(result.runs, result.chosen_gamma)
    rep = rep[rep.steps > 0]
    settings = list(dict.fromkeys(zip(rep.shot, rep.way, rep.cell)))
    colour = {m: f"C{i}" for i, m in enumerate(m for m in METHODS if m in set(rep.method))}  # one per method
    ncols = min(2, max(1, len(settings)))
    fig, axes = subplots(ncols, -(-max(1, len(settings)) // ncols), panel=(3.6, 2.8))
    for ax in axes.flat[max(1, len(settings)):]:
        ax.set_visible(False)
    for ax, (shot, way, cell) in zip(axes.flat, settings):
        g = rep[(rep.shot == shot) & (rep.way == way) & (rep.cell == cell)]
        for method in (m for m in METHODS if m in set(g.method)):
            gm = g[g.method == method]
            curves = np.array([c for c in gm.curve])
            x = (np.arange(curves.shape[1]) + 0.5) * gm.steps.iloc[0] / curves.shape[1]
            ax.plot(x, curves.mean(0), marker="o", ms=3, color=colour[method], label=gm.label.iloc[0])
        ax.axhline(math.log(way), color="grey", lw=0.8, ls=":")
        ax.set_title(setting_label(shot, way, cell))
        ax.set_xlabel("outer step")
        ax.set_ylabel("query loss (nats, mean over seeds)")
    legend_outside(fig, where="below", ncols=3)
    return fig


def plot_equal_compute(result: FewShotResult):
    """The equal-compute view: each method's test accuracy (γ of greedy as chosen) against its
    run's total hypergradient products (per hypergradient × outer steps) and its outer-loop
    wall-clock, one row of panels per (shot, way)."""
    from metagrad.figures import quality_vs_cost
    r = reported(result.runs, result.chosen_gamma).copy()
    r["products"] = r["#JVPs (ours)"] * r["steps"]
    r["wall_s"] = r["outer_wall_time_s"]
    r["setting"] = [setting_label(s, w, c) for s, w, c in zip(r["shot"], r["way"], r["cell"])]
    return quality_vs_cost(r, "test_acc", ylabel="test accuracy (%)", panel="setting", scale=100)



def cell_comparison(result: FewShotResult) -> pd.DataFrame:
    """For every (shot, way) run in more than one cell: each method's held-out accuracy
    (mean ± 95 % CI over seeds, %) per cell, side by side (greedy at each cell's chosen γ).
    Empty when no setting has a second cell."""
    t = result.table.dropna(subset=["ours"])
    rows = []
    for (shot, way), g in t.groupby(["shot", "way"], sort=False):
        if g.cell.nunique() < 2:
            continue
        for method, gm in g.groupby("method", sort=False):
            rows.append({"setting": f"{shot}-shot {way}-way", "method": _LABELS[method],
                         **{f"cell {c}": fmt_mean_ci(a, h) for c, a, h in zip(gm.cell, gm["acc (ours)"], gm["ci (ours)"])}})
    return pd.DataFrame(rows).fillna("")
