"""Tables, figures, the numbers of the page's prose, and the claims' evidence (pure functions
of the result files)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...report import mean_ci
from . import setup as S
from .corpus import make_documents
from .model import token_weights
from .experiment import LMResult, SMOOTH

__all__ = ["arm", "setup_table", "scores_table", "paper_table", "memory_table", "crossing",
           "plot_memory", "plot_scores", "token_weight_table", "plot_token_weights", "facts",
           "evidence_rows", "memory_metrics"]


def arm(method: str, depth: int) -> str:
    """The registry's name of an arm: ``uniform``, ``rmd-d6``, ``fg2u-d24``."""
    return "uniform" if method == "uniform" else f"{method}-d{int(depth)}"


def _label(method, depth, budget_depth=None) -> str:
    over = " (over the memory budget)" if method == "rmd" and budget_depth and depth > budget_depth else ""
    return {"uniform": "uniform weights (no meta-learning)", "rmd": f"RGU (rmd), depth {depth}{over}",
            "fg2u": f"(FG)²U, depth {depth}"}[method]


def setup_table(cfg: S.LMConfig, result: LMResult | None = None) -> pd.DataFrame:
    """Our setting beside the paper's (PAPERS.md A.3)."""
    n = result.base.pretrain.get("result", {}).get("parameters") if result is not None else None
    rows = [
        ("base model", f"causal transformer, {cfg.layers} layers, width {cfg.width}, {cfg.heads} heads"
         + (f", {n:,} parameters" if n else "") + f", pretrained here ({cfg.pretrain_steps} Adam steps on "
         f"{cfg.pretrain_docs} fact documents of other entities)" if cfg.base_model == "tiny" else cfg.base_model,
         "DistilGPT2 (82 M parameters), pretrained"),
        ("documents", "templated facts (3 per document, 2 filler sentences), names and values "
         "the base model has never seen", "StreamingQA / SQuAD-Seq news and Wikipedia articles"),
        ("questions", "the fact sentence cut before its value (2-token answer)", "natural questions"),
        ("weighting model", ("linear" if cfg.weight_hidden == 0 else f"MLP ({cfg.weight_hidden} hidden)")
         + " map of the frozen base model's token features; weight 2·σ(logit)", "a DistilGPT2 (CaMeLS)"),
        ("inner loop", f"one SGD step (lr {cfg.inner_lr:g}) per document, depth = documents per outer step",
         "one step per document, depth 1–6 (RGU), 24 / 48 ((FG)²U)"),
        ("outer loss", f"answer NLL of {cfg.outer_questions} questions about the documents + "
         f"{cfg.c_loc:g} · KL(base ‖ adapted) on {cfg.locality_docs} unrelated documents",
         "answer NLL + locality term (CaMeLS)"),
        ("outer loop", f"Adam lr {cfg.outer_lr:g}, {cfg.steps} steps from uniform weights", "—"),
        ("(FG)²U", f"b Rademacher directions, all at once: the largest b ≤ {cfg.fg2u_b} that fits the memory "
         f"budget (RGU's peak at depth {cfg.memory_budget_depth})", "the largest b that fits in memory"),
        ("evaluation", f"adapt the base model to {cfg.eval_streams} held-out stream(s) of {cfg.eval_length} "
         f"documents, greedy answers, EM / F1 in %", "EM / F1 on the held-out stream"),
        ("seeds", str(len(cfg.seeds)), "—"),
    ]
    return pd.DataFrame(rows, columns=["", "ours", "paper"])


