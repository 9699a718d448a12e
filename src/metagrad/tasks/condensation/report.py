"""Data condensation: tables and figures from the runs (pure functions of the results)."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from .setup import PAPER_TABLE1
from .quality import fg2u_expected_cosine

# ------------------------------------------------------------------------------ tables, figures
def _paper_row(d: str, paper_data: dict | None) -> str:
    """The paper's Table 1 data set compared with our row ``d``: ``paper_data[d]`` if given,
    MNIST for digits, that of a further row's data set (``MNIST 16×16`` → ``MNIST``), else ``d``."""
    paper_data = {"digits": "MNIST", **(paper_data or {})}
    head = paper_data.get(d.split(" ")[0], d.split(" ")[0])
    return paper_data.get(d, head if head in set(PAPER_TABLE1.data) else d)


def table1_summary(runs: pd.DataFrame, *, paper_data: dict | None = None) -> pd.DataFrame:
    """Our Table 1 beside the paper's: one row per (data, IPC, method) with n seeds, test
    accuracy after E evaluation steps and after T steps (mean ± 95 % CI over seeds, in %) and
    the paper's number. ``paper_data`` maps our data set to the paper's row to compare with
    (default: digits → MNIST, the paper's nearest data set)."""
    from ...report import mean_ci, fmt_mean_ci
    paper = PAPER_TABLE1.set_index(["data", "ipc", "method"])
    rows = []
    for (d, ipc, m), g in runs.groupby(["data", "ipc", "method"], sort=False):
        mean, ci = mean_ci(g["test_acc"])
        has_T = g["test_acc_T"].notna().any()
        mean_T, ci_T = mean_ci(g["test_acc_T"]) if has_T else (math.nan, math.nan)
        ref = _paper_row(d, paper_data)
        key = (ref, ipc if m != "whole data" else 1, m)
        p = paper.loc[key] if key in paper.index else None
        rows.append({"data": d, "IPC": ipc, "method": m, "n": len(g), "mean": round(mean, 2),
                     "ours: test acc % (E steps)": fmt_mean_ci(mean, ci),
                     "ours: after T steps": fmt_mean_ci(mean_T, ci_T) if has_T else "—",
                     f"paper ({ref})": ("—" if p is None else f"{p.acc:.2f}"
                                        + ("" if math.isnan(p.pm) else f" ± {p.pm:.2f}"))})
    return pd.DataFrame(rows)


