r"""The two-dimensional toy problem of the generalized greedy paper (Figure 2).

Taken by the paper from Shaban et al. (2019), PAPERS.md part B.3:

.. math::
    L_{train}(w, \alpha) = \tfrac12 (w - \alpha)^\top G (w - \alpha), \quad G = \mathrm{diag}(1, \tfrac12),
    \qquad L_{val}(w) = \|w\|^2 + 10\,\|\sin w\|^2,

``w, α ∈ R²``; inner plain SGD (lr 0.1) for T steps from ``w_0 = (2, 2)``; outer plain SGD
(lr 0.1) from ``α_0 = (1, 1)``. Every outer step starts the inner run afresh from ``w_0``.
Because SGD on a quadratic is linear, the unrolled solution has a closed form,

.. math:: w_T = \alpha + A^T (w_0 - \alpha),\quad A = I - \eta G, \qquad
          \nabla F(\alpha) = (I - A^T)\,\nabla L_{val}(w_T),\quad
          \nabla L_{val}(w) = 2w + 10 \sin 2w,

(:func:`exact_hypergrad`, checked against ``rmd`` and finite differences by the tests).

Each method follows its *own* trajectory of α; at every iterate we record the validation
loss :math:`F(\alpha_k)` and the cosine between the method's hypergradient and the exact one
(``rmd``) at that same iterate. One result file per (T, method, seed) through
:func:`metagrad.results.cached`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import BilevelProblem, SGD, hypergrad
from ..errors import check
from ..config import config_from_params
from ..results import cached, repo_root

__all__ = ["ToyConfig", "ToyResult", "make_problem", "exact_hypergrad", "val_loss", "resolve_device",
           "method_runs", "trajectory", "run", "summary_table", "common_steps", "cosine_prefix_table",
           "diagonal_cosine_floor",
           "cost_check", "plot_curves", "facts", "setup_table"]

#: Methods by their name in :func:`metagrad.hypergrad`; greedy runs at every γ in
#: ``ToyConfig.gammas`` and (FG)²U at every b in ``ToyConfig.fg2u_bs``.
METHODS = ("rmd", "neumann", "t1t2", "greedy", "fg2u")
STOCHASTIC = {"fg2u"}


from ..config import resolve_device  # noqa: F401


@dataclass(frozen=True)
class ToyConfig:
    """Everything that defines the toy experiment (defaults: the paper's setting, smoke length)."""
    scale: str = "smoke"
    horizons: tuple = (5, 10)
    methods: tuple = METHODS
    gammas: tuple = (0.9, 0.5, 0.3)
    fg2u_bs: tuple = (1, 2)
    neumann_K: int = 5
    seeds: tuple = (0,)                 # seeds of the stochastic method (FG)²U
    steps: int = 1000
    inner_lr: float = 0.1
    outer_lr: float = 0.1
    G: tuple = (1.0, 0.5)
    w0: tuple = (2.0, 2.0)
    alpha0: tuple = (1.0, 1.0)
    device: str = "auto"
    dtype: str = "float64"
    results_dir: str = "results/greedy_toy"

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(METHODS))
        check(not unknown, f"unknown methods {unknown}; choose from {list(METHODS)}")
        check(all(0 < g <= 1 for g in self.gammas), f"gammas must be in (0, 1], got {self.gammas}")
        check(all(isinstance(t, int) and t >= 1 for t in self.horizons), f"horizons must be integers >= 1, got {self.horizons}")
        check(isinstance(self.steps, int) and self.steps >= 1, f"steps must be an integer >= 1, got {self.steps!r}")
        check(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}")
        check(len(self.G) == len(self.w0) == len(self.alpha0), "G, w0 and alpha0 must have the same length")

    @classmethod
    def from_params(cls, **params) -> "ToyConfig":
        """From a notebook's parameters: lists become tuples, unknown keys are refused."""
        return config_from_params(cls, params)

    def problem_key(self) -> dict:
        """The fields that define one run's computation (not where it is stored or shown)."""
        d = asdict(self)
        for k in ("scale", "horizons", "methods", "gammas", "fg2u_bs", "seeds", "device",
                  "results_dir"):
            d.pop(k)
        return d


