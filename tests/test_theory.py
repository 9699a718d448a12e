"""The checks of the theory chapter can fail: each is fed a false claim and must flag it.

``metagrad.tasks.theory`` pairs every experiment with a ``check_*`` function whose verdict
the notebooks ``notebooks/theory_*.ipynb`` assert on. A check that always passes would make
those asserts worthless, so for each claim this file runs the same experiment at a tiny scale
and shows that (a) the true claim passes and (b) a deliberately false one — a biased
estimator, a wrong theory line, a too-good bound, a wrong reference, a broken assumption,
a wrong cost formula — is flagged.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import metagrad.tasks.theory as th
from metagrad._tree import flatten
from metagrad.tasks import families


def _holds(verdict, contains: str | None = None) -> bool:
    v = verdict if contains is None else verdict[verdict.check.str.contains(contains, regex=False)]
    assert len(v), f"no verdict row contains {contains!r}"
    return bool(v.holds.all())


# ---------------------------------------------------------------------------- exactness
def test_exactness_flags_a_biased_estimator():
    problems = {"quadratic": dict(P=6, N=3, T=12, eta=0.1)}
    true = th.exactness(problems, truncation=("quadratic",))
    assert _holds(th.check_exactness(true))
    # "rmd" that silently drops the first step: trgu with K = T - 1
    biased = th.exactness(problems, methods={"rmd": ("trgu", {"K": 11})}, truncation=())
    verdict = th.check_exactness(biased)
    assert not _holds(verdict, "rmd vs central FD")
    assert not _holds(verdict, "rmd vs closed form")


def test_exactness_flags_a_too_tight_shaban_bound():
    res = th.exactness({"quadratic": dict(P=6, N=3, T=12, eta=0.1)}, methods={})
    res["truncation"]["bound"] *= 1e-3  # claim a bound 1000 times smaller
    assert not _holds(th.check_exactness(res), "Shaban")


# ---------------------------------------------------------------------------- Lemma 3.1
SMALL_VAR = dict(P=6, T=3, N=4, bs=(1, 4), Ns=(2, 8), b_for_N=2, M=400, M_mean=400)


def test_fg2u_variance_true_claim_passes():
    assert _holds(th.check_fg2u_variance(th.fg2u_variance(**SMALL_VAR)))


def test_fg2u_variance_flags_a_wrong_theory_line():
    # (N+1)/b for Rademacher too: three times the truth at N = 2
    wrong = th.fg2u_variance(**SMALL_VAR, distributions=("rademacher",),
                             theory=lambda N, b, dist: (N + 1) / b)
    verdict = th.check_fg2u_variance(wrong)
    assert not _holds(verdict, "N=2, b=2")
    assert not _holds(verdict, "|measured/theory − 1|")


def test_fg2u_variance_flags_a_biased_estimator():
    problem, alpha = families.quadratic(P=6, N=8, T=3, eta=0.3)
    g = flatten(families.quadratic_exact(problem, alpha))
    G, _ = th._fg2u_samples(problem, alpha, 2000, 1, "rademacher", seed=3)
    unbiased = th.unbiasedness_table(G, g).assign(distribution="rademacher")
    # a bias of a tenth of the gradient norm along one coordinate
    bias = torch.zeros_like(g)
    bias[0] = 0.1 * float(g.norm())
    biased = th.unbiasedness_table(G + bias, g).assign(distribution="rademacher")
    empty = pd.DataFrame(columns=["distribution", "N", "b", "ratio", "ratio_se"])
    for tab, ok in ((unbiased, True), (biased, False)):
        res = {"vs_b": empty, "vs_N": empty, "unbiased": tab, "library_gap": 0.0}
        assert _holds(th.check_fg2u_variance(res), "unbiased") is ok


# ---------------------------------------------------------------------------- Theorem 3.4
def test_fg2u_convergence_flags_a_too_good_bound():
    kw = dict(bs=(7,), K=10, seeds=8)
    assert _holds(th.check_fg2u_convergence(th.fg2u_convergence(**kw)))
    # the constant 4 of the theorem replaced by 1
    assert not _holds(th.check_fg2u_convergence(th.fg2u_convergence(**kw, bound_scale=0.25)))


def test_fg2u_convergence_flags_a_step_above_the_theorem():
    # exact gradients (deterministic, so the standard error is 0) at step 3/L_h > 2/L_h:
    # gradient descent diverges and the averaged squared gradient leaves the bound
    kw = dict(bs=(7,), K=12, seeds=2, method="rmd")
    assert _holds(th.check_fg2u_convergence(th.fg2u_convergence(**kw)))
    assert not _holds(th.check_fg2u_convergence(th.fg2u_convergence(**kw, step_scale=6.0)))


# ---------------------------------------------------------------------------- greedy limit
def test_greedy_limit_flags_a_wrong_limit():
    problems = {"hyper_cleaning": dict(n_train=12, n_val=10, T=6)}
    assert _holds(th.check_greedy_limit(th.greedy_limit(problems, n_gamma=5)))
    # claim that greedy tends to the first-order gradient instead of T1-T2
    assert not _holds(th.check_greedy_limit(th.greedy_limit(problems, n_gamma=5, reference="fo")))


# ---------------------------------------------------------------------------- sufficient descent
def test_greedy_descent_flags_a_broken_assumption():
    res = th.greedy_descent(Ts=(2, 4, 8, 16, 32, 64, 100),
                            variants=("all assumptions", "ill-conditioned Hessian"))
    assert _holds(th.check_greedy_descent(res, variant="all assumptions"))
    verdict = th.check_greedy_descent(res, variant="ill-conditioned Hessian")
    assert not _holds(verdict, "(6) ∇²_w L_train = I")
    assert not _holds(verdict, "c = min ratio")  # and the conclusion fails with it


def test_descent_problem_rejects_P_greater_than_N():
    with pytest.raises(ValueError, match="P <= N"):
        th.descent_problem(P=5, N=3)


# ---------------------------------------------------------------------------- cost
def test_cost_flags_wrong_formulas_and_wrong_memory_claims():
    kw = dict(family_kwargs=dict(n_train=12, n_val=10, d=20, C=5), Ts=(4, 8, 16),
              methods=("rmd", "greedy", "t1t2"))
    res = th.cost_scaling(**kw)
    assert _holds(th.check_cost_scaling(res))
    # a docstring that promised one VJP for rmd
    wrong = th.cost_scaling(**kw, expected={"rmd": lambda T, N, o, li: (T, 0, 1, 0)})
    assert not _holds(th.check_cost_scaling(wrong), "rmd: (steps")
    # claiming that rmd's memory is flat, or that greedy's grows
    assert not _holds(th.check_cost_scaling(res, linear_memory=()), "rmd: peak memory")
    assert not _holds(th.check_cost_scaling(res, linear_memory=("rmd", "greedy")), "greedy: peak memory")
    assert math.isclose(res["exponents"].set_index("method").loc["rmd", "products_exponent"], 1.0)
