"""Sentences for the theory pages' prose, computed from their results (``metagrad.tasks.theory``)
so that what a page says about its checks follows the numbers (pure functions, each tested)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def _g(x: float, digits: int = 3) -> str:
    return f"{float(x):.{digits}g}"


def sign_tail(T: np.ndarray, ratio: np.ndarray) -> tuple[int, int]:
    """``(s, T_from)``: the sign s ∈ {−1, 0, 1} of the last ratio and the smallest T of the grid
    from which every ratio has that sign (the grid sorted by T)."""
    order = np.argsort(T)
    T, ratio = np.asarray(T)[order], np.sign(np.asarray(ratio, float)[order])
    s = int(ratio[-1])
    i = len(ratio) - 1
    while i > 0 and ratio[i - 1] == s:
        i -= 1
    return s, int(T[i])


# ------------------------------------------------------------------------------ greedy descent
def descent_sentences(res: dict, verdict: pd.DataFrame) -> dict:
    """The words of theory_greedy_descent's result paragraph, from ``res`` of
    :func:`metagrad.tasks.theory.greedy_descent` and the base variant's ``verdict``
    (:func:`~metagrad.tasks.theory.check_greedy_descent`)."""
    S, R = res["summary"].set_index("variant"), res["ratios"]
    out = {}
    base = S.loc["all assumptions"]
    rb = R[R.variant == "all assumptions"]
    T_arg = int(rb["T"].iloc[int(np.argmin(rb["ratio"].to_numpy()))])
    out["base_argmin"] = T_arg
    out["base_final"] = (f"{_g(base.ratio_at_T_max)} at T = {int(rb['T'].max())} "
                         f"(the limit of the remark: {_g(base.limit_T_inf)})")
    holds = bool(verdict.holds.all())
    if holds:
        txt = "every assumption holds and c > 0, so the theorem's conclusion holds on the grid"
        if base.min_ratio_all_T <= 0:
            txt += (f"; below T₀ the ratio is not always positive (smallest at T = {T_arg}), "
                    "so \"large enough T\" is needed")
        else:
            txt += "; the ratio is positive at every T of the grid, so here no large T is needed"
    else:
        failing = "; ".join(verdict.loc[~verdict.holds, "check"])
        txt = f"the check fails ({failing}), so the theorem is not confirmed on this problem"
    out["base_verdict"] = txt + "."
    for key, v in (("hess", "ill-conditioned Hessian"), ("nc", "non-convex L_val")):
        r = R[R.variant == v]
        s, T_from = sign_tail(r["T"].to_numpy(), r["ratio"].to_numpy())
        out[f"{key}_sign"], out[f"{key}_from"] = s, T_from
    s, T_from = out["hess_sign"], out["hess_from"]
    out["hess_words"] = (
        f"**negative** at every T ≥ {T_from} of the grid: for those T the greedy direction is an "
        "ascent direction. Assumption 6 is not a technicality." if s < 0 else
        "positive at the largest T of the grid: breaking assumption 6 did not reverse the greedy "
        "direction here.")
    gc = S.loc["γ ≠ 1 − η"].c_min_ratio_T_ge_T0
    out["gamma_words"] = (
        "for T ≥ T₀ the ratio stays positive" if gc > 0 else "for T ≥ T₀ the ratio is not always positive")
    out["gamma_tail"] = (
        "with an identity Hessian the wrong γ only rescales d̂ in the limit, and the sign is kept here"
        if gc > 0 else "the sign is not kept on this grid")
    nc = S.loc["non-convex L_val"]
    out["nc_final"] = (f"ends at {_g(nc.ratio_at_T_max)} at T = {int(R[R.variant == 'non-convex L_val']['T'].max())}"
                       f" (the remark's limit for H = I: {_g(nc.limit_T_inf)})")
    lead = "Strong convexity is used by the proof (through T₀), "
    out["nc_words"] = lead + ("but its absence does not break descent for the large T of the grid here."
                              if nc.c_min_ratio_T_ge_T0 > 0 else
                              "and without it the ratio is not positive over the whole second half of the grid here.")
    return out


# ------------------------------------------------------------------------------ exactness
def exactness_sentences(res: dict, verdict: pd.DataFrame, *, family: str = "mlp_momentum") -> dict:
    """The words of theory_exactness's result paragraph, from ``res`` of
    :func:`metagrad.tasks.theory.exactness` and its ``verdict``
    (:func:`~metagrad.tasks.theory.check_exactness`)."""
    out = {}
    exact = verdict[verdict.check.str.contains(" vs central FD| vs closed form")]
    failing = exact.loc[~exact.holds, "check"]
    out["exact_words"] = ("both are exact within the checks' tolerances" if len(exact) and failing.empty
                          else "the exactness check fails for " + "; ".join(failing) if len(failing)
                          else "no exactness check ran")
    tr = res["truncation"]
    quad = tr[tr.problem == "quadratic"]
    if len(quad) and quad["bound"].notna().all():
        r = float((quad.rel_err / quad.bound).max())
        out["shaban_ratio"] = r
        out["shaban_words"] = (
            f"holds with room to spare: the error is at most {_g(r, 2)} times the bound" if r <= 0.1 else
            f"holds: the error is at most {_g(r, 2)} times the bound" if r <= 1 else
            f"does not hold: the error reaches {_g(r, 2)} times the bound")
    else:
        out["shaban_ratio"], out["shaban_words"] = math.nan, "is not evaluated at this scale"
    allp = tr[(tr.problem == family) & (tr.part == "all of α")]
    T = int(allp["T"].iloc[0]) if len(allp) else 0
    before = allp[allp.K < T]
    if len(before):
        lo = float(before.rel_err.min())
        at_T = float(allp.loc[allp.K == T, "rel_err"].iloc[0])
        out["all_min"] = lo
        out["all_words"] = (
            f"On the MLP the error over all of α is at least {_g(lo, 3)} for every K < T and "
            f"{_g(at_T, 2)} at K = T: the learned initialisation dominates the hypergradient and enters only "
            "through w₀, which only K = T reaches." if lo >= 0.5 else
            f"On the MLP the error over all of α falls to {_g(lo, 3)} before K = T.")
    else:
        out["all_min"], out["all_words"] = math.nan, ""
    opt = tr[(tr.problem == family) & (tr.part != "all of α")]
    n = int((opt.rel_err.diff().iloc[1:] > 0).sum()) if len(opt) else 0
    out["opt_increases"] = n
    if not len(opt):
        out["opt_words"] = ""
    elif n:
        out["opt_words"] = (
            f"For the optimiser hyperparameters alone the error is not monotone in K: it increases from "
            f"one K to the next {n} times out of {T} (with momentum the terms that truncation discards "
            "can oscillate in sign instead of decaying steadily), so back-propagating through more "
            "steps does not always make TRGU more accurate until K = T.")
    else:
        out["opt_words"] = (
            f"For the optimiser hyperparameters alone the error decreases at each of the {T} steps "
            "from K = 0 to K = T: here back-propagating through more steps always makes TRGU more accurate.")
    return out