# ------------------------------------------------------------------------------ the problem
def val_loss(w: torch.Tensor) -> torch.Tensor:
    r""":math:`L_{val}(w) = \|w\|^2 + 10\|\sin w\|^2`."""
    return (w ** 2).sum() + 10 * (torch.sin(w) ** 2).sum()


def _inner(w, a, batch):
    d = w["w"] - a["alpha"]
    return 0.5 * (d * batch["G"] * d).sum()


def _outer(w, a, batch):
    return val_loss(w["w"])


def make_problem(T: int, *, G=(1.0, 0.5), w0=(2.0, 2.0), alpha0=(1.0, 1.0), inner_lr: float = 0.1,
                 dtype=torch.float64, device="cpu") -> tuple[BilevelProblem, dict]:
    """``(problem, alpha0)`` of the toy problem with horizon ``T`` on ``device``."""
    kw = dict(dtype=dtype, device=device)
    data = {"G": torch.tensor(G, **kw)}
    problem = BilevelProblem(_inner, _outer, init={"w": torch.tensor(w0, **kw)}, optimizer=SGD(lr=inner_lr),
                             T=T, inner_batches=data, outer_batch=data)
    return problem, {"alpha": torch.tensor(alpha0, **kw)}


def exact_hypergrad(problem: BilevelProblem, alpha: dict) -> dict:
    r"""Closed form :math:`\nabla F = (I - A^T)\nabla L_{val}(w_T)`, :math:`A = I - \eta G`."""
    a, G, eta = alpha["alpha"], problem.outer_batch["G"], problem.optimizer.lr
    decay = (1 - eta * G) ** problem.T
    w_T = a + decay * (problem.init["w"] - a)
    return {"alpha": (1 - decay) * (2 * w_T + 10 * torch.sin(2 * w_T))}


# ------------------------------------------------------------------------------ one run
def method_runs(cfg: ToyConfig) -> list[tuple[str, str, dict, int]]:
    """``(key, method, options, seed)`` of every run at one horizon, in display order."""
    out = []
    for m in cfg.methods:
        if m == "greedy":
            out += [(f"greedy{g:g}", m, {"gamma": g}, 0) for g in cfg.gammas]
        elif m == "fg2u":
            out += [(f"fg2u-b{b}", m, {"b": b}, s) for b in cfg.fg2u_bs for s in cfg.seeds]
        elif m == "neumann":
            out.append((f"ift{cfg.neumann_K}", m, {"K": cfg.neumann_K}, 0))
        else:
            out.append((m, m, {}, 0))
    return out


def label(key: str) -> str:
    """Display name of a run key (``greedy0.9`` → ``greedy γ=0.9``)."""
    if key.startswith("greedy"):
        return f"greedy γ={key[6:]}"
    if key.startswith("fg2u-b"):
        return f"(FG)²U b={key[6:]}"
    if key.startswith("ift"):
        return f"IFT({key[3:]})"
    return {"rmd": "full (RMD)", "t1t2": "T1−T2"}[key]


def _cosine(g: torch.Tensor, e: torch.Tensor, tol: float = 1e-8) -> float:
    """cos(g, e); NaN where either vector is below ``tol`` in norm: at a stationary point of
    F (``e`` ≈ 0) there is no direction to match, and once a method's own hypergradient has
    vanished (``g`` ≈ 0, its iteration has stopped) its direction is rounding noise."""
    ne, ng = float(e.norm()), float(g.norm())
    if ne < tol or ng < tol:
        return math.nan
    return float(g @ e) / (ng * ne)


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def trajectory(cfg: ToyConfig, T: int, method: str, options: dict, seed: int = 0) -> dict:
    """Outer SGD on α for ``cfg.steps`` steps with ``method``; at each iterate α_k the loss
    F(α_k) and the cosine with the exact (``rmd``) hypergradient at α_k. JSON-ready."""
    device = resolve_device(cfg.device)
    problem, alpha = make_problem(T, G=cfg.G, w0=cfg.w0, alpha0=cfg.alpha0, inner_lr=cfg.inner_lr,
                                  dtype=getattr(torch, cfg.dtype), device=device)
    problem.validate(alpha)
    losses, cosines, cost = [], [], None
    for step in range(cfg.steps):
        opts = dict(options)
        if method in STOCHASTIC:
            opts["seed"] = seed * 1_000_003 + step
        res = hypergrad(problem, alpha, method, validate=False, **opts)
        exact = res if method == "rmd" else hypergrad(problem, alpha, "rmd", validate=False)
        losses.append(_sig(float(res.loss)))
        cosines.append(_sig(_cosine(res.grad["alpha"], exact.grad["alpha"])))
        cost = cost or {k: getattr(res.cost, k) for k in ("jvps", "vjps", "hvps", "inner_steps")}
        alpha = {"alpha": alpha["alpha"] - cfg.outer_lr * res.grad["alpha"]}
    return {"loss": losses, "cosine": cosines, "alpha_final": [_sig(x) for x in alpha["alpha"].tolist()],
            "cost": cost}


