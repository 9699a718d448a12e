"""The theory pages' prose is computed from their results: each sentence changes with the numbers."""
import numpy as np
import pytest
import pandas as pd

from metagrad.tasks import theory_report as tr


def test_sign_tail_finds_where_the_last_sign_starts():
    assert tr.sign_tail(np.array([1, 2, 4, 8]), np.array([0.5, 0.1, -0.2, -0.3])) == (-1, 4)
    assert tr.sign_tail(np.array([8, 1, 4, 2]), np.array([1.0, -1.0, 1.0, -0.5])) == (1, 4)
    assert tr.sign_tail(np.array([1, 2]), np.array([0.3, 0.2])) == (1, 1)


def _descent(hess_tail, gamma_c, nc_c, base_min=-0.9):
    Ts = [1, 10, 100]
    ratios = {"all assumptions": [base_min, 0.95, 1.0], "ill-conditioned Hessian": [0.5, *hess_tail],
              "γ ≠ 1 − η": [-1.0, 2.0, 3.0], "non-convex L_val": [-0.4, 0.9, 1.0]}
    R = pd.DataFrame([dict(variant=v, T=T, ratio=r) for v, rs in ratios.items() for T, r in zip(Ts, rs)])
    S = pd.DataFrame([
        dict(variant="all assumptions", min_ratio_all_T=base_min, c_min_ratio_T_ge_T0=0.95, ratio_at_T_max=1.0, limit_T_inf=1.0),
        dict(variant="ill-conditioned Hessian", min_ratio_all_T=-0.3, c_min_ratio_T_ge_T0=-0.3, ratio_at_T_max=hess_tail[-1], limit_T_inf=-0.24),
        dict(variant="γ ≠ 1 − η", min_ratio_all_T=-1.0, c_min_ratio_T_ge_T0=gamma_c, ratio_at_T_max=3.0, limit_T_inf=3.0),
        dict(variant="non-convex L_val", min_ratio_all_T=-0.4, c_min_ratio_T_ge_T0=nc_c, ratio_at_T_max=1.0, limit_T_inf=1.0)])
    return {"summary": S, "ratios": R}


def test_descent_sentences_follow_the_signs():
    ok = pd.DataFrame({"check": ["a", "c"], "holds": [True, True]})
    w = tr.descent_sentences(_descent([-0.2, -0.25], 1.6, 0.9), ok)
    assert w["base_argmin"] == 1 and "\"large enough T\" is needed" in w["base_verdict"]
    assert w["hess_words"].startswith("**negative** at every T ≥ 10 of the grid")
    assert w["gamma_words"].endswith("stays positive") and "sign is kept" in w["gamma_tail"]
    assert "does not break descent" in w["nc_words"]
    w = tr.descent_sentences(_descent([-0.2, 0.1], -0.1, -0.2, base_min=0.2), ok)
    assert "no large T is needed" in w["base_verdict"]
    assert w["hess_words"].startswith("positive at the largest T")
    assert "not always positive" in w["gamma_words"] and "not kept" in w["gamma_tail"]
    assert "not positive over the whole second half" in w["nc_words"]
    bad = pd.DataFrame({"check": ["a", "c = min ratio"], "holds": [True, False]})
    assert "fails (c = min ratio)" in tr.descent_sentences(_descent([-0.2, -0.25], 1.6, 0.9), bad)["base_verdict"]


def _exactness(all_errs, opt_errs, quad_ratio):
    T = len(all_errs) - 1
    trunc = [dict(problem="quadratic", part="all of α", T=T, K=K, rel_err=quad_ratio * 0.5 ** K, bound=0.5 ** K)
             for K in range(T + 1)]
    trunc += [dict(problem="mlp_momentum", part=p, T=T, K=K, rel_err=e, bound=np.nan)
              for p, errs in (("all of α", all_errs), ("optimiser", opt_errs)) for K, e in enumerate(errs)]
    return {"truncation": pd.DataFrame(trunc)}


