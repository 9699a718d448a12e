"""mg.implicit from a solution found by any solver, and the public mg.hvp.

Ridge regression with one learned log-penalty per feature has a closed-form solution and a
closed-form hypergradient: with :math:`A = X^\\top X/n`, :math:`\\Lambda = \\mathrm{diag}(e^\\alpha)`,
:math:`w^* = (A+\\Lambda)^{-1}X^\\top y/n` and
:math:`dF/d\\alpha = -\\Lambda w^* \\odot (A+\\Lambda)^{-1}\\nabla_w L_{val}(w^*)`.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

import metagrad as mg
from metagrad.errors import ConfigError

from _helpers import rel_err

D = 6


def _ridge():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, D, generator=g, dtype=torch.float64)
    y = X @ torch.randn(D, generator=g, dtype=torch.float64) + 0.3 * torch.randn(30, generator=g, dtype=torch.float64)
    Xv = torch.randn(20, D, generator=g, dtype=torch.float64)
    yv = Xv @ torch.randn(D, generator=g, dtype=torch.float64)
    alpha = {"log_lam": torch.linspace(-2.0, 0.5, D, dtype=torch.float64)}

    def inner(w, a, batch):
        X, y = batch
        return 0.5 * ((X @ w["w"] - y) ** 2).mean() + 0.5 * (torch.exp(a["log_lam"]) * w["w"] ** 2).sum()

    def outer(w, a, batch):
        X, y = batch
        return 0.5 * ((X @ w["w"] - y) ** 2).mean()
    return inner, outer, (X, y), (Xv, yv), alpha


def _closed_form(train, val, alpha):
    (X, y), (Xv, yv) = train, val
    lam = torch.exp(alpha["log_lam"])
    M = X.T @ X / X.shape[0] + torch.diag(lam)
    w = torch.linalg.solve(M, X.T @ y / X.shape[0])
    gv = Xv.T @ (Xv @ w - yv) / Xv.shape[0]
    return w, {"log_lam": -lam * w * torch.linalg.solve(M, gv)}


def test_cg_at_the_closed_form_solution_equals_the_closed_form_hypergradient():
    inner, outer, train, val, alpha = _ridge()
    w_star, exact = _closed_form(train, val, alpha)
    res = mg.implicit(inner, outer, {"w": w_star}, alpha, inner_batch=train, outer_batch=val,
                      method="cg", K=50, tol=1e-12)
    assert rel_err(res.grad, exact) <= 1e-9
    assert res.method == "implicit-cg" and res.cost.hvps <= D + 1 + 1  # CG is exact in ≤ D steps
    assert torch.equal(res.w_T["w"], w_star)


def test_a_scipy_solver_solution_gives_the_hypergradient_up_to_the_solver_accuracy():
    inner, outer, train, val, alpha = _ridge()
    _, exact = _closed_form(train, val, alpha)

    def f(w_np):
        w = torch.from_numpy(w_np).requires_grad_(True)
        loss = inner({"w": w}, alpha, train)
        loss.backward()
        return float(loss.detach()), w.grad.numpy()
    sol = scipy.optimize.minimize(f, np.zeros(D), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 1000})
    w_star = {"w": torch.from_numpy(sol.x)}
    res = mg.implicit(inner, outer, w_star, alpha, inner_batch=train, outer_batch=val)
    assert rel_err(res.grad, exact) <= 1e-6


def test_neumann_converges_to_the_closed_form_with_a_step_below_2_over_L():
    inner, outer, train, val, alpha = _ridge()
    w_star, exact = _closed_form(train, val, alpha)
    X = train[0]
    L = float(torch.linalg.eigvalsh(X.T @ X / X.shape[0] + torch.diag(torch.exp(alpha["log_lam"]))).max())
    res = mg.implicit(inner, outer, {"w": w_star}, alpha, inner_batch=train, outer_batch=val,
                      method="neumann", K=400, eta=1.0 / L)
    assert rel_err(res.grad, exact) <= 1e-6
    with pytest.raises(ConfigError, match="eta"):
        mg.implicit(inner, outer, {"w": w_star}, alpha, inner_batch=train, outer_batch=val, method="neumann")


def test_cg_tolerance_stops_early_and_damping_solves_the_shifted_system():
    inner, outer, train, val, alpha = _ridge()
    w_star, _ = _closed_form(train, val, alpha)
    full = mg.implicit(inner, outer, {"w": w_star}, alpha, inner_batch=train, outer_batch=val, K=50, tol=0.0)
    loose = mg.implicit(inner, outer, {"w": w_star}, alpha, inner_batch=train, outer_batch=val, K=50, tol=1e-2)
    assert loose.cost.hvps < full.cost.hvps
    assert rel_err(loose.grad, full.grad) <= 0.1
    # damping: x solves (H + λI) x = g, so the result is the closed form with H + λI
    H = torch.func.hessian(lambda w: inner({"w": w}, alpha, train))(w_star)
    v = torch.randn(D, dtype=torch.float64)
    x = mg.estimators.implicit.cg_solve(lambda p: {"w": H @ p["w"]}, {"w": v}, K=50, damping=0.5)
    assert torch.allclose(x["w"], torch.linalg.solve(H + 0.5 * torch.eye(D, dtype=torch.float64), v), atol=1e-10)


def test_hvp_equals_the_hessian_times_v():
    inner, _, train, _, alpha = _ridge()
    w = {"w": torch.randn(D, dtype=torch.float64)}
    v = {"w": torch.randn(D, dtype=torch.float64)}
    H = torch.func.hessian(lambda w_: inner({"w": w_}, alpha, train))(w["w"])
    assert torch.allclose(mg.hvp(inner, w, v, alpha, train)["w"], H @ v["w"], atol=1e-12)


def test_implicit_problem_methods_take_tol_and_damping():
    """The registered ``cg`` takes the same options and stops early at a loose tolerance."""
    from _helpers import small_family
    problem, alpha = small_family("quadratic")
    tight = mg.hypergrad(problem, alpha, "cg", K=30, tol=0.0)
    loose = mg.hypergrad(problem, alpha, "cg", K=30, tol=0.5)
    assert loose.cost.hvps < tight.cost.hvps
    damped = mg.hypergrad(problem, alpha, "cg", K=30, damping=1.0)
    assert rel_err(damped.grad, tight.grad) > 1e-3  # damping changes the solve


def test_bad_inputs_name_the_fix():
    inner, outer, train, val, alpha = _ridge()
    with pytest.raises(ConfigError, match="w_star"):
        mg.implicit(inner, outer, torch.zeros(D), alpha)
    with pytest.raises(ConfigError, match="method"):
        mg.implicit(inner, outer, {"w": torch.zeros(D, dtype=torch.float64)}, alpha, method="lbfgs")