# ------------------------------------------------------------------------------ the experiment
@dataclass
class ToyResult:
    """``curves``: one row per (T, run, seed, step) with ``loss`` and ``cosine``; ``runs``: one
    row per (T, run, seed) with the final loss, the mean cosine and the cost of one hypergradient."""
    curves: pd.DataFrame
    runs: pd.DataFrame
    wall_time_s: float
    config: ToyConfig = field(repr=False, default=None)


def run(cfg: ToyConfig, *, force: bool = False) -> ToyResult:
    """Every (T, method, seed) trajectory, each a cached JSON file under
    ``results_dir/<scale>/``; finished runs are loaded, never recomputed."""
    start = time.perf_counter()
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    curves, rows = [], []
    for T in cfg.horizons:
        for key, method, options, seed in method_runs(cfg):
            run_cfg = {"problem": cfg.problem_key(), "T": T, "method": method, "options": options, "seed": seed}
            payload = cached(Path(out_dir) / f"T{T}_{key}_s{seed}.json", run_cfg, force=force,
                             compute=lambda: trajectory(cfg, T, method, options, seed),
                             device=str(resolve_device(cfg.device)))
            r = payload["result"]
            loss = np.array(r["loss"], dtype=float)
            cos = np.array(r["cosine"], dtype=float)
            curves.append(pd.DataFrame({"T": T, "key": key, "method": label(key), "seed": seed,
                                        "step": np.arange(len(loss)), "loss": loss, "cosine": cos}))
            increase = float(np.max(np.diff(loss), initial=0.0))
            finite = np.isfinite(cos)
            rows.append({"T": T, "key": key, "method": label(key), "seed": seed,
                         "final loss": loss[-1], "min loss": loss.min(),
                         "defined steps": int(np.argmin(finite)) if not finite.all() else len(cos),
                         "largest increase": increase,
                         "#JVPs": r["cost"]["jvps"] + r["cost"]["vjps"] + r["cost"]["hvps"],
                         "alpha_final": tuple(r["alpha_final"]),
                         "run_wall_time_s": payload["provenance"]["wall_time_s"]})
    runs, curves = pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
    k = common_steps(runs)
    runs["common steps"] = runs["T"].map(k)
    runs["mean cosine"] = [float(np.nanmean(g.cosine.to_numpy()[:kk])) if kk else math.nan
                           for (_, g), kk in zip(curves.groupby(["T", "key", "seed"], sort=False), runs["common steps"])]
    return ToyResult(curves, runs, time.perf_counter() - start, cfg)


def common_steps(runs: pd.DataFrame) -> pd.Series:
    """Per horizon T: the number k of leading outer steps on which every method of the paper
    (all but the stochastic (FG)²U) has a defined cosine. Mean cosines are taken over these k
    steps only, so that every method is averaged over the same iterates: a method that has
    converged has no direction left to compare, and averaging each method over its own steps
    compares different things (e.g. greedy near its biased stopping point against RMD before
    it converges)."""
    paper = runs[~runs.key.str.startswith("fg2u")]
    return (paper if len(paper) else runs).groupby("T")["defined steps"].min()