def plot_table1(runs: pd.DataFrame, *, paper_data: dict | None = None):
    """Bars: our test accuracy (mean ± 95 % CI over seeds) per method and IPC; markers: the
    paper's Table 1 for the compared data set."""
    from metagrad.figures import legend_outside, subplots

    from ...report import mean_ci
    cells = list(runs.groupby(["data", "ipc"], sort=False))
    ncols = min(2, len(cells))
    fig, axes = subplots(ncols, -(-len(cells) // ncols), panel=(3.6, 3.2))
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    for ax, ((d, ipc), g) in zip(axes.flat, cells):
        methods = list(dict.fromkeys(g.method))
        stats = [mean_ci(g[g.method == m].test_acc) for m in methods]
        x = np.arange(len(methods))
        ax.bar(x, [s[0] for s in stats], yerr=[s[1] for s in stats], color="C0", alpha=0.8,
               capsize=3, label=f"ours ({d})")
        ref = PAPER_TABLE1[(PAPER_TABLE1.data == _paper_row(d, paper_data))]
        pv = [ref[(ref.method == m) & (ref.ipc == (1 if m == "whole data" else ipc))].acc
              for m in methods]
        ax.plot(x, [v.iloc[0] if len(v) else np.nan for v in pv], "D", color="C3",
                label=f"paper ({_paper_row(d, paper_data)})")
        ax.set_xticks(x, methods, rotation=35, ha="right")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{d}, IPC {ipc}")
        ax.set_ylim(0, 100)
    legend_outside(fig, where="below", ncols=4)
    return fig


def quality_summary(q: dict) -> pd.DataFrame:
    """One row per estimator (and per b for (FG)²U): cosine with the exact gradient (mean ±
    95 % CI over checkpoints, problems and direction groups), the Lemma 3.1 prediction for
    (FG)²U, cost counts, wall time relative to ``rmd`` and peak memory."""
    from ...report import mean_ci
    cos, costs = q["cosines"], q["costs"].set_index(["estimator", "b"])
    base = costs.loc[("RGU (full)", 0)]
    rows = [{"estimator": "RGU (full)", "b": 0, "cos": 1.0, "ci": 0.0, "predicted": math.nan}]
    for (e, b), g in cos.groupby(["estimator", "b"], sort=False):
        m, h = mean_ci(g.cos)
        rows.append({"estimator": e, "b": int(b), "cos": m, "ci": h,
                     "predicted": fg2u_expected_cosine(q["N"], int(b)) if b else math.nan})
    out = pd.DataFrame(rows)
    c = costs.reindex(list(zip(out.estimator, out.b)))
    for k in ("jvps", "vjps", "hvps", "products"):
        out[k] = c[k].to_numpy().astype(int)
    out["wall time s"] = c.wall_time_s.to_numpy()
    out["time / RGU"] = (c.wall_time_s / base.wall_time_s).to_numpy()
    out["memory / RGU"] = (c.peak_memory_bytes / base.peak_memory_bytes).to_numpy()
    out["peak memory MiB"] = (c.peak_memory_bytes / 2**20).to_numpy()
    return out


def format_quality(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`quality_summary` for display: rounded cosines, measured time and memory as text
    with their units (show it as HTML: a plain-text table pads columns to the width of the
    measured numbers, which changes from run to run)."""
    return pd.DataFrame({
        "estimator": summary.estimator, "b": summary.b.where(summary.b > 0, "—"),
        "cosine (mean ± CI)": [f"{m:.3f} ± {h:.3f}" for m, h in zip(summary.cos, summary.ci)],
        "Lemma 3.1": [("—" if math.isnan(p) else f"{p:.3f}") for p in summary.predicted],
        "JVPs": summary.jvps, "VJPs": summary.vjps, "HVPs": summary.hvps,
        "wall time": [f"{1000 * t:.1f} ms" for t in summary["wall time s"]],
        "peak memory": [f"{m:.2f} MiB (measured)" for m in summary["peak memory MiB"]]})


def plot_quality(summary: pd.DataFrame, *, N: int):
    """Cosine with the exact hypergradient against peak memory (left) and wall time (right),
    both relative to full reverse mode; (FG)²U as a line over b with the Lemma 3.1 prediction."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    from metagrad.figures import legend_outside, subplots
    fig, axes = subplots(2, panel=(3.6, 3.0))
    axes = axes[0]
    fg = summary[summary.estimator == "(FG)²U"]
    other = summary[summary.estimator != "(FG)²U"]
    for ax, key in zip(axes, ("memory / RGU", "time / RGU")):
        ax.errorbar(fg[key], fg.cos, yerr=fg.ci, fmt="o-", color="C0", label="(FG)²U (b labelled)")
        ax.plot(fg[key], fg.predicted, "--", color="C0", alpha=0.6, label="Lemma 3.1 prediction")
        for _, r in fg.iterrows():
            ax.annotate(f"b={r.b}", (r[key], r.cos), textcoords="offset points", xytext=(4, -10),
                        fontsize=9)
        for i, (_, r) in enumerate(other.iterrows()):
            ax.errorbar([r[key]], [r.cos], yerr=[r.ci], fmt="s", color=f"C{i + 1}", label=r.estimator)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{key.split(' /')[0]} / full reverse mode's (ratio, log)")
        ax.set_ylabel("cosine with exact hypergradient")
        ax.axhline(0, color="k", lw=0.5)
    axes[0].set_title(f"what each estimator buys\nfor its memory (N = {N:,})")
    axes[1].set_title("... and for its wall-clock\ntime (CPU)")
    legend_outside(fig, where="below", ncols=3)
    return fig


def at_budget(tp: dict, budget_s: float) -> pd.DataFrame:
    """Per (schedule, seed): the last evaluation within ``budget_s`` seconds of outer-loop
    wall-clock (its step, wall time and test accuracies)."""
    ev = tp["evals"][tp["evals"].wall_time_s <= budget_s]
    return ev.sort_values("step").groupby(["schedule", "seed"], sort=False).last().reset_index()


def two_phase_summary(tp: dict, *, budget_s: float | None = None) -> pd.DataFrame:
    """Per schedule: its phases, outer steps, measured wall time, final test accuracy after E
    and after T evaluation steps (mean ± 95 % CI over seeds, %) and the final outer loss; with
    ``budget_s``, also the accuracy after T steps at the last evaluation within that budget."""
    from ...report import mean_ci, fmt_mean_ci
    rows = []
    cut = at_budget(tp, budget_s) if budget_s is not None else None
    for s, g in tp["runs"].groupby("schedule", sort=False):
        row = {"schedule": s, "phases": g.phases.iloc[0], "outer steps": int(g.steps.iloc[0]),
               "wall time": f"{g.wall_time_s.mean():.1f} s",
               "test acc % (E steps)": fmt_mean_ci(*mean_ci(g.test_acc)),
               "after T steps": fmt_mean_ci(*mean_ci(g.test_acc_T)),
               "outer loss": fmt_mean_ci(*mean_ci(g.outer_loss), digits=3)}
        if cut is not None:
            at = cut[cut.schedule == s].test_acc_T
            row["after T steps, at the common budget"] = fmt_mean_ci(*mean_ci(at))
        rows.append(row)
    return pd.DataFrame(rows)




def plot_two_phase(tp: dict, *, smooth: int = 10, budget_s: float | None = None):
    """Test accuracy (after T evaluation steps, mean over seeds) and the outer loss (moving
    average over ``smooth`` steps, mean over seeds) against measured wall-clock; a dotted line
    at ``budget_s``."""
    from metagrad.figures import legend_outside, subplots
    fig, axes = subplots(2, panel=(3.6, 3.0))
    axes = axes[0]
    for i, (s, g) in enumerate(tp["evals"].groupby("schedule", sort=False)):
        m = g.groupby("step").agg(acc=("test_acc_T", "mean"), t=("wall_time_s", "mean"))
        axes[0].plot(m.t, m.acc, "o-", color=f"C{i}", ms=3, label=s)
    for i, (s, g) in enumerate(tp["losses"].groupby("schedule", sort=False)):
        m = g.groupby("step").agg(loss=("outer_loss", "mean"), t=("wall_time_s", "mean"))
        axes[1].plot(m.t, m.loss.rolling(smooth, min_periods=1).mean(), color=f"C{i}", label=s)
    axes[0].set_ylabel("test accuracy (%)\n(net trained T steps)")
    axes[1].set_ylabel(f"outer loss\n(moving average of {smooth})")
    for ax in axes:
        ax.set_xlabel("outer-loop wall-clock (s)")
        if budget_s is not None:
            ax.axvline(budget_s, color="k", ls=":", lw=1, label="common budget")
    legend_outside(fig, where="below", ncols=4)
    return fig


def plot_images(runs: pd.DataFrame, *, ipc: int = 1, seed: int = 0, data: str | None = None):
    """The condensed images of one seed: one row per method, one column per class."""
    from metagrad.figures import MAX_WIDTH_IN, subplots
    g = runs[(runs.ipc == ipc) & (runs.seed == seed) & runs["images"].notna()]
    g = g[g.data == (data or g.data.iloc[0])]
    imgs = [np.asarray(x) for x in g["images"]]
    n_rows, n_cols = len(imgs), imgs[0].shape[0]
    cell = min(0.6, (MAX_WIDTH_IN - 1.6) / n_cols)  # room for the method names on the left
    fig, axes = subplots(n_cols, n_rows, panel=(cell, cell), width=cell * n_cols + 1.6)
    for row, (method, x) in zip(axes, zip(g.method, imgs)):
        for ax, img in zip(row, x):
            img = img.transpose(1, 2, 0)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(method, rotation=0, ha="right", va="center")
    fig.suptitle(f"condensed images, IPC {ipc}, seed {seed}")
    return fig


def plot_equal_compute(runs: pd.DataFrame):
    """The equal-compute view of Table 1: each method's test accuracy (%) against its run's
    total hypergradient products (JVP + VJP + HVP, summed over the outer loop) and its
    outer-loop wall-clock (evaluation excluded), one row of panels per (data, IPC). The
    starting images and the whole-data network cost no hypergradient: dotted lines."""
    from metagrad.figures import quality_vs_cost
    r = runs.copy()
    r["products"] = r[["jvps", "vjps", "hvps"]].fillna(0).sum(axis=1)
    r["wall_s"] = r["wall_time_s"].where(r["products"] > 0, 0.0)
    r["setting"] = [f"{d}, IPC {i}" for d, i in zip(r["data"], r["ipc"])]
    return quality_vs_cost(r, "test_acc", ylabel="test accuracy (%)", label="method", panel="setting")



def progress(runs: pd.DataFrame, *, start: str = "random real (α₀)") -> pd.DataFrame:
    """The evaluations along the way of the runs that have them (``eval_every``): one row per
    (data, IPC, method, seed, outer step) with ``test_acc`` (%, after E evaluation steps) and
    the outer-loop ``wall_time_s`` (evaluation excluded); step 0 is the starting images
    ``start`` of the same seed. Empty when no run was evaluated along the way."""
    cols = ["data", "ipc", "method", "seed", "step", "wall_time_s", "test_acc"]
    if "evals" not in runs:
        return pd.DataFrame(columns=cols)
    rows = []
    for _, r in runs[runs["evals"].notna()].iterrows():
        s0 = runs[(runs.data == r.data) & (runs.ipc == r.ipc) & (runs.seed == r.seed) & (runs.method == start)]
        head = [{"step": 0, "wall_time_s": 0.0, "test_acc": float(s0.test_acc.iloc[0])}] if len(s0) else []
        for e in head + [{**e, "test_acc": 100 * e["test_acc"]} for e in r["evals"]]:
            rows.append({"data": r.data, "ipc": r.ipc, "method": r.method, "seed": r.seed, "step": e["step"],
                         "wall_time_s": e["wall_time_s"], "test_acc": e["test_acc"]})
    return pd.DataFrame(rows, columns=cols)


def plot_progress(prog: pd.DataFrame):
    """Test accuracy (%, mean over seeds with its 95 % CI band) against outer steps (left) and
    against outer-loop wall-clock (right, mean over seeds, log scale), one row per (data, IPC)
    of :func:`progress`; ``None`` when there is nothing to draw."""
    if prog.empty:
        return None
    import seaborn as sns
    from metagrad.figures import colors, legend_outside, subplots
    cells = list(prog.groupby(["data", "ipc"], sort=False))
    fig, axes = subplots(2, len(cells), panel=(3.6, 2.8))
    labels = list(dict.fromkeys(prog.method))
    pal = dict(zip(labels, colors(len(labels))))
    for row, ((d, ipc), g) in zip(axes, cells):
        sns.lineplot(g, x="step", y="test_acc", hue="method", palette=pal, errorbar=("ci", 95),
                     marker="o", markersize=3, ax=row[0])
        m = g.groupby(["method", "step"], sort=False)[["wall_time_s", "test_acc"]].mean().reset_index()
        for lab, h in m.groupby("method", sort=False):
            h = h[h.wall_time_s > 0]
            row[1].plot(h.wall_time_s, h.test_acc, "o-", ms=3, color=pal[lab], label=lab)
        row[1].set_xscale("log")
        row[0].set_xlabel("outer steps")
        row[1].set_xlabel("outer-loop wall-clock (s, log scale)")
        for ax in row:
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{d}, IPC {ipc}")
    legend_outside(fig, where="below", ncols=3)
    return fig


def progress_md(prog: pd.DataFrame, *, method: str = "(FG)²U", exact: str = "RGU (full)",
                early: int = 200) -> str:
    """What the accuracy-against-steps view shows, per (data, IPC): ``method``'s and ``exact``'s
    mean test accuracy at outer step ``early`` and at the last step, the gap between them at
    both, and whether ``method`` was still rising over its last two evaluations (``method`` also
    matches a label that extends it, e.g. ``(FG)²U b=32``). Numbers only;
    the registered claim DC-mnist-steps gives the verdict."""
    out = []
    for (d, ipc), g in prog.groupby(["data", "ipc"], sort=False):
        acc = g.groupby(["method", "step"]).test_acc.mean()
        labels = list(dict.fromkeys(acc.index.get_level_values(0)))
        m = next((x for x in labels if x == method or x.startswith(method + " ")), None)
        if m is None or exact not in labels:
            continue
        a, b = acc[m], acc[exact]
        last = int(min(a.index.max(), b.index.max()))
        if early not in a.index or early not in b.index or last <= early:
            continue
        gap0, gap1 = b[early] - a[early], b[last] - a[last]
        tail = a.loc[:last].iloc[-2:]
        rising = "still rising" if tail.iloc[-1] > tail.iloc[0] else "no longer rising"
        change = "narrows" if abs(gap1) < abs(gap0) else "widens" if abs(gap1) > abs(gap0) else "stays"
        out.append(f"On {d}, IPC {ipc}, {m} reaches {a[early]:.1f} % after {early} outer steps and "
                   f"{a[last]:.1f} % after {last} ({rising} over its last two evaluations); {exact} "
                   f"{b[early]:.1f} % and {b[last]:.1f} %, so the gap between them {change} from "
                   f"{gap0:+.1f} to {gap1:+.1f} points.")
    return " ".join(out) if out else "No run of this build was evaluated along the way."


# ------------------------------------------------------------------------------ the page's prose
def compute_minutes(out_dir, *, datasets, ipcs, seeds) -> float:
    """Minutes the page's result files took to compute: the sum of their provenance
    ``wall_time_s`` (outer loops and evaluations; every (data set, IPC, seed) file and the
    whole-data files). A missing file is an error (the page's run did not finish)."""
    import json
    from pathlib import Path
    out_dir, total, n = Path(out_dir), 0.0, 0
    for d in datasets:
        for seed in seeds:
            files = [f for ipc in ipcs for f in sorted(out_dir.glob(f"{d}_ipc{ipc}_seed{seed}_*.json"))]
            files.append(out_dir / f"{d}_whole-data_seed{seed}.json")
            for f in files:
                total += float(json.loads(f.read_text())["provenance"]["wall_time_s"])
                n += 1
    if n == 0:
        raise ValueError(f"no result files of datasets={list(datasets)} under {out_dir}")
    return total / 60


def sensitivity_md(sens: pd.DataFrame, *, points: float = 100.0, labels: dict | None = None) -> str:
    """One sentence per sensitivity precondition (a row of ``PageReport.sensitivity``): does
    the exact hypergradient beat the crude baseline by the SESOI, and so are the rankings of
    the estimators testable in that setting. Effects in accuracy points (``points`` × metric);
    ``labels`` names the rows as the tables do (``row_labels``; default: the row's key)."""
    out, labels = [], labels or {}
    for _, r in sens.iterrows():
        where = ", ".join(str(labels.get(v, v)) if k == "dataset" else f"{'IPC' if k == 'ipc' else k} {v}"
                          for k, v in dict(r["where"]).items())
        eff, p = r.get("effect", math.nan), r.get("p", math.nan)
        if r.get("detail") == "not run" or eff is None or not math.isfinite(eff):
            out.append(f"At {where} the precondition was not run at this scale.")
            continue
        p_txt = "" if p is None or not math.isfinite(p) else f", one-sided p = {p:.2g}"
        head = (f"At {where} the exact hypergradient (full RGU) changes the test accuracy by "
                f"{points * eff:+.1f} points over the random real images (SESOI "
                f"{points * r['smallest_effect']:.1f} points{p_txt}): ")
        out.append(head + ("the precondition passes, so rankings of the estimators are testable there."
                           if r["passes"] else "the precondition fails, so rankings of the estimators "
                           "there are *not testable at this scale*."))
    return " ".join(out)


def adaptation_gains(runs: pd.DataFrame, *, start: str = "random real (α₀)") -> pd.DataFrame:
    """Per (data, IPC, method): the mean gain in test accuracy (points) of the condensed images
    over the starting images ``start``, after T evaluation steps (``gain_T``) and after E
    (``gain_E``)."""
    acc = runs.groupby(["data", "ipc", "method"], sort=False)[["test_acc", "test_acc_T"]].mean()
    rows = []
    for (d, ipc, m), a in acc.iterrows():
        if m in (start, "whole data"):
            continue
        s = acc.loc[(d, ipc, start)]
        rows.append({"data": d, "ipc": ipc, "method": m, "gain_T": a.test_acc_T - s.test_acc_T,
                     "gain_E": a.test_acc - s.test_acc})
    return pd.DataFrame(rows)


def adaptation_md(gains: pd.DataFrame, *, method: str = "RGU (full)") -> str:
    """Whether the images serve the T-step training they were optimised for more than the
    longer E-step evaluation: ``method``'s gains over α₀ after T and after E steps per IPC, how
    many estimators gain more after T steps, and a conclusion that follows the numbers."""
    parts, more_T = [], []
    several = gains.data.nunique() > 1
    for (d, ipc), g in gains.groupby(["data", "ipc"], sort=False):
        r = g[g.method == method].iloc[0]
        k = int((g.gain_T > g.gain_E).sum())
        more_T.append(bool(r.gain_T > r.gain_E))
        parts.append(f"{f'on {d}, ' if several else ''}at IPC {ipc}, {method} gains {r.gain_T:+.1f} points over the random real images "
                     f"after *T* steps and {r.gain_E:+.1f} after *E* steps ({k} of {len(g)} methods gain "
                     "more after *T* steps)")
    text = "; ".join(parts)
    text = text[0].upper() + text[1:] + ". "
    if all(more_T):
        return text + (f"So {method}'s images adapt to the *T*-step training they are optimised for more "
                       "than to the longer evaluation training.")
    if not any(more_T):
        return text + (f"So {method}'s images serve the longer evaluation training at least as well as the "
                       "*T*-step training they are optimised for.")
    return text + (f"So whether {method}'s images adapt more to the *T*-step training than to the longer "
                   f"evaluation training depends on the {'setting' if several else 'IPC'}.")


def n_pixels(runs: pd.DataFrame) -> int:
    """N, the number of learned pixels at the smallest IPC (from the kept condensed images)."""
    g = runs[runs["images"].notna()]
    g = g[g.ipc == g.ipc.min()]
    return int(np.asarray(g["images"].iloc[0]).size)


def directions_table(runs: pd.DataFrame, methods: dict, *, paper: dict | None = None) -> pd.DataFrame:
    """How many random directions (FG)²U averaged, per row (data, IPC) and (FG)²U method: N
    learned pixels, b directions per step, K (FG)²U outer steps (a warm start excluded),
    ρ = b/(N−1) (Lemma 3.1: the estimate's variance is ‖∇F‖²/ρ) and ρK (Theorem 3.4's bound
    on the mean squared gradient falls as 1/(ρK)). ``paper`` = ``{"N", "b", "K"}`` adds the
    paper's row. N comes from the kept images (seed ``keep_images_seed``) and scales with IPC."""
    fg = [m for m, spec in methods.items() if spec.get("method") == "fg2u"]
    rows = []
    for d, gd in runs.groupby("data", sort=False):
        kept = gd[gd["images"].notna()] if "images" in gd else gd.iloc[:0]
        if kept.empty:
            continue
        n_per_ipc = np.asarray(kept["images"].iloc[0]).size / int(kept.ipc.iloc[0])
        for (ipc, m), g in gd[gd.method.isin(fg)].groupby(["ipc", "method"], sort=False):
            n, b = int(round(n_per_ipc * ipc)), int(methods[m].get("options", {}).get("b", 1))
            k = int(g.steps.iloc[0] - g.warm_start.iloc[0])
            rows.append({"row": f"{d}, IPC {ipc}", "method": m, "N pixels": n, "b": b, "K steps": k,
                         "ρ = b/(N−1)": b / (n - 1), "ρK": b / (n - 1) * k})
    if paper:
        n, b, k = int(paper["N"]), int(paper["b"]), int(paper["K"])
        rows.append({"row": "paper (MNIST, IPC 1)", "method": "(FG)²U", "N pixels": n, "b": b, "K steps": k,
                     "ρ = b/(N−1)": b / (n - 1), "ρK": b / (n - 1) * k})
    return pd.DataFrame(rows, columns=["row", "method", "N pixels", "b", "K steps", "ρ = b/(N−1)", "ρK"])


def directions_md(runs: pd.DataFrame, methods: dict,
                  others=("TRGU", "Hessian-free", "Neumann", "RGU (full)")) -> str:
    """Per row (data, IPC) that runs (FG)²U at more than one b: its mean test accuracy at each b
    (with ρK, from ``directions_table``) beside the ``others``' means. Numbers only; the
    registered claims give the verdicts."""
    dt, out = directions_table(runs, methods), []
    for row, g in dt.groupby("row", sort=False):
        if len(g) < 2:
            continue
        d, ipc = row.rsplit(", IPC ", 1)
        acc = runs[(runs.data == d) & (runs.ipc == int(ipc))].groupby("method").test_acc.mean()
        g = g.sort_values("b")
        fg = (f"(FG)²U with b = {' / '.join(str(b) for b in g.b)} (ρK ≈ "
              f"{' / '.join(f'{r:.3g}' for r in g['ρK'])}) reaches {' / '.join(f'{acc[m]:.1f}' for m in g.method)} %")
        rest = ", ".join(f"{m} {acc[m]:.1f}" for m in others if m in acc.index)
        out.append(f"On {row}, {fg}" + (f"; {rest} %." if rest else "."))
    return " ".join(out) if out else "No row of this build runs (FG)²U with more than one b."


def paired_cosine_gap(q: dict, a: str, b: str) -> tuple[float, float]:
    """Mean and 95 % CI half-width over the paired units (checkpoint × problem draw) of
    estimator ``a``'s cosine minus estimator ``b``'s (both biased, b = 0 rows)."""
    from ...report import mean_ci
    c = q["cosines"][q["cosines"].b == 0].pivot_table(index=["checkpoint", "problem"], columns="estimator",
                                                      values="cos")
    return mean_ci((c[a] - c[b]).to_numpy())


def compare_md(q: dict, a: str, b: str) -> str:
    """``a``'s accuracy against ``b``'s in words that follow the paired difference of their cosines
    (about as accurate when its 95 % CI contains 0)."""
    d, h = paired_cosine_gap(q, a, b)
    word = ("about as accurate as" if abs(d) <= h else "more accurate than" if d > 0 else "less accurate than")
    return f"{word} {b} here (paired difference of cosines {d:+.3f} ± {h:.3f})"


def crossings(summary: pd.DataFrame, N: int, *, biased: list[str]) -> pd.DataFrame:
    """Per biased estimator: the formula's b_match (directions for (FG)²U to reach its cosine,
    :eq:`eq-fg2u-cosine`), the measured bracket ``b_below < crossing ≤ b_above`` (the measured b
    around where (FG)²U's mean cosine first reaches it; ``b_above`` NaN when no measured b does)
    and whether b_match lies inside that bracket."""
    fg = summary[summary.estimator == "(FG)²U"].sort_values("b")
    rows = []
    for e in biased:
        c = float(summary[summary.estimator == e].cos.iloc[0])
        b_match = (N - 1) * c ** 2 / (1 - c ** 2)
        above = fg[fg.cos >= c]
        b_above = float(above.b.iloc[0]) if len(above) else math.nan
        below = fg[fg.b < b_above] if len(above) else fg
        b_below = float(below.b.iloc[-1]) if len(below) else 0.0
        inside = b_below < b_match and (math.isnan(b_above) or b_match <= b_above)
        rows.append({"estimator": e, "cos": c, "b_match": b_match, "b_below": b_below, "b_above": b_above,
                     "inside": inside})
    return pd.DataFrame(rows)


def crossings_md(cross: pd.DataFrame) -> str:
    """One clause per biased estimator (measured crossing bracket, formula's b_match) and how many
    of the formula's b_match fall inside the measured brackets."""
    parts = []
    for _, r in cross.iterrows():
        where = (f"beyond the largest b measured ({r.b_below:.0f})" if math.isnan(r.b_above)
                 else f"between b = {r.b_below:.0f} and {r.b_above:.0f}")
        parts.append(f"{r.estimator} {where}, formula {r.b_match:.0f}")
    k, n = int(cross.inside.sum()), len(cross)
    return (f"the measured mean cosines of (FG)²U reach theirs — {'; '.join(parts)} — so the formula's "
            f"b_match falls inside the measured bracket for {k} of {n}")


def time_per_product_ratio(summary: pd.DataFrame) -> float:
    """Wall time per JVP of (FG)²U at its smallest b over wall time per VJP of full reverse mode
    (both unroll the same T steps, so above 1 means a JVP through the loop costs more than a VJP)."""
    fg = summary[summary.estimator == "(FG)²U"].sort_values("b").iloc[0]
    rgu = summary[summary.estimator == "RGU (full)"].iloc[0]
    return float((fg["wall time s"] / fg.jvps) / (rgu["wall time s"] / rgu.vjps))


def verdict_of(report, claim_id: str) -> str:
    """The verdict of one registered claim of a ``PageReport``."""
    v = report.verdicts.set_index("id").verdict
    if claim_id not in v.index:
        raise KeyError(f"claim {claim_id!r} is not registered; registered: {list(v.index)}")
    return str(v[claim_id])


def jvp_vjp_md(summary: pd.DataFrame) -> str:
    """The wall time of a JVP through the loop against a VJP's, worded by the measured ratio."""
    r = time_per_product_ratio(summary)
    word = "more" if r > 1 else "less"
    return (f"a Jacobian-vector product through the loop costs {word} wall time than a vector-Jacobian "
            f"product: {r:.2f}× (per product, (FG)²U at its smallest b against full reverse mode)")


def lemma_md(verdict: str, claim_id: str = "GQ-lemma31") -> str:
    """What the Lemma 3.1 claim's verdict says about the measured cosines."""
    if verdict == "reproduced":
        return (f"they land on it at every b, as an unbiased estimator as noisy as the paper's variance "
                f"formula says would (claim {claim_id}: *{verdict}*)")
    if verdict == "contradicted":
        return f"they do not all land on it (claim {claim_id}: *{verdict}*)"
    return f"whether they land on it is not decided here (claim {claim_id}: *{verdict}*)"


def recipe_md(verdict: str, *, acc_two: float, acc_fg2u: float) -> str:
    """What the verdict of "two phases beat (FG)²U alone at equal wall-clock" says about the
    paper's recipe (the means only give the direction when the verdict decides nothing)."""
    if verdict == "reproduced":
        return "Two phases beat (FG)²U alone at equal wall-clock: that is the observation behind the paper's recipe."
    if verdict == "contradicted":
        return ("(FG)²U alone beats the two phases at equal wall-clock: the opposite of the observation behind "
                "the paper's recipe.")
    side = "above" if acc_two > acc_fg2u else "not above"
    return (f"The two-phase mean is {side} (FG)²U alone's, but the verdict (*{verdict}*) decides nothing, so "
            "this scale neither supports nor contradicts the observation behind the paper's recipe.")
