r"""Implicit differentiation at :math:`w_T`: ``neumann``, ``cg``, ``hessian-free``.

At a minimiser of the inner loss the implicit function theorem gives

.. math:: \nabla F = \nabla_\alpha L_{val} - \nabla^2_{\alpha w} L_{train}\, H^{-1} \nabla_w L_{val},
          \qquad H = \nabla^2_w L_{train}(w_T, \alpha).

The methods differ in how they approximate :math:`x = H^{-1}\nabla_w L_{val}` (the *what* —
the optimality condition — is kept apart from the *how* — a linear solver ``(matvec, b) -> x``):
Neumann :math:`x \approx \eta\sum_{k=0}^K (I-\eta H)^k g` (Lorraine et al. 2020), conjugate
gradient with K iterations (Rajeswaran et al. 2019), Hessian-free :math:`x = \eta g`
(Neumann with K = 0). All are biased when :math:`w_T` is not the inner minimiser. The Hessian
is taken on the inner batch of the last step. Hessian-vector products are forward-over-reverse.
"""
from __future__ import annotations

from typing import Callable

from torch.func import grad, jvp, vjp

from .._tree import tree_axpy, tree_detach, tree_dot, tree_map, tree_scale, tree_zeros_like
from ..errors import check
from .. import unroll
from ._registry import register

__all__ = ["neumann", "cg", "hessian_free", "neumann_solve", "cg_solve"]


def neumann_solve(matvec: Callable, g, *, K: int, eta: float):
    r""":math:`\eta\sum_{k=0}^{K}(I-\eta H)^k g` with K matvecs."""
    p, x = g, g
    for _ in range(K):
        p = tree_axpy(-eta, matvec(p), p)
        x = tree_map(lambda a, b: a + b, x, p)
    return tree_scale(x, eta)


def cg_solve(matvec: Callable, g, *, K: int):
    """K iterations of conjugate gradient on ``H x = g`` from ``x = 0`` (K matvecs)."""
    x = tree_zeros_like(g)
    r = p = g
    rr = tree_dot(r, r)
    for _ in range(K):
        if float(rr) == 0.0:
            break
        hp = matvec(p)
        step = rr / tree_dot(p, hp)
        x = tree_axpy(step, p, x)
        r = tree_axpy(-step, hp, r)
        rr_new = tree_dot(r, r)
        p = tree_axpy(rr_new / rr, p, r)
        rr = rr_new
    return x


def _implicit(problem, alpha, cost, solve: Callable):
    alpha = tree_detach(alpha)
    w = unroll.run(problem, alpha, cost=cost)[0]
    value, gw, ga = unroll.outer_value_and_grads(problem, w, alpha, cost)
    batch = problem.batch(problem.T - 1)
    grad_w = grad(problem.inner_loss)

    def hvp(v):
        cost.hvps += 1
        return jvp(lambda w_: grad_w(w_, alpha, batch), (w,), (v,))[1]
    x = solve(hvp, gw)
    _, mixed_vjp = vjp(lambda a: grad_w(w, a, batch), alpha)
    cost.hvps += 1
    mixed = mixed_vjp(x)[0]
    return tree_axpy(-1.0, mixed, ga), value


def _eta(problem, alpha, eta):
    eta = problem.optimizer.learning_rate(alpha) if eta is None else eta
    check(isinstance(eta, (int, float)) and eta > 0, f"eta (Neumann step) must be > 0, got {eta!r}")
    return float(eta)


@register("neumann")
def neumann(problem, alpha, cost, *, K: int = 5, eta: float | None = None):
    r"""Implicit differentiation with a K-term Neumann series for :math:`H^{-1}` (Lorraine et al.
    2020). ``eta`` defaults to the inner learning rate. Cost: T steps + K + 1 HVPs. Memory: O(P + N)."""
    check(isinstance(K, int) and K >= 0, f"K (Neumann terms) must be an integer >= 0, got {K!r}")
    eta = _eta(problem, alpha, eta)
    return _implicit(problem, alpha, cost, lambda mv, g: neumann_solve(mv, g, K=K, eta=eta))


@register("cg")
def cg(problem, alpha, cost, *, K: int = 5):
    r"""Implicit differentiation with K conjugate-gradient iterations on :math:`Hx = \nabla_w L_{val}`
    (Rajeswaran et al. 2019). Needs H positive definite. Cost: T steps + K + 1 HVPs. Memory: O(P + N)."""
    check(isinstance(K, int) and K >= 0, f"K (CG iterations) must be an integer >= 0, got {K!r}")
    return _implicit(problem, alpha, cost, lambda mv, g: cg_solve(mv, g, K=K))


@register("hessian-free")
def hessian_free(problem, alpha, cost, *, eta: float | None = None):
    r"""Hessian-free implicit gradient: :math:`H^{-1} \approx \eta I` (Neumann with K = 0), as in
    the (FG)²U paper's baselines. Cost: T steps + 1 mixed product. Memory: O(P + N)."""
    eta = _eta(problem, alpha, eta)
    return _implicit(problem, alpha, cost, lambda mv, g: neumann_solve(mv, g, K=0, eta=eta))
