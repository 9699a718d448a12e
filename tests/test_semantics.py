"""Honest semantics: fomaml, and warnings where a method is structurally zero."""
from __future__ import annotations

import warnings

import pytest
import torch

import metagrad as mg
from metagrad import unroll

from _helpers import small_family, rel_err


def _maml(inner_hessian_zero: bool, lr=0.1):
    """A learned initialisation w_0 = α["w0"] (MAML); the inner loss is linear in w when
    ``inner_hessian_zero`` (then dw_T/dw_0 = I exactly and first-order MAML is exact)."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(5, generator=g, dtype=torch.float64)
    t = torch.randn(5, generator=g, dtype=torch.float64)

    def inner(w, a, d):
        return c @ w["w"] if inner_hessian_zero else torch.log1p((w["w"] - c) ** 2).sum()

    def outer(w, a, d):
        return torch.cosh(w["w"] - t).sum()
    problem = mg.BilevelProblem(inner, outer, init=lambda a: {"w": a["w0"]},
                                optimizer=mg.SGD(lr=lr), T=4)
    return problem, {"w0": torch.randn(5, generator=g, dtype=torch.float64)}


def test_fomaml_is_exact_when_the_inner_hessian_is_zero():
    problem, alpha = _maml(True)
    assert rel_err(mg.hypergrad(problem, alpha, "fomaml").grad, mg.hypergrad(problem, alpha, "rmd").grad) <= 1e-12


def test_fomaml_is_the_outer_gradient_at_w_T_sent_to_the_initialisation():
    problem, alpha = _maml(False)
    w_T = unroll.run(problem, alpha)[0]
    gw = torch.func.grad(problem.outer_loss)(w_T, alpha, None)
    res = mg.hypergrad(problem, alpha, "fomaml")
    assert torch.allclose(res.grad["w0"], gw["w"], rtol=1e-12, atol=0)
    assert rel_err(res.grad, mg.hypergrad(problem, alpha, "rmd").grad) > 1e-3  # an approximation
    assert res.cost.vjps == 1 and res.cost.inner_steps == problem.T


@pytest.mark.parametrize("method,options", [("fo", {}), ("t1t2", {}), ("cg", {}), ("neumann", {}),
                                            ("hessian-free", {}), ("trgu", {"K": 2})])
def test_learned_initialisation_warns_for_blind_methods(method, options):
    problem, alpha = _maml(False)
    with pytest.warns(mg.StructuralZeroWarning, match="learned initialisation"):
        res = mg.hypergrad(problem, alpha, method, **options)
    # the warning is true: the initialisation gets nothing through w_T (outer loss ignores α)
    assert float(res.grad["w0"].abs().max()) == 0.0


@pytest.mark.parametrize("method,options", [("rmd", {}), ("fomaml", {}), ("greedy", {}),
                                            ("fg2u", {"b": 2, "seed": 0}), ("trgu", {"K": 4})])
def test_no_warning_for_methods_that_see_the_initialisation(method, options):
    problem, alpha = _maml(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", mg.StructuralZeroWarning)
        mg.hypergrad(problem, alpha, method, **options)


@pytest.mark.parametrize("method", ["neumann", "cg", "hessian-free", "fo", "fomaml"])
def test_learned_learning_rate_warns_for_blind_methods(method):
    problem, alpha = small_family("quadratic")
    problem = problem.replace(optimizer=mg.SGD(lr=lambda a: 0.1 * torch.exp(a["log_lr"])))
    alpha = dict(alpha, log_lr=torch.tensor(0.0, dtype=torch.float64))
    with pytest.warns(mg.StructuralZeroWarning, match="optimiser's hyperparameters"):
        res = mg.hypergrad(problem, alpha, method, eta=0.1) if method in ("neumann", "hessian-free") \
            else mg.hypergrad(problem, alpha, method)
    assert float(res.grad["log_lr"].abs()) == 0.0  # and it is indeed zero
    assert float(mg.hypergrad(problem, alpha, "rmd").grad["log_lr"].abs()) > 0


def test_no_warning_when_nothing_is_hidden():
    problem, alpha = small_family("quadratic")  # fixed lr, fixed init
    with warnings.catch_warnings():
        warnings.simplefilter("error", mg.StructuralZeroWarning)
        for method in ("cg", "neumann", "fo", "t1t2"):
            mg.hypergrad(problem, alpha, method)
