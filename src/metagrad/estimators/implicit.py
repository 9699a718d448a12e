r"""Implicit differentiation at :math:`w_T`: ``neumann``, ``cg``, ``hessian-free``, and
:func:`implicit` for a solution found by any solver.

At a minimiser of the inner loss the implicit function theorem gives

.. math:: \nabla F = \nabla_\alpha L_{val} - \nabla^2_{\alpha w} L_{train}\, H^{-1} \nabla_w L_{val},
          \qquad H = \nabla^2_w L_{train}(w_T, \alpha).

The methods differ in how they approximate :math:`x = H^{-1}\nabla_w L_{val}` (the *what* —
the optimality condition — is kept apart from the *how* — a linear solver ``(matvec, b) -> x``):
Neumann :math:`x \approx \eta\sum_{k=0}^K (I-\eta H)^k g` (Lorraine et al. 2020), conjugate
gradient with at most K iterations (Rajeswaran et al. 2019), Hessian-free :math:`x = \eta g`
(Neumann with K = 0). All are biased when :math:`w_T` is not the inner minimiser. The Hessian
is taken on the inner batch of the last step. Hessian-vector products are forward-over-reverse.

Only the stationarity condition :math:`\nabla_w L_{train}(w^*, \alpha) = 0` is differentiated:
hyperparameters of the inner *optimiser* (a learned learning rate, momentum) and of a learned
initialisation do not move the minimiser, so these methods give them exactly zero.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.func import grad, jvp, vjp

from .._tree import tree_axpy, tree_detach, tree_dot, tree_map, tree_scale, tree_zeros_like, \
    tree_leaves
from ..cost import Cost
from ..errors import check, ConfigError
from .. import unroll
from ._registry import register, Result

__all__ = ["neumann", "cg", "hessian_free", "neumann_solve", "cg_solve", "hvp", "implicit"]


def hvp(f: Callable, w: Any, v: Any, *args) -> Any:
    r"""The Hessian-vector product :math:`\nabla^2_w f(w, *args)\, v` (forward-over-reverse,
    one JVP of the gradient; no Hessian is formed). ``w`` and ``v`` are trees of the same shape."""
    return jvp(lambda w_: grad(f)(w_, *args), (w,), (v,))[1]


def neumann_solve(matvec: Callable, g, *, K: int, eta: float):
    r""":math:`\eta\sum_{k=0}^{K}(I-\eta H)^k g` with K matvecs."""
    p, x = g, g
    for _ in range(K):
        p = tree_axpy(-eta, matvec(p), p)
        x = tree_map(lambda a, b: a + b, x, p)
    return tree_scale(x, eta)


def cg_solve(matvec: Callable, g, *, K: int, tol: float = 0.0, damping: float = 0.0):
    r"""At most K iterations of conjugate gradient on :math:`(H + \lambda I) x = g` from
    ``x = 0`` (one matvec each), stopping early once :math:`\|r\| \le` ``tol`` :math:`\|g\|`."""
    mv = matvec if damping == 0 else (lambda p: tree_axpy(damping, p, matvec(p)))
    x = tree_zeros_like(g)
    r = p = g
    rr = tree_dot(r, r)
    stop = float(rr) * tol ** 2
    for _ in range(K):
        if float(rr) <= stop or float(rr) == 0.0:
            break
        hp = mv(p)
        step = rr / tree_dot(p, hp)
        x = tree_axpy(step, p, x)
        r = tree_axpy(-step, hp, r)
        rr_new = tree_dot(r, r)
        p = tree_axpy(rr_new / rr, p, r)
        rr = rr_new
    return x


def _at_solution(inner_loss, outer_loss, w, alpha, inner_batch, outer_batch, cost, solve):
    """``(F, ∇F)`` at a solution ``w`` of the inner problem (the implicit function theorem)."""
    (gw, ga), value = _outer(outer_loss, w, alpha, outer_batch)
    cost.outer_grads += 1
    grad_w = grad(inner_loss)

    def matvec(v):
        cost.hvps += 1
        return jvp(lambda w_: grad_w(w_, alpha, inner_batch), (w,), (v,))[1]
    x = solve(matvec, gw)
    _, mixed_vjp = vjp(lambda a: grad_w(w, a, inner_batch), alpha)
    cost.hvps += 1
    return tree_axpy(-1.0, mixed_vjp(x)[0], ga), value


def _outer(outer_loss, w, alpha, batch):
    from torch.func import grad_and_value
    return grad_and_value(outer_loss, argnums=(0, 1))(w, alpha, batch)


def _implicit(problem, alpha, cost, solve: Callable):
    alpha = tree_detach(alpha)
    state = unroll.run(problem, alpha, cost=cost)
    g, value = _at_solution(_inner_loss_of(problem, state), problem.outer_loss, state[0], alpha,
                            problem.batch(problem.T - 1), problem.outer_batch, cost, solve)
    return g, value, state


def _inner_loss_of(problem, state):
    """The inner loss, with an nn.Module's buffers bound to those at w_T (if any)."""
    if getattr(problem, "buffers", None) is None:
        return problem.inner_loss
    from ..module import _bound

    def loss(w, a, batch):
        with _bound(state[1]["module"]):
            return problem.inner_loss(w, a, batch)
    return loss


