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


# ------------------------------------------------------------------------------ (FG)²U variance
def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (points with x, y > 0)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def variance_sentences(res: dict, verdict: pd.DataFrame, *, rate_tol: float = 0.1) -> dict:
    """The words of theory_fg2u_variance's result paragraph, from ``res`` of
    :func:`metagrad.tasks.theory.fg2u_variance` and its ``verdict``
    (:func:`~metagrad.tasks.theory.check_fg2u_variance`): the law's verdict, the fitted rate of
    the running mean (against −1/2, "close" within ``rate_tol``) and the bias verdict."""
    var = verdict[verdict.check.str.contains("measured/theory")]
    bad = int((~var.holds).sum())
    out = {"variance_words": (
        "within sampling error of 1 in every case (verdict below), for both Rademacher and Gaussian "
        "directions: the (N−1)/b and (N+1)/b laws hold, including the difference between the two "
        "distributions at small N" if bad == 0 and len(var) else
        f"outside sampling error of 1 in {bad} of {len(var)} cases (verdict below): the laws are not "
        "confirmed on every configuration")}
    slopes = {d: loglog_slope(g["m"], g["rel_err"]) for d, g in res["running"].groupby("distribution", sort=False)}
    out["slopes"] = slopes
    fit = ", ".join(f"{s:.3f} ({d})" for d, s in slopes.items())
    close = all(abs(s + 0.5) <= rate_tol for s in slopes.values())
    out["rate_words"] = (f"its relative error falls with a fitted log-log slope of {fit} in m, "
                         + ("close to" if close else "away from")
                         + " the −0.5 of the predicted 1/√m rate")
    unb = verdict[verdict.check.str.contains("unbiased")]
    biased = list(unb.loc[~unb.holds, "check"].str.split(":").str[0])
    out["bias_words"] = ("no detectable bias" if len(unb) and not biased
                         else "a bias is detected for " + ", ".join(biased) if biased else "bias not checked")
    return out


# ------------------------------------------------------------------------------ cost
def cost_sentences(res: dict, verdict: pd.DataFrame, *, tie: float = 0.01) -> dict:
    """The words of theory_cost's result paragraphs, from ``res`` of
    :func:`metagrad.tasks.theory.cost_scaling` and its ``verdict``
    (:func:`~metagrad.tasks.theory.check_cost_scaling`). Greedy and T1−T2 count as equally
    aligned when their cosines with RMD differ by less than ``tie``."""
    out = {}
    counts = verdict[verdict.check.str.contains("as documented")]
    bad = counts.loc[~counts.holds, "check"].str.split(":").str[0]
    out["counts_words"] = ("Every counter equals its documented formula at every T." if bad.empty else
                           "The counters differ from their documented formulas for " + ", ".join(bad) + ".")
    flat = verdict[verdict.check.str.contains("flat in T")]
    notflat = list(flat.loc[~flat.holds, "check"].str.split(":").str[0])
    E = res["exponents"].set_index("method")
    others = E.drop(index="rmd", errors="ignore").memory_exponent
    if not notflat:
        txt = f"every other estimator's is flat (exponent below {res['flat_exponent']:g})"
    else:
        txt = (f"not every other estimator's is flat: {', '.join(notflat)} reach an exponent of at least "
               f"{res['flat_exponent']:g}")
    out["memory_words"] = txt
    out["positive_words"] = (
        "The positive exponents below the threshold have a known source: the library keeps the inner "
        "loss of every step (and, for forward mode, of every direction) to detect divergence, 8 bytes "
        "per step and direction — negligible next to the trajectory RMD stores, but not literally constant."
        if len(others) and (others > 0).any() else "")
    failing = list(verdict.loc[~verdict.holds, "check"])
    out["thm_words"] = ("every check holds on this problem" if not failing else
                        "not confirmed on this problem; failing: " + "; ".join(failing))
    F = res["features"]
    for prop, key in (("linear complexity", "linear"), ("long horizon", "long")):
        f = F[(F.property == prop) & F.agrees.notna()]
        dis = list(f.loc[f.agrees.eq(False), "method"])
        out[f"{key}_words"] = (f"The *{prop}* row agrees with the slides in all {len(f)} measured cells."
                               if not dis else
                               f"The *{prop}* row disagrees with the slides for {', '.join(dis)} "
                               f"({len(dis)} of {len(f)} measured cells).")
    if {"greedy", "t1t2"} <= set(E.index):
        diff = float(E.loc["greedy", "cos_rmd_at_T_max"] - E.loc["t1t2", "cos_rmd_at_T_max"])
        out["greedy_diff"] = diff
        lead = f"greedy's cosine minus T1−T2's is {diff:+.3g}: "
        no_show = (", so whatever advantage greedy has at long horizons does not show in the direction "
                   "of a single hypergradient on this problem")
        out["greedy_words"] = lead + (
            f"greedy is less well aligned than the one-step T1−T2 here{no_show}" if diff <= -tie else
            f"greedy is no better aligned than the one-step T1−T2 here (the cosines differ by less than "
            f"{tie:g}){no_show}" if diff < tie else
            "greedy is better aligned than the one-step T1−T2 here")
    else:
        out["greedy_diff"], out["greedy_words"] = math.nan, "greedy or T1−T2 did not run"
    return out