def test_exactness_sentences_follow_the_numbers():
    ok = pd.DataFrame({"check": ["quadratic: rmd vs central FD", "quadratic: rmd vs closed form", "x"],
                       "holds": [True, True, False]})
    w = tr.exactness_sentences(_exactness([1.0, 0.99, 0.98, 0.0], [1.0, 0.5, 0.7, 0.0], 0.55), ok)
    assert w["exact_words"].startswith("both are exact")
    assert w["shaban_words"] == "holds: the error is at most 0.55 times the bound"
    assert w["all_min"] == 0.98 and "at least 0.98 for every K < T" in w["all_words"]
    assert w["opt_increases"] == 1 and "not monotone" in w["opt_words"] and "1 times out of 3" in w["opt_words"]
    bad = ok.assign(holds=[True, False, True])
    w = tr.exactness_sentences(_exactness([1.0, 0.3, 0.2, 0.0], [1.0, 0.5, 0.2, 0.0], 2.0), bad)
    assert w["exact_words"] == "the exactness check fails for quadratic: rmd vs closed form"
    assert w["shaban_words"].startswith("does not hold")
    assert "falls to 0.2 before K = T" in w["all_words"]
    assert w["opt_increases"] == 0 and "always makes TRGU more accurate" in w["opt_words"]
    assert "room to spare" in tr.exactness_sentences(_exactness([1, 0], [1, 0], 0.05), ok)["shaban_words"]


def test_loglog_slope_recovers_a_power_law():
    m = np.array([1, 10, 100, 1000])
    assert tr.loglog_slope(m, 3 * m ** -0.5) == pytest.approx(-0.5)
    assert tr.loglog_slope(m, m ** -1.0) == pytest.approx(-1.0)


def test_variance_sentences_follow_the_verdict_and_the_rate():
    m = np.array([1, 10, 100, 1000])
    running = pd.DataFrame({"distribution": ["rademacher"] * 4 + ["gaussian"] * 4, "m": np.r_[m, m],
                            "rel_err": np.r_[m ** -0.5, 2 * m ** -0.52]})
    ok = pd.DataFrame({"check": ["rademacher, N=2, b=1: |measured/theory − 1|", "rademacher: unbiased, max |z|",
                                 "gaussian: unbiased, max |z|"], "holds": [True, True, True]})
    w = tr.variance_sentences({"running": running}, ok)
    assert w["variance_words"].startswith("within sampling error of 1 in every case")
    assert "-0.500 (rademacher), -0.520 (gaussian)" in w["rate_words"] and "close to" in w["rate_words"]
    assert w["bias_words"] == "no detectable bias"
    bad = ok.assign(holds=[False, True, False])
    w = tr.variance_sentences({"running": running.assign(rel_err=np.r_[m ** -1.0, m ** -1.0])}, bad)
    assert w["variance_words"].startswith("outside sampling error of 1 in 1 of 1 cases")
    assert "away from" in w["rate_words"] and w["bias_words"] == "a bias is detected for gaussian"


def _cost(greedy_cos, t1t2_cos, exps, agrees):
    E = pd.DataFrame({"method": ["rmd", "greedy", "t1t2"], "memory_exponent": exps,
                      "cos_rmd_at_T_max": [1.0, greedy_cos, t1t2_cos]})
    F = pd.DataFrame({"property": ["linear complexity", "linear complexity", "long horizon", "online optimisation"],
                      "method": ["RMD", "greedy", "T1−T2", "greedy"], "agrees": [True, agrees, agrees, None]})
    return {"exponents": E, "features": F, "flat_exponent": 0.25}


