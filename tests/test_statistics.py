r"""Statistical properties of the (FG)²U estimator :math:`\hat g = \frac1b\sum_i (g\cdot v_i)\, v_i`.

With :math:`E[vv^\top] = I` the estimator is unbiased, and for one direction
:math:`\hat g_1 - g = X` with covariance

* Rademacher: :math:`\Sigma = \|g\|^2 I + gg^\top - 2\,\mathrm{diag}(g^2)`,
  :math:`\mathrm{tr}\,\Sigma = (N-1)\|g\|^2`;
* Gaussian: :math:`\Sigma = \|g\|^2 I + gg^\top`, :math:`\mathrm{tr}\,\Sigma = (N+1)\|g\|^2`.

The tests are cheap: the problems are small quadratics with short horizons, and many directional
derivatives are computed in one vectorised forward-mode pass with
:func:`metagrad.estimators.forward.directional_derivatives`; one test goes through
``mg.hypergrad(..., "fg2u")``. Every random draw uses a fixed seed, so the suite is
deterministic; the comments state how often each assertion would fail over random seeds.
"""
from __future__ import annotations

import math

import pytest
import torch
import numpy as np
from scipy import optimize, stats

import metagrad as mg
from metagrad import Cost
from metagrad._tree import flatten
from metagrad.estimators.forward import directional_derivatives
from metagrad.tasks import families


def _problem(N: int, P: int = 6, T: int = 4, seed: int = 0):
    problem, alpha = families.quadratic(P=P, N=N, T=T, seed=seed)
    return problem, alpha, flatten(families.quadratic_exact(problem, alpha))


def _directions(alpha, M: int, seed: int, distribution: str) -> torch.Tensor:
    return mg.fg2u_directions(alpha, M, seed=seed, distribution=distribution)


def _single_direction_covariance(g: torch.Tensor, distribution: str) -> torch.Tensor:
    sq = g.dot(g)
    cov = sq * torch.eye(g.numel(), dtype=g.dtype) + torch.outer(g, g)
    if distribution == "rademacher":
        cov = cov - 2 * torch.diag(g * g)
    return cov


def _tail_bound(eigs: torch.Tensor, threshold: float) -> float:
    r"""Chernoff bound on :math:`P(Q \ge x)` for :math:`Q = \sum_i \lambda_i Z_i^2` (Z iid standard
    normal, λ ≥ 0): :math:`\min_{0 < t < 1/(2\lambda_{max})} e^{-tx}\prod_i (1-2t\lambda_i)^{-1/2}`.

    By the CLT, M·‖mean_M − g‖² → Q with λ the eigenvalues of Σ, so this bounds the probability
    (over random seeds) that an assertion ``M·‖mean_M − g‖² <= x`` fails."""
    lam = eigs.double().clamp_min(0).numpy()

    def log_bound(t):
        return -t * threshold - 0.5 * np.log1p(-2 * t * lam).sum()
    best = optimize.minimize_scalar(log_bound, bounds=(0.0, (1 - 1e-12) / (2 * lam.max())),
                                    method="bounded", options={"xatol": 1e-14})
    return math.exp(min(float(best.fun), 0.0))