def diagonal_cosine_floor(cfg: "ToyConfig", T: int, other: str = "t1t2") -> float:
    """The smallest possible cosine, over every α, between the exact hypergradient
    (I − A^T)∇L_val(w_T) and T1−T2's ηG∇L_val(w_T) (``other="t1t2"``) or IFT(K)'s
    (I − A^{K+1})∇L_val(w_T) (``other="ift"``): both are positive diagonal matrices times the
    same vector, so by the Kantorovich inequality cos ≥ 2√κ / (1 + κ), κ the condition number
    of the diagonal ratio D_exact / D_other."""
    G = np.asarray(cfg.G, float)
    A = 1.0 - cfg.inner_lr * G
    exact = 1.0 - A ** T
    d = cfg.inner_lr * G if other == "t1t2" else 1.0 - A ** (cfg.neumann_K + 1)
    r = exact / d
    kappa = float(r.max() / r.min())
    return 2.0 * math.sqrt(kappa) / (1.0 + kappa)


def cosine_prefix_table(result: "ToyResult", ks=(5, 10, 20)) -> pd.DataFrame:
    """Mean cosine with the exact hypergradient over the first k outer steps, for each k in
    ``ks`` and for the common steps: how each method's direction evolves along its run."""
    c = result.curves
    rows = []
    for (T, key, method), g in c.groupby(["T", "key", "method"], sort=False):
        cos = g.groupby("step").cosine.mean().to_numpy()
        k_common = int(result.runs.loc[result.runs["T"] == T, "common steps"].iloc[0])
        row = {"T": T, "method": method}
        for k in ks:
            row[f"first {k}"] = round(float(np.nanmean(cos[:k])), 3) if k <= k_common else math.nan
        row["common steps k"] = k_common
        row["first k (common)"] = round(float(np.nanmean(cos[:k_common])), 3) if k_common else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index(["T", "method"])


def summary_table(result: ToyResult) -> pd.DataFrame:
    """Per (T, method): final and minimum validation loss, mean cosine with the exact
    hypergradient over the common steps (:func:`common_steps`), largest one-step increase of
    the loss (mean over seeds)."""
    g = result.runs.groupby(["T", "key", "method"], sort=False)
    t = g[["final loss", "min loss", "mean cosine", "common steps", "largest increase", "#JVPs"]].mean().reset_index()
    t["common steps"] = t["common steps"].astype(int)
    t["seeds"] = g.size().to_numpy()
    t = t.drop(columns="key").round({"final loss": 4, "min loss": 4, "mean cosine": 3, "largest increase": 4})
    t["#JVPs"] = t["#JVPs"].astype(int)
    return t


# ------------------------------------------------------------------------------ measurement checks
def cost_check(result: ToyResult) -> pd.DataFrame:
    """Products per hypergradient measured by the library against each method's definition:
    RMD T VJPs, IFT(K) K+1 HVPs, T1−T2 1 VJP, greedy T VJPs, (FG)²U T·b JVPs."""
    r = result.runs.drop_duplicates(["T", "key"])

    def expected(T, key):
        if key.startswith("ift"):
            return int(key[3:]) + 1
        if key.startswith("fg2u-b"):
            return T * int(key[6:])
        return {"t1t2": 1}.get(key, T)
    exp = [expected(T, k) for T, k in zip(r["T"], r["key"])]
    return pd.DataFrame({"T": r["T"], "method": r["method"], "#JVPs measured": r["#JVPs"],
                         "#JVPs by definition": exp, "ok": r["#JVPs"].to_numpy() == np.array(exp)}
                        ).reset_index(drop=True)