def _summary(result: LMResult) -> pd.DataFrame:
    rows = []
    for (m, d), g in result.runs.groupby(["method", "depth"], sort=False):
        row = {"method": m, "depth": d, "arm": arm(m, d), "label": _label(m, d, result.config.memory_budget_depth),
               "seeds": len(g)}
        for k in ("em", "f1", "answer_nll"):
            row[k], row[k + "_ci"] = mean_ci(g[k].to_numpy(float))
        t = (g.outer_wall_time_s / g.steps.clip(lower=1)).mean()
        row["s_per_step"] = t if m != "uniform" else np.nan
        row["paper_f1"] = S.PAPER.get(m, {}).get(int(d), np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def scores_table(result: LMResult) -> pd.DataFrame:
    """EM / F1 (%) and answer NLL per arm (mean and 95 % CI half-width over seeds), the wall
    time per outer step, and the paper's F1 at the same depth (DistilGPT2, StreamingQA)."""
    return _summary(result)[["label", "seeds", "em", "em_ci", "f1", "f1_ci", "answer_nll", "answer_nll_ci",
                             "s_per_step", "paper_f1"]]


def paper_table() -> pd.DataFrame:
    """The paper's Table 2 (EM / F1, DistilGPT2) and its memory numbers."""
    t = S.PAPER["table2"]
    rows = [{"data": d, "method": {"rmd": "RGU (depth ≤ 6)", "fg2u": "(FG)²U (depth 24 / 48)"}[m],
             "EM": v[0], "F1": v[1]} for d, mv in t.items() for m, v in mv.items()]
    return pd.DataFrame(rows)


def memory_table(result: LMResult) -> pd.DataFrame:
    m = result.memory
    m = m[(m.method == "rmd") | m.as_run.astype(bool)]
    return pd.DataFrame({"method": m.method.map({"rmd": "RGU (rmd)", "fg2u": "(FG)²U"}), "depth": m.depth,
                         "directions at once": m.chunk.fillna(0).astype(int).replace(0, np.nan),
                         "peak MiB": m.peak_MiB}).reset_index(drop=True)


def memory_metrics(mem: pd.DataFrame, budget_depth: int) -> dict:
    """Growth of each method's peak over its depths, RGU's linear fit, (FG)²U at its deepest
    against the budget (RGU at ``budget_depth``), and the crossing depth."""
    r = mem[mem.method == "rmd"].sort_values("depth")
    f = mem[(mem.method == "fg2u") & mem.as_run.astype(bool)].sort_values("depth")
    f_from2 = f[f.depth >= 2]  # at depth 1 one inner state fewer is alive: growth from depth 2 on
    slope, icpt = np.polyfit(r.depth, r.peak_MiB, 1)
    pred = slope * r.depth + icpt
    r2 = 1 - ((r.peak_MiB - pred) ** 2).sum() / ((r.peak_MiB - r.peak_MiB.mean()) ** 2).sum()
    budget = float(r[r.depth == budget_depth].peak_MiB.iloc[0])
    f_deep = float(f.peak_MiB.iloc[-1])
    return {"fg2u_memory_growth": float(f_from2.peak_MiB.iloc[-1] / f_from2.peak_MiB.iloc[0]),
            "rgu_memory_growth": float(r.peak_MiB.iloc[-1] / r.peak_MiB.iloc[0]),
            "rgu_memory_r2": float(r2), "rgu_MiB_per_depth": float(slope), "rgu_MiB_at_0": float(icpt),
            "fg2u_deepest_over_budget": f_deep / budget, "budget_MiB": budget, "fg2u_deepest_MiB": f_deep,
            "fg2u_deepest_depth": int(f.depth.iloc[-1]), "crossing_depth": (f_deep - icpt) / slope}


def crossing(result: LMResult) -> float:
    """The depth at which RGU's fitted memory line reaches (FG)²U's (flat) peak."""
    return memory_metrics(result.memory, result.config.memory_budget_depth)["crossing_depth"]


def plot_memory(result: LMResult):
    """Peak memory of one hypergradient against depth, the budget and the crossing."""
    from metagrad.figures import legend_outside, subplots, colors
    m = memory_metrics(result.memory, result.config.memory_budget_depth)
    fig, axes = subplots(1, 1, panel=(5.0, 3.2))
    ax = axes[0, 0]
    c = colors(3)
    r = result.memory[result.memory.method == "rmd"].sort_values("depth")
    f = result.memory[(result.memory.method == "fg2u") & result.memory.as_run.astype(bool)].sort_values("depth")
    ax.plot(r.depth, r.peak_MiB, "o-", color=c[0], label="RGU (rmd)")
    ax.plot(f.depth, f.peak_MiB, "s-", color=c[1], label=f"(FG)²U, b = {int(f.chunk.iloc[0])} directions at once")
    d = np.linspace(0, f.depth.max(), 50)
    ax.plot(d, m["rgu_MiB_per_depth"] * d + m["rgu_MiB_at_0"], ":", color=c[0], label="RGU, linear fit")
    ax.axhline(m["budget_MiB"], color="0.4", ls="--", label=f"budget: RGU at depth {result.config.memory_budget_depth}")
    ax.set_xlabel("unrolled depth (documents per outer step)")
    ax.set_ylabel("peak memory of one hypergradient (MiB)")
    legend_outside(fig, where="below", ncols=2)
    return fig


def plot_scores(result: LMResult):
    """F1 and EM (mean ± 95 % CI over seeds) against depth; uniform weights as a band; the
    paper's F1 (DistilGPT2, StreamingQA) in its own panel."""
    from metagrad.figures import legend_outside, subplots, colors
    s = _summary(result)
    fig, axes = subplots(3, 1, panel=(2.6, 2.7))
    c = colors(3)
    for ax, k, name in ((axes[0, 0], "f1", "F1 (%)"), (axes[0, 1], "em", "exact match (%)")):
        u = s[s.method == "uniform"]
        if len(u):
            ax.axhspan(float(u[k].iloc[0] - np.nan_to_num(u[k + "_ci"].iloc[0])),
                       float(u[k].iloc[0] + np.nan_to_num(u[k + "_ci"].iloc[0])), color="0.85",
                       label="uniform weights (95 % CI)")
        for i, m in enumerate(("rmd", "fg2u")):
            g = s[s.method == m].sort_values("depth")
            ax.errorbar(g.depth, g[k], yerr=g[k + "_ci"].fillna(0), fmt="o-" if m == "rmd" else "s-", color=c[i],
                        capsize=3, label={"rmd": "RGU (rmd)", "fg2u": "(FG)²U"}[m])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("meta-training depth")
        ax.set_ylabel(name + ", ours")
    ax = axes[0, 2]
    for i, m in enumerate(("rmd", "fg2u")):
        d = sorted(S.PAPER[m])
        ax.plot(d, [S.PAPER[m][x] for x in d], "o--" if m == "rmd" else "s--", color=c[i])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("meta-training depth")
    ax.set_ylabel("F1 (%), paper (≈)")
    legend_outside(fig, where="below", ncols=3)
    return fig


def _alpha(result: LMResult, method: str, depth: int, seed: int) -> dict:
    cfg = result.config
    from ...results import repo_root
    path = Path(repo_root() / cfg.results_dir / cfg.scale / (f"{method}_d{depth}_s{seed}.json"))
    a = json.loads(path.read_text())["result"]["alpha"]
    wnet = S.weighter(cfg, result.base)
    return {k: torch.tensor(a[k], dtype=v.dtype, device=v.device).reshape(v.shape) for k, v in wnet.params.items()}


def token_weight_table(result: LMResult, seed: int | None = None) -> pd.DataFrame:
    """The learned weight of every token of one held-out document, for RGU at its deepest depth
    and (FG)²U at its deepest depth (seed ``seed``), with the token's role (value / name /
    template / filler)."""
    cfg = result.config
    seed = cfg.seeds[0] if seed is None else seed
    doc = make_documents(1, "stream", seed=424_242)[0]
    base = result.base
    batch = S.doc_batch(base, [doc.text], cfg.context)
    wnet = S.weighter(cfg, base)
    toks = doc.text.split()
    values = {t for _, a in doc.questions for t in a.split()}
    name = set(doc.entity.split())
    filler_words = set()
    from .corpus import _FILLER
    for f in _FILLER:
        filler_words |= set(f.split())
    role = ["value" if t in values else "name" if t in name else "filler" if t in filler_words
            else "punctuation" if t == "." else "template" for t in toks]
    out = pd.DataFrame({"position": range(1, len(toks) + 1), "token": toks, "role": role})
    for m in ("rmd", "fg2u"):
        depths = cfg.rmd_depths if m == "rmd" else cfg.fg2u_depths
        if not depths:
            continue
        d = max(depths)
        with torch.no_grad():
            w = token_weights(wnet(_alpha(result, m, d, seed), batch["feats"]), batch["mask"])[0]
        out[arm(m, d)] = w.cpu().numpy()[:len(toks)]
    return out


def plot_token_weights(result: LMResult, seed: int | None = None):
    """The weights over one held-out document (1 = plain fine-tuning), coloured by role."""
    from metagrad.figures import legend_outside, subplots, colors
    t = token_weight_table(result, seed)
    arms = [c for c in t.columns if "-d" in c]
    fig, axes = subplots(1, len(arms), panel=(7.0, 1.9))
    roles = ["value", "name", "template", "filler", "punctuation"]
    col = dict(zip(roles, colors(len(roles))))
    for ax, a in zip(axes[:, 0], arms):
        for r in roles:
            g = t[t.role == r]
            ax.bar(g.position, g[a], color=col[r], label=r)
        ax.axhline(1.0, color="0.3", lw=0.8, ls=":")
        ax.set_ylabel(f"weight, {a}")
        ax.set_xticks(t.position)
        ax.set_xticklabels(t.token, rotation=90, fontsize=9)  # the house minimum (metagrad.figures.MIN_FONT_PT)
        ax.set_xlim(0.4, len(t) + 0.6)
    legend_outside(fig, where="below", ncols=5, title="token role")
    return fig


def facts(result: LMResult, report=None) -> dict:
    """The numbers the page's prose quotes."""
    cfg = result.config
    s = _summary(result).set_index("arm")
    m = memory_metrics(result.memory, cfg.memory_budget_depth)

    def f1(a):
        return f"{s.f1[a]:.1f} ± {np.nan_to_num(s.f1_ci[a]):.1f}" if a in s.index else "not run"
    rd = [arm("rmd", d) for d in (*cfg.rmd_depths, *cfg.rmd_extra_depths)]
    fd = [arm("fg2u", d) for d in cfg.fg2u_depths]
    return {"seeds": len(cfg.seeds), "steps": cfg.steps, "b": cfg.fg2u_b,
            "f1_uniform": f1("uniform"),
            "f1_rmd": "; ".join(f"depth {a.split('-d')[1]}: {f1(a)}" for a in rd),
            "f1_fg2u": "; ".join(f"depth {a.split('-d')[1]}: {f1(a)}" for a in fd),
            "budget_MiB": f"{m['budget_MiB']:.1f}", "fg2u_MiB": f"{m['fg2u_deepest_MiB']:.1f}",
            "fg2u_depth": m["fg2u_deepest_depth"], "slope": f"{m['rgu_MiB_per_depth']:.2f}",
            "crossing": f"{m['crossing_depth']:.1f}", "r2": f"{m['rgu_memory_r2']:.3f}",
            "fg2u_growth": f"{m['fg2u_memory_growth']:.3f}",
            "chunk": int(result.memory[result.memory.as_run.astype(bool)].chunk.iloc[0]),
            "wall_min": f"{result.wall_time_s / 60:.1f}", "cpu_min": f"{result.cpu_time_s / 60:.1f}",
            "params": f"{result.base.pretrain.get('result', {}).get('parameters', 0):,}",
            "compute_min": f"{result.compute_s / 60:.1f}",
            **_gradient_facts(result)}


def _err(x: float) -> str:
    """A relative error for the prose; below 1e-4 it is float32 rounding, whose digits depend on
    the machine and thread count, so only the bound is shown."""
    return "< 1e-4" if x < 1e-4 else f"{x:.2g}"


def _gradient_facts(result: LMResult) -> dict:
    """The exact hypergradient's norm and (FG)²U's mean cosine per depth; the trained runs
    whose weights moved by at most one outer step (Adam's lr) from uniform."""
    out = {}
    if result.gradient_check is not None:
        g = result.gradient_check["result"]
        out["grad_norms"] = "; ".join(f"depth {r['depth']}: {r['exact_norm']:.2g}" for r in g)
        out["cosines"] = "; ".join(f"depth {r['depth']}: {np.nanmean(r['cosines']):.2f}" for r in g)
        out["cosine_predicted"] = f"{g[0]['predicted_cosine']:.2f}"
        if "rmd_float32_rel_err" in g[0]:
            out["float32_err"] = "; ".join(
                f"depth {r['depth']}: relative error {_err(r['rmd_float32_rel_err'])} (cosine {r['rmd_float32_cosine']:.3f})"
                for r in g)
            out["float32_cosines"] = "; ".join(f"depth {r['depth']}: {np.nanmean(r['cosines_float32']):.2f}" for r in g)
            bad = [r["depth"] for r in g if not r["rmd_float32_rel_err"] < 0.5]
            out["float32_unreliable"] = (
                f"from depth {min(bad)} on (of the depths checked) float32's hypergradient is off by half its norm "
                "or more, so the runs at those depths followed rounding-dominated hypergradients"
                if bad else "at every depth checked float32's hypergradient is within half its norm of float64's")
    t = result.runs[result.runs.method != "uniform"]
    stuck = t[t.alpha_max <= result.config.outer_lr * (1 + 1e-6)]
    out["stuck"] = (", ".join(f"{arm(m, d)} seed {s}" for m, d, s in zip(stuck.method, stuck.depth, stuck.seed))
                    or "none")
    out["n_stuck"], out["n_trained"] = len(stuck), len(t)
    try:
        w = token_weight_table(result).drop(columns=["position", "token"]).groupby("role").mean()
        out["weights"] = "; ".join(f"{a}: " + ", ".join(f"{r} {w[a][r]:.2f}" for r in w.index) for a in w.columns)
    except (FileNotFoundError, KeyError, ValueError):
        out["weights"] = "not available"
    extra = [arm("rmd", d) for d in result.config.rmd_extra_depths]
    s = _summary(result).set_index("arm")
    out["f1_extra"] = "; ".join(f"depth {a.split('-d')[1]}: {s.f1[a]:.1f} ± {np.nan_to_num(s.f1_ci[a]):.1f}"
                                for a in extra if a in s.index) or "not run at this scale"
    return out


# ------------------------------------------------------------------------------ the claims' evidence
def evidence_rows(folder: Path) -> pd.DataFrame:
    """One row per run (arm ``uniform`` / ``rmd-d<depth>`` / ``fg2u-d<depth>``, seed, em, f1,
    answer_nll, divergence on the outer loss averaged over windows of ``SMOOTH`` steps: each
    step draws new documents) and one row of arm ``page`` with the memory metrics."""
    from ...divergence import detect
    rows = []
    for f in sorted(Path(folder).glob("*_s[0-9]*.json")):
        p = json.loads(f.read_text())
        c, r = p["config"], p["result"]
        sm = r.get("outer_loss_smoothed", [])
        d = detect(sm, steps=r.get("steps"), final_metrics=[r["f1"], r["answer_nll"]])
        div = (d.diverged, d.reason, d.at_step)
        if r.get("nonfinite_hypergradient_at") and not d.diverged:  # the run stopped there
            div = (True, "non-finite hypergradient", r["nonfinite_hypergradient_at"])
        rows.append({"arm": arm(c["method"], c["depth"]), "seed": c["seed"], "depth": c["depth"],
                     **{k: r[k] for k in ("em", "f1", "answer_nll")}, "diverged": div[0],
                     "diverged_reason": div[1], "diverged_at": div[2]})
    mem_file = Path(folder) / "memory.json"
    if mem_file.is_file():
        p = json.loads(mem_file.read_text())
        mem = pd.DataFrame(p["result"])
        rows.append({"arm": "page", "seed": 0, **memory_metrics(mem, _budget_depth(p)),
                     "diverged": False, "diverged_reason": None, "diverged_at": None})
    return pd.DataFrame(rows)


def _budget_depth(payload: dict) -> int:
    return int(payload["config"]["budget_depth"])