# --------------------------------------------------------------------------------------------
# (a) the running mean of independent estimates converges to the exact gradient
# --------------------------------------------------------------------------------------------
def test_directional_derivatives_are_exact_projections():
    """The forward-mode pass computes g·v exactly (the estimator's only non-random ingredient)."""
    problem, alpha, g = _problem(N=10)
    V = _directions(alpha, 50, seed=0, distribution="gaussian")
    f, s = directional_derivatives(problem, alpha, V, Cost())
    assert torch.allclose(s, V @ g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_running_mean_converges_to_exact_gradient(distribution):
    r"""E‖mean_M − g‖² = tr Σ / M; assert ‖mean_M − g‖² ≤ 4 tr Σ / M at M = 10², 10³, 10⁴.

    By the CLT, M·‖mean_M − g‖² ≈ Σ_i λ_i Z_i² with λ the eigenvalues of Σ; a Chernoff bound
    then gives the probability (over seeds) that one check fails. It is computed below for this
    g (N = 20: ≈ 5e-6) and asserted to be < 1e-4 per check, so by a union bound over the three
    checkpoints the whole test fails for fewer than 3 seeds in 10⁴."""
    N = 20
    problem, alpha, g = _problem(N=N)
    V = _directions(alpha, 10_000, seed=1, distribution=distribution)
    _, s = directional_derivatives(problem, alpha, V, Cost())
    running = torch.cumsum(s[:, None] * V, dim=0)  # M estimates ĝ_j = (g·v_j) v_j, summed

    cov = _single_direction_covariance(g, distribution)
    eigs = torch.linalg.eigvalsh(cov).clamp_min(0)
    trace = float(torch.trace(cov))
    expected_trace = (N - 1 if distribution == "rademacher" else N + 1) * float(g.dot(g))
    assert trace == pytest.approx(expected_trace, rel=1e-12)
    p_fail = _tail_bound(eigs, 4 * trace)
    assert p_fail < 1e-4, p_fail

    errors = []
    for M in (100, 1_000, 10_000):
        err2 = float(((running[M - 1] / M - g) ** 2).sum())
        assert err2 <= 4 * trace / M, (M, err2, trace / M)
        errors.append(err2)
    assert errors[-1] < errors[0]


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_mean_error_is_chi_square_in_the_covariance_metric(distribution):
    r"""A sharper CLT check of (a): with Σ known, M·eᵀΣ⁻¹e (e = mean_M − g) is ≈ χ²_N.
    Assert it lies between the 1e-6 and 1 − 1e-6 quantiles: false alarm ≈ 2e-6 per seed (CLT).
    The lower bound catches an estimator that is "too exact" (e.g. reusing directions)."""
    N, M = 8, 20_000
    problem, alpha, g = _problem(N=N, seed=3)
    V = _directions(alpha, M, seed=7, distribution=distribution)
    _, s = directional_derivatives(problem, alpha, V, Cost())
    e = (s[:, None] * V).mean(0) - g
    cov = _single_direction_covariance(g, distribution)
    q = float(M * e @ torch.linalg.solve(cov, e))
    lo, hi = stats.chi2.ppf(1e-6, N), stats.chi2.ppf(1 - 1e-6, N)
    assert lo <= q <= hi, (q, lo, hi)


def test_hypergrad_fg2u_with_many_directions_is_the_mean_of_single_estimates():
    """Through the public entry point: b = M directions in one call is the mean of the M
    single-direction estimates; its error obeys the bound of the test above."""
    N, M = 20, 4_000
    problem, alpha, g = _problem(N=N)
    res = mg.hypergrad(problem, alpha, "fg2u", b=M, seed=11)
    V = mg.fg2u_directions(alpha, M, seed=11)
    singles = (V @ g)[:, None] * V
    assert torch.allclose(flatten(res.grad), singles.mean(0), rtol=1e-10, atol=1e-12)
    trace = (N - 1) * float(g.dot(g))
    # Failure probability of this check over seeds: < 1e-4 (same g as the test above).
    assert float(((flatten(res.grad) - g) ** 2).sum()) <= 4 * trace / M
    assert res.cost.jvps == problem.T * M


def test_hypergrad_single_calls_with_different_seeds_average_out():
    """Independent single-direction calls (b = 1, seeds 0..M-1) through ``mg.hypergrad``."""
    N, M = 10, 100
    problem, alpha, g = _problem(N=N, P=4, T=2)
    grads = torch.stack([flatten(mg.hypergrad(problem, alpha, "fg2u", b=1, seed=s).grad)
                         for s in range(M)])
    # each call is the single-direction estimate (g·v) v with v = fg2u_directions(α, 1, seed)
    for seed in range(5):
        v = mg.fg2u_directions(alpha, 1, seed=seed)[0]
        assert torch.allclose(grads[seed], (v @ g) * v, rtol=1e-10, atol=1e-12)
    distinct = {tuple(torch.sign(row).tolist()) for row in grads}
    assert len(distinct) > 1  # the seeds really give different directions
    trace = (N - 1) * float(g.dot(g))
    p_fail = _tail_bound(torch.linalg.eigvalsh(_single_direction_covariance(g, "rademacher")),
                         6 * trace)
    assert p_fail < 1e-4, p_fail  # N = 10 is small: a 6× margin keeps false alarms < 1e-4
    assert float(((grads.mean(0) - g) ** 2).sum()) <= 6 * trace / M


# --------------------------------------------------------------------------------------------
# (b) the variance matches theory
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distribution,offset", [("rademacher", -1), ("gaussian", +1)])
@pytest.mark.parametrize("N,b", [(4, 1), (10, 3), (25, 8)])
def test_variance_matches_theory(N, b, distribution, offset):
    r"""Sample mean of ‖ĝ − g‖² over M independent b-direction estimates vs (N ∓ 1)/b·‖g‖².

    Tolerance: 4 standard errors of the sample mean (SE = sample std / √M): two-sided false
    alarm ≈ 6e-5 per case under the CLT (M = 4000; ‖ĝ − g‖² has finite variance — it is a
    polynomial in the directions)."""
    M = 4_000
    problem, alpha, g = _problem(N=N, seed=N)
    V = _directions(alpha, M * b, seed=100 + N, distribution=distribution)
    _, s = directional_derivatives(problem, alpha, V, Cost())
    estimates = ((s[:, None] * V).reshape(M, b, N)).mean(1)  # M independent ĝ with b directions
    sq_err = ((estimates - g) ** 2).sum(1)
    mean, se = float(sq_err.mean()), float(sq_err.std() / math.sqrt(M))
    theory = (N + offset) / b * float(g.dot(g))
    assert abs(mean - theory) <= 4 * se, (mean, theory, se)
    # and the test has power: the other distribution's constant is outside the band when b is
    # small relative to the difference 2/b·‖g‖² (only checked where SE is small enough).
    other = (N - offset) / b * float(g.dot(g))
    if abs(other - theory) > 8 * se:
        assert abs(mean - other) > 4 * se


# --------------------------------------------------------------------------------------------
# (c) scaled coordinate directions make the estimate exact
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["quadratic", "mlp_momentum"])
def test_scaled_coordinate_directions_give_exact_gradient(family):
    from _helpers import small_family
    problem, alpha = small_family(family)
    N = flatten(alpha).numel()
    V = math.sqrt(N) * torch.eye(N, dtype=torch.float64)
    res = mg.hypergrad(problem, alpha, "fg2u", directions=V)
    exact = mg.hypergrad(problem, alpha, "rmd")
    assert float((flatten(res.grad) - flatten(exact.grad)).norm()
                 / flatten(exact.grad).norm()) <= 1e-10