# ------------------------------------------------------------------------------ presentation
def plot_curves(result: ToyResult, *, smooth: int = 25):
    """Figure 2: validation loss (top) and cosine with the exact hypergradient (bottom) against
    outer steps, one column per horizon. (FG)²U's cosine is a rolling mean over ``smooth``
    steps (it is a fresh random draw every step) and averaged over seeds."""
    from metagrad.figures import colors, legend_outside, subplots
    cfg, c = result.config, result.curves.copy()
    c["step"] = c["step"] + 1
    noisy = c.key.str.startswith("fg2u")
    c.loc[noisy, "cosine"] = (c[noisy].groupby(["T", "key", "seed"])["cosine"]
                              .transform(lambda s: s.rolling(smooth, min_periods=1).mean()))
    c = c.groupby(["T", "key", "method", "step"], sort=False)[["loss", "cosine"]].mean().reset_index()
    order = list(dict.fromkeys(c.method))
    palette = dict(zip(order, colors(len(order))))
    fig, axes = subplots(len(cfg.horizons), 2, panel=(3.4, 2.4), sharex=True)
    for j, T in enumerate(cfg.horizons):
        cT = c[c["T"] == T]
        for m in order:
            cm = cT[cT.method == m]
            ls = "--" if m.startswith("(FG)") else "-"
            axes[0][j].plot(cm.step, cm.loss, ls, color=palette[m], lw=1.2, label=m)
            axes[1][j].plot(cm.step, cm.cosine, ls, color=palette[m], lw=1.0)
        axes[0][j].set_title(f"T = {T}")
        axes[0][j].set_yscale("symlog", linthresh=1e-2)
        axes[1][j].set_ylim(-1.05, 1.05)
        axes[1][j].set_xlabel("outer step")
        axes[1][j].set_xscale("log")
    for j in range(len(cfg.horizons)):
        axes[0][j].set_ylabel("validation loss F(α)")
        axes[1][j].set_ylabel("cosine with exact ĝ")
    legend_outside(fig, where="below", ncols=3)
    return fig


def _tup(xs) -> str:
    return ", ".join(f"{x:g}" for x in xs)


def setup_table(cfg: ToyConfig) -> pd.DataFrame:
    """Our settings beside the paper's (PAPERS.md B.3)."""
    rows = [
        ("problem", f"L_train = ½(w−α)ᵀG(w−α), G = diag({_tup(cfg.G)}); L_val = ‖w‖² + 10‖sin w‖²",
         "G = diag(1, 1/2), same losses"),
        ("start", f"w₀ = ({_tup(cfg.w0)}), α₀ = ({_tup(cfg.alpha0)})", "w₀ = (2, 2), α₀ = (1, 1)"),
        ("inner / outer optimiser", f"SGD lr {cfg.inner_lr:g} / SGD lr {cfg.outer_lr:g}", "SGD lr 0.1 / SGD lr 0.1"),
        ("horizons T", ", ".join(map(str, cfg.horizons)), "5, 10 (text: also 20)"),
        ("outer steps", str(cfg.steps), "1 000"),
        ("methods", "full (RMD), IFT(%d) (Neumann), T1−T2, greedy γ ∈ {%s}, (FG)²U b ∈ {%s}" % (
            cfg.neumann_K, ", ".join(f"{g:g}" for g in cfg.gammas), ", ".join(map(str, cfg.fg2u_bs))),
         "full, IFT(2 or 5), T1−T2, greedy γ ∈ {0.9, 0.5, 0.3}"),
        ("(FG)²U seeds", str(len(cfg.seeds)), "—"),
    ]
    return pd.DataFrame(rows, columns=["", "ours", "paper"])


def facts(result: ToyResult) -> dict:
    """Numbers for the page's prose (to ``glue``): final losses and common-step cosines."""
    runs = result.runs.groupby(["T", "key"])[["final loss", "mean cosine", "common steps"]].mean()
    out = {"steps": result.config.steps, "horizons": ", ".join(map(str, result.config.horizons))}
    for T in result.config.horizons:
        for key in ("rmd", "t1t2", "greedy0.9", f"ift{result.config.neumann_K}"):
            if (T, key) in runs.index:
                k = key.replace(".", "")
                out[f"loss_{k}_T{T}"] = round(float(runs.loc[(T, key), "final loss"]), 3)
                out[f"cos_{k}_T{T}"] = round(float(runs.loc[(T, key), "mean cosine"]), 3)
        if (T, "rmd") in runs.index:
            out[f"k_T{T}"] = int(runs.loc[(T, "rmd"), "common steps"])
    return out


def _loss_str(x: float) -> str:
    return f"{x:.4f}"


def _at(Ts) -> str:
    return "T = " + ", ".join(str(int(T)) for T in Ts)