def _eta(problem, alpha, eta):
    if eta is None:
        lr = getattr(problem.optimizer, "learning_rate", None)
        if lr is None:
            raise ConfigError(f"optimizer {type(problem.optimizer).__name__} has no learning_rate(alpha); "
                              f"pass eta=<float> (the Neumann step) to the implicit method")
        eta = lr(alpha)
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
def cg(problem, alpha, cost, *, K: int = 5, tol: float = 0.0, damping: float = 0.0):
    r"""Implicit differentiation with at most K conjugate-gradient iterations on
    :math:`(H + \lambda I)x = \nabla_w L_{val}` (Rajeswaran et al. 2019), stopping early at
    relative residual ``tol``; ``damping`` λ ≥ 0 regularises an ill-conditioned or indefinite H.
    Needs H + λI positive definite. Cost: T steps + ≤ K + 1 HVPs. Memory: O(P + N)."""
    _check_cg(K, tol, damping)
    return _implicit(problem, alpha, cost, lambda mv, g: cg_solve(mv, g, K=K, tol=tol, damping=damping))


def _check_cg(K, tol, damping):
    check(isinstance(K, int) and K >= 0, f"K (CG iterations) must be an integer >= 0, got {K!r}")
    check(isinstance(tol, (int, float)) and tol >= 0, f"tol must be a number >= 0, got {tol!r}")
    check(isinstance(damping, (int, float)) and damping >= 0, f"damping must be >= 0, got {damping!r}")


@register("hessian-free")
def hessian_free(problem, alpha, cost, *, eta: float | None = None):
    r"""Hessian-free implicit gradient: :math:`H^{-1} \approx \eta I` (Neumann with K = 0), as in
    the (FG)²U paper's baselines. Cost: T steps + 1 mixed product. Memory: O(P + N)."""
    eta = _eta(problem, alpha, eta)
    return _implicit(problem, alpha, cost, lambda mv, g: neumann_solve(mv, g, K=0, eta=eta))


def implicit(inner_loss: Callable, outer_loss: Callable, w_star: Any, alpha: dict, *,
             inner_batch: Any = None, outer_batch: Any = None, method: str = "cg", K: int = 50,
             tol: float = 1e-10, damping: float = 0.0, eta: float | None = None) -> Result:
    r"""The implicit hypergradient at a solution ``w_star`` found by *any* solver.

    ``w_star`` (a dict of tensors) should satisfy :math:`\nabla_w L_{train}(w^*, \alpha) = 0`;
    how it was found (scipy, L-BFGS, a closed form, many SGD steps) does not matter and is not
    differentiated. Returns a :class:`~metagrad.estimators._registry.Result` whose ``grad`` is
    :math:`\nabla_\alpha L_{val} - \nabla^2_{\alpha w}L_{train} H^{-1}\nabla_w L_{val}` and
    ``loss`` is :math:`L_{val}(w^*, \alpha)`.

    Args:
        inner_loss, outer_loss: ``loss(w, alpha, batch) -> scalar``, as in a BilevelProblem.
        w_star: the inner solution (detached; its device and dtype are followed).
        method: ``"cg"`` (at most K iterations, relative tolerance ``tol``, ``damping`` λ:
            solves :math:`(H+\lambda I)x = g`) or ``"neumann"`` (K terms, step ``eta``, which is
            required: e.g. 1 / (largest Hessian eigenvalue)).
    """
    check(method in ("cg", "neumann"), f"method must be 'cg' or 'neumann', got {method!r}")
    check(isinstance(w_star, dict) and all(isinstance(x, torch.Tensor) and x.is_floating_point()
                                           for x in tree_leaves(w_star)),
          "w_star must be a dict of floating-point tensors (the inner solution)")
    check(isinstance(alpha, dict) and len(alpha) > 0, "alpha must be a non-empty dict of tensors")
    if method == "cg":
        _check_cg(K, tol, damping)
        solve = lambda mv, g: cg_solve(mv, g, K=K, tol=tol, damping=damping)  # noqa: E731
        options = {"K": K, "tol": tol, "damping": damping}
    else:
        check(isinstance(K, int) and K >= 0, f"K (Neumann terms) must be an integer >= 0, got {K!r}")
        check(isinstance(eta, (int, float)) and eta > 0,
              f"method='neumann' needs eta > 0 (the series step, < 2 / largest eigenvalue of H), got {eta!r}")
        solve = lambda mv, g: neumann_solve(mv, g, K=K, eta=eta)  # noqa: E731
        options = {"K": K, "eta": eta}
    cost = Cost()
    w, a = tree_detach(w_star), tree_detach(alpha)
    g, value = _at_solution(inner_loss, outer_loss, w, a, inner_batch, outer_batch, cost, solve)
    return Result(tree_map(torch.Tensor.detach, g), value.detach(), cost, "implicit-" + method,
                  options, w_T=w)