def test_direction_distributions_have_identity_second_moment():
    alpha = {"a": torch.zeros(3, dtype=torch.float64), "b": torch.zeros(2, 2, dtype=torch.float64)}
    N, M = 7, 40_000
    for distribution in ("rademacher", "gaussian", "coordinate"):
        V = mg.fg2u_directions(alpha, M, seed=5, distribution=distribution)
        assert V.shape == (M, N) and V.dtype == torch.float64
        second = V.T @ V / M
        # entries of vvᵀ have variance ≤ N (coordinate) → SE ≤ √(7/40000) ≈ 0.013; 6 SE ≈ 0.08
        assert torch.allclose(second, torch.eye(N, dtype=torch.float64), atol=0.08), distribution
    V = mg.fg2u_directions(alpha, 100, seed=5, distribution="rademacher")
    assert set(V.unique().tolist()) == {-1.0, 1.0}
    V = mg.fg2u_directions(alpha, 100, seed=5, distribution="coordinate")
    assert ((V != 0).sum(1) == 1).all() and torch.allclose(V.abs().sum(1), torch.full((100,), math.sqrt(N), dtype=torch.float64))
    # fixed seed → same directions; different seed → different ones
    assert torch.equal(mg.fg2u_directions(alpha, 9, seed=1), mg.fg2u_directions(alpha, 9, seed=1))
    assert not torch.equal(mg.fg2u_directions(alpha, 9, seed=1), mg.fg2u_directions(alpha, 9, seed=2))
