"""The PDE page's prose about our results against the paper's, computed from the runs (pure
functions of :meth:`PDEExperiment.summary` and :attr:`PDEExperiment.trajectories`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .pde import PAPER_TABLE

__all__ = ["NAMES", "paper_ratios", "pinn_vs_paper_md", "numerical_vs_paper_md", "drift", "drift_md", "pinn_vs_numerical_md"]

NAMES = {"burgers": "Burgers", "allen_cahn": "Allen–Cahn", "kdv": "KdV"}
_MEASURES = {"ratio_nu": "ε_ν", "ratio_u": "ε_u"}


def paper_ratios(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (equation, solver): our mean ε_ν and ε_u divided by the paper's (its table is in units
    of 1e-2 and 1e-3)."""
    s = summary.merge(PAPER_TABLE, on=["equation", "solver"])
    return pd.DataFrame({"equation": s.equation, "solver": s.solver,
                         "ratio_nu": 100 * s.eps_nu / s.eps_nu_e2, "ratio_u": 1000 * s.eps_u / s.eps_u_e3})


def _order(r: float, factor: float) -> str:
    if 1 / factor <= r <= factor:
        return "of the same order"
    return "larger" if r > factor else "smaller"


def pinn_vs_paper_md(ratios: pd.DataFrame, *, factor: float = 10.0) -> str:
    """Our PINN's errors against the paper's, per equation (ours / paper for ε_ν and ε_u), each
    worded "of the same order" within ``factor``, else larger or smaller."""
    r = ratios[ratios.solver == "pinn"]
    parts = []
    for _, row in r.iterrows():
        words = [f"{_MEASURES[k]} {row[k]:.2g}× the paper's ({_order(row[k], factor)})" for k in _MEASURES]
        parts.append(f"{NAMES.get(row.equation, row.equation)}: " + ", ".join(words))
    return (f"Our PINN's errors against the paper's (ours / paper; \"of the same order\" within a factor "
            f"{factor:g}): " + "; ".join(parts) + ".")


def numerical_vs_paper_md(ratios: pd.DataFrame, summary: pd.DataFrame, *, n_modes: int) -> str:
    """Whether our numerical-solver errors are smaller than the paper's (the largest ours / paper
    ratio over equations and both measures) and which equation keeps the largest ε_ν (for
    Burgers, with the shock as the likely cause at ``n_modes`` Fourier modes)."""
    r = ratios[ratios.solver == "spectral"].set_index("equation")[list(_MEASURES)]
    eq, k = r.stack().idxmax()
    worst = r.loc[eq, k]
    s = summary[summary.solver == "spectral"].set_index("equation").eps_nu
    head = (f"Our numerical-solver errors are *smaller* than the paper's on every equation and both "
            f"measures: at most {worst:.2g}× the paper's ({NAMES.get(eq, eq)}, {_MEASURES[k]})."
            if worst < 1 else
            f"Our numerical-solver errors are not all smaller than the paper's: {NAMES.get(eq, eq)}'s "
            f"{_MEASURES[k]} is {worst:.2g}× the paper's.")
    w = s.idxmax()
    why = (f": its shock (width ~ν) is the feature {n_modes} Fourier modes resolve worst" if w == "burgers" else "")
    return head + f" {NAMES.get(w, w)} keeps our largest ε_ν ({100 * s.max():.2g} %){why}."


def drift(trajectories: pd.DataFrame, *, frac: float = 0.1) -> pd.DataFrame:
    """Per run (equation, solver, seed): the relative change of ν over the last ``frac`` of the
    outer steps, |ν_end / ν_start − 1|, and whether ν moved away from the truth over them
    (|log ν/ν_true| grew)."""
    rows = []
    for (eq, solver, seed), g in trajectories.groupby(["equation", "solver", "seed"], sort=False):
        g = g.sort_values("step")
        last = g.step.iloc[-1]
        start = g[g.step <= last - frac * (last - g.step.iloc[0])].iloc[-1]
        end = g.iloc[-1]
        rows.append({"equation": eq, "solver": solver, "seed": seed,
                     "change": abs(end.nu / start.nu - 1),
                     "away": bool(abs(np.log(end.nu_ratio)) > abs(np.log(start.nu_ratio)))})
    return pd.DataFrame(rows)


def drift_md(d: pd.DataFrame, *, solver: str = "pinn", settled: float = 0.01, frac: float = 0.1) -> str:
    """Whether ``solver``'s ν has settled: its mean relative change over the last ``frac`` of the
    outer steps per equation (settled below ``settled``) and how many runs moved away from the truth."""
    d = d[d.solver == solver]
    per = d.groupby("equation", sort=False).agg(change=("change", "mean"), away=("away", "sum"), n=("away", "size"))
    parts = [f"{NAMES.get(e, e)} {100 * r.change:.2g} % ({int(r.away)} of {int(r.n)} runs moving away from the "
             "truth)" for e, r in per.iterrows()]
    moving = [NAMES.get(e, e) for e, r in per.iterrows() if r.change >= settled]
    text = (f"over the last {100 * frac:.0f} % of the outer steps ν still changes by: " + "; ".join(parts)
            + " (mean over seeds)")
    if len(moving) == len(per):
        return text + ", so it has not settled on any equation"
    if not moving:
        return text + f", so it has settled (less than {100 * settled:g} %) on every equation"
    return text + f", so it has not settled on {', '.join(moving)}"


def _pinn_over_numerical(s: pd.DataFrame, nu: str, u: str) -> tuple[float, float]:
    t = s.set_index(["equation", "solver"])
    eqs = [e for e in dict.fromkeys(s.equation) if (e, "pinn") in t.index and (e, "spectral") in t.index]
    r_nu = min(t.loc[(e, "pinn"), nu] / t.loc[(e, "spectral"), nu] for e in eqs)
    r_u = min(t.loc[(e, "pinn"), u] / t.loc[(e, "spectral"), u] for e in eqs)
    return float(r_nu), float(r_u)


def _times(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.2g}"


def pinn_vs_numerical_md(summary: pd.DataFrame) -> str:
    """How much worse the PINN route is than the numerical one: the smallest PINN / numerical
    ratio of ε_ν and of ε_u over our equations, beside the paper's on the same equations."""
    r_nu, r_u = _pinn_over_numerical(summary, "eps_nu", "eps_u")
    paper = PAPER_TABLE[PAPER_TABLE.equation.isin(set(summary.equation))]
    p_nu, p_u = _pinn_over_numerical(paper, "eps_nu_e2", "eps_u_e3")
    low = min(r_nu, r_u)
    word = ("orders of magnitude worse than" if low >= 100 else "worse than" if low > 1
            else "not worse everywhere than")
    return (f"{word} the numerical solver: at least {_times(r_nu)}× its ε_ν and {_times(r_u)}× its ε_u on "
            f"every equation (the paper's table, same equations: at least {_times(p_nu)}× and {_times(p_u)}×)")