# ------------------------------------------------------------------------------ (FG)²U convergence
def convergence_sentences(res: dict, verdict: pd.DataFrame) -> dict:
    """The words of theory_fg2u_convergence's result paragraph, from ``res`` of
    :func:`metagrad.tasks.theory.fg2u_convergence` and its ``verdict``
    (:func:`~metagrad.tasks.theory.check_fg2u_convergence`)."""
    s = res["summary"]
    i = s.max_ratio.idxmax()
    mx, b_arg, rho_arg = float(s.max_ratio.max()), int(s.b[i]), float(s.rho[i])
    out = {"rho_at_max": rho_arg, "four_max": 4 * mx}
    if mx <= 1:
        stays = "stays below the bound of the theorem for every b and every K of the run"
    elif verdict.holds.all():
        stays = ("exceeds the bound of the theorem somewhere, but not beyond its sampling error at any "
                 "checked K")
    else:
        stays = "exceeds the bound of the theorem beyond its sampling error (verdict below)"
    out["stays_words"] = stays
    out["tight_words"] = ("The bound is not loose by orders of magnitude" if mx >= 0.1 else
                          "The bound is loose by at least an order of magnitude")
    out["where_words"] = ("the bound is tightest for the largest b" if b_arg == int(s.b.max()) else
                          f"the bound is tightest for b = {b_arg}, not for the largest b")
    out["constant_words"] = (
        f"the constant 4 cannot be replaced by 1 on this problem (with 1, the largest ratio would be "
        f"{4 * mx:.3g})" if 4 * mx > 1 else
        f"on this problem even the constant 1 would do (with 1, the largest ratio would be {4 * mx:.3g})")
    return out


# ------------------------------------------------------------------------------ greedy limit
def limit_sentences(res: dict, verdict: pd.DataFrame, *, visible: float = 0.01) -> dict:
    """The words of theory_greedy_limit's result paragraph, from ``res`` of
    :func:`metagrad.tasks.theory.greedy_limit` and its ``verdict``
    (:func:`~metagrad.tasks.theory.check_greedy_limit`): linearity and the proposition from the
    checks; how far the distance departs from the first-order line γ‖c₁‖ at the largest γ (a
    bend is named when the departure is at least ``visible``, relative)."""
    slopes = verdict[verdict.check.str.contains("log-log slope")]
    out = {"linear_words": ("The distance to T1−T2 falls linearly with γ" if slopes.holds.all() else
                            "The distance to T1−T2 does not fall linearly with γ on every problem")}
    problems = list(res["fits"].problem)
    failing = list(verdict.loc[~verdict.holds, "check"])
    out["verdict_words"] = (
        f"holds on every problem checked ({', '.join(problems)})"
        + (", momentum included" if "mlp_momentum" in problems else "") if not failing else
        "is not confirmed; failing: " + "; ".join(failing))
    t = res["table"]
    top = t[t.gamma == t.gamma.max()]
    dev = {r.problem: r.distance / r.predicted - 1 for r in top.itertuples()}
    out["gamma_max"] = float(t.gamma.max())
    txt = ("the distance departs from the first-order line γ‖c₁‖ by "
           + ", ".join(f"{d:+.2%} ({p})" for p, d in dev.items()))
    big = [d for d in dev.values() if abs(d) >= visible]
    if big and all(d > 0 for d in big) and len(big) == len(dev):
        txt += ": the curves bend upward there, where the O(γ²) terms start to matter"
    elif big and all(d < 0 for d in big) and len(big) == len(dev):
        txt += ": the curves bend downward there, where the O(γ²) terms start to matter"
    elif not big:
        txt += f": less than {visible:.0%} on every problem, no visible bend"
    else:
        parts = [(f"upward on {', '.join(p for p, d in dev.items() if d >= visible)}"),
                 (f"downward on {', '.join(p for p, d in dev.items() if d <= -visible)}"),
                 (f"no visible bend on {', '.join(p for p, d in dev.items() if abs(d) < visible)}")]
        txt += ": the O(γ²) terms start to matter there, the curves bending " + "; ".join(
            x for x in parts if not x.endswith(" on "))
    out["bend_words"] = txt
    return out