def greedy_sentences(summary: pd.DataFrame, prefix: pd.DataFrame, gamma: float = 0.9) -> dict:
    """Sentences for the page's paragraph on the greedy estimator, computed from
    :func:`summary_table` and :func:`cosine_prefix_table` (so that they follow the runs):

    * ``first``: greedy γ's mean cosine over the first 5 outer steps per T;
    * ``common``: greedy γ's mean cosine over the common steps per T and its sign;
    * ``drift``: whether that cosine is lower on the common steps than over the first 5 steps;
    * ``loss``: each greedy run's final validation loss beside the exact method's, at which T
      every greedy run ends above it and at which T the final loss grows with γ.
    """
    lab, exact = f"greedy γ={gamma:g}", "full (RMD)"
    s = summary.set_index(["T", "method"])
    Ts = [T for T in dict.fromkeys(summary["T"]) if (T, lab) in s.index]
    out = {}
    if not Ts:
        return {"first": "not defined (no run)", "common": f"No {lab} run at this scale.", "drift": "", "loss": ""}
    cos = {T: float(s.loc[(T, lab), "mean cosine"]) for T in Ts}
    neg, pos = [T for T in Ts if cos[T] < 0], [T for T in Ts if cos[T] > 0]
    vals = ", ".join(f"{cos[T]:.3f} at T = {T}" for T in Ts)
    if len(neg) == len(Ts):
        word = ("negative at every horizon: averaged over the iterates on which every method is "
                "compared, its direction points away from the exact hypergradient")
    elif len(pos) == len(Ts):
        word = ("positive at every horizon: averaged over the iterates on which every method is "
                "compared, its direction points with the exact hypergradient")
    else:
        word = f"negative at {_at(neg)} and positive at {_at(pos)}" if neg and pos else f"zero at {_at(Ts)}"
    out["common"] = (f"On the common steps greedy γ = {gamma:g}'s mean cosine with the exact hypergradient "
                     f"is {vals}, {word}.")
    early = {T: float(prefix.loc[(T, lab), "first 5"]) for T in Ts
             if (T, lab) in prefix.index and np.isfinite(prefix.loc[(T, lab), "first 5"])}
    out["first"] = (", ".join(f"{early[T]:.3f} at T = {T}" for T in early)
                    or "not defined (fewer than 5 common steps)")
    lower = [T for T in early if cos[T] < early[T]]
    if not early:
        out["drift"] = "The runs are too short to compare the first 5 steps with the common steps."
    elif len(lower) == len(early):
        out["drift"] = f"Its mean cosine is lower on the common steps than over the first 5 steps at every horizon: its direction degrades along the run."
    elif lower:
        out["drift"] = f"Its mean cosine is lower on the common steps than over the first 5 steps at {_at(lower)} only."
    else:
        out["drift"] = "Its mean cosine is not lower on the common steps than over the first 5 steps at any horizon."
    parts, above, grows = [], [], []
    for T in Ts:
        g = s.loc[T]
        greedy = g[g.index.str.startswith("greedy γ=")]["final loss"]
        gam = {float(m.split("=")[1]): float(v) for m, v in greedy.items()}
        txt = ", ".join(f"{_loss_str(gam[k])} (γ = {k:g})" for k in sorted(gam, reverse=True))
        if exact in g.index:
            e = float(g.loc[exact, "final loss"])
            parts.append(f"{txt} against {_loss_str(e)} for {exact} at T = {T}")
            if all(v > e for v in gam.values()):
                above.append(T)
        else:
            parts.append(f"{txt} at T = {T}")
        order = [gam[k] for k in sorted(gam)]
        if len(order) > 1 and all(a < b for a, b in zip(order, order[1:])):
            grows.append(T)
    txt = "Final validation loss of greedy: " + "; ".join(parts) + ". "
    if above:
        txt += (f"Every greedy run ends above the exact method at {_at(above)}"
                + (f" (not at {_at([T for T in Ts if T not in above])})" if len(above) < len(Ts) else "") + ". ")
    else:
        txt += "No horizon has every greedy run ending above the exact method. "
    if grows:
        txt += (f"The final loss grows with γ at {_at(grows)}"
                + (f" (not at {_at([T for T in Ts if T not in grows])})" if len(grows) < len(Ts) else "")
                + ".")
    else:
        txt += "At no horizon does the final loss grow with γ."
    out["loss"] = txt
    return out