def test_cost_sentences_follow_the_verdict_and_the_cosines():
    ok = pd.DataFrame({"check": ["rmd: (steps, JVPs, VJPs, HVPs) as documented, all T", "rmd: peak memory grows with T",
                                 "greedy: peak memory flat in T"], "holds": [True, True, True]})
    w = tr.cost_sentences(_cost(0.5, 0.6, [1.0, 0.01, 0.0], True), ok)
    assert w["counts_words"].startswith("Every counter") and w["thm_words"] == "every check holds on this problem"
    assert w["memory_words"].startswith("every other estimator's is flat") and w["positive_words"]
    assert w["linear_words"] == "The *linear complexity* row agrees with the slides in all 2 measured cells."
    assert w["greedy_diff"] == pytest.approx(-0.1) and "less well aligned" in w["greedy_words"]
    assert "no better aligned" in tr.cost_sentences(_cost(0.6001, 0.6, [1.0, 0.0, 0.0], True), ok)["greedy_words"]
    bad = ok.assign(holds=[False, True, False])
    w = tr.cost_sentences(_cost(0.7, 0.6, [1.0, -0.01, 0.0], False), bad)
    assert w["counts_words"] == "The counters differ from their documented formulas for rmd."
    assert "not every other estimator's is flat: greedy" in w["memory_words"] and w["positive_words"] == ""
    assert w["thm_words"].startswith("not confirmed") and "disagrees with the slides for greedy" in w["linear_words"]
    assert "for T1−T2 (1 of 1" in w["long_words"] and "is better aligned" in w["greedy_words"]


def test_convergence_sentences_follow_the_ratios():
    ok = pd.DataFrame({"check": ["b=1", "b=7"], "holds": [True, True]})
    res = {"summary": pd.DataFrame({"b": [1, 3, 7], "rho": [1 / 7, 3 / 7, 1.0], "max_ratio": [0.2, 0.3, 0.4]})}
    w = tr.convergence_sentences(res, ok)
    assert w["rho_at_max"] == 1.0 and w["four_max"] == pytest.approx(1.6)
    assert w["stays_words"].startswith("stays below") and "not loose" in w["tight_words"]
    assert w["where_words"] == "the bound is tightest for the largest b" and "cannot be replaced" in w["constant_words"]
    res = {"summary": pd.DataFrame({"b": [1, 3, 7], "rho": [1 / 7, 3 / 7, 1.0], "max_ratio": [0.2, 0.05, 0.01]})}
    w = tr.convergence_sentences(res, ok)
    assert w["where_words"].startswith("the bound is tightest for b = 1") and "even the constant 1" in w["constant_words"]
    res = {"summary": pd.DataFrame({"b": [1], "rho": [1.0], "max_ratio": [1.3]})}
    assert "beyond its sampling error" in tr.convergence_sentences(res, ok.assign(holds=False))["stays_words"]
    assert "but not beyond" in tr.convergence_sentences(res, ok)["stays_words"]


def test_limit_sentences_follow_the_checks_and_the_bend():
    ok = pd.DataFrame({"check": ["hyper_cleaning: log-log slope", "mlp_momentum: log-log slope", "x: |distance|"],
                       "holds": [True, True, True]})
    fits = pd.DataFrame({"problem": ["hyper_cleaning", "mlp_momentum"]})

    def table(top):
        return pd.DataFrame([dict(problem=p, gamma=g, distance=g * (1 + (top[i] if g == 0.1 else 0)), predicted=g)
                             for i, p in enumerate(fits.problem) for g in (1e-6, 0.1)])
    w = tr.limit_sentences({"fits": fits, "table": table([0.05, 0.1])}, ok)
    assert w["linear_words"].startswith("The distance to T1−T2 falls linearly")
    assert w["verdict_words"] == "holds on every problem checked (hyper_cleaning, mlp_momentum), momentum included"
    assert "+5.00% (hyper_cleaning), +10.00% (mlp_momentum): the curves bend upward" in w["bend_words"]
    assert "bend downward" in tr.limit_sentences({"fits": fits, "table": table([-0.05, -0.1])}, ok)["bend_words"]
    assert "no visible bend" in tr.limit_sentences({"fits": fits, "table": table([0.001, 0.0])}, ok)["bend_words"]
    bad = ok.assign(holds=[True, False, True])
    w = tr.limit_sentences({"fits": fits, "table": table([0.05, -0.1])}, bad)
    assert "does not fall linearly" in w["linear_words"] and w["verdict_words"].startswith("is not confirmed")
    assert "bending upward on hyper_cleaning; downward on mlp_momentum" in w["bend_words"]
    w = tr.limit_sentences({"fits": fits, "table": table([0.05, 0.0])}, ok)
    assert "bending upward on hyper_cleaning; no visible bend on mlp_momentum" in w["bend_words"]
