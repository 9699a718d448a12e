r"""Greedy-type estimators: generalized greedy (``greedy``), ``t1t2`` and first-order ``fo``.

Generalized greedy hypergradient (Yakovlev 2024): replace the product of Jacobians
:math:`A_T\cdots A_{t+1}` by :math:`\gamma^{T-t}` and the validation gradient at :math:`w_T` by
the one at :math:`w_t`:

.. math:: \hat d(\gamma) = \nabla_\alpha L_{val}(w_T) + \sum_{t=1}^T \gamma^{T-t}\,
          \nabla_{w_t} L_{val}(w_t)\, B_t, \qquad B_t = \partial\Phi(w_{t-1},\alpha)/\partial\alpha,

accumulated online, :math:`h \leftarrow \gamma h + \nabla_{w_t}L_{val}(w_t) B_t`. With a learned
initialisation metagrad adds the matching :math:`t = 0` term
:math:`\gamma^T \nabla_{w_0}L_{val}(w_0)\,\partial w_0/\partial\alpha`. With momentum/Adam,
:math:`B_t` is the derivative of the whole state update and the cotangent sits on ``w``.
"""
from __future__ import annotations

from torch.func import vjp, grad

from .._tree import tree_add, tree_axpy, tree_detach, tree_scale, tree_zeros_like
from ..errors import check
from .. import unroll
from ._registry import register

__all__ = ["greedy", "t1t2", "fo"]


def _w_grad_of_outer(problem, w, alpha, cost):
    cost.outer_grads += 1
    return grad(problem.outer_loss)(w, alpha, problem.outer_batch)


def _step_vjp(problem, state, alpha, t, cotangent_w, cost):
    """``(new_state, loss, B_t^T c)``: one step, and the VJP of the step w.r.t. α for the
    cotangent ``c`` on the new ``w``. ``cotangent_w`` is a function of the new state."""
    (new_state, vjp_fn, loss) = vjp(lambda a: unroll.transition(problem, state, a, t), alpha,
                                    has_aux=True)
    c = cotangent_w(new_state)
    (b_t,) = vjp_fn((c, tree_zeros_like(new_state[1])))
    cost.inner_steps += 1
    cost.vjps += 1
    return tree_detach(new_state), loss.detach(), b_t


@register("greedy")
def greedy(problem, alpha, cost, *, gamma: float = 0.9):
    r"""Generalized greedy hypergradient, accumulated online (Yakovlev 2024).

    ``gamma`` in (0, 1]; γ → 0 gives ``t1t2``; with :math:`\nabla^2_w L_{train} = I`,
    γ = 1 − η and a linear outer loss it is exact. Cost per call: T steps, T transition VJPs and
    T validation gradients (+1 VJP and gradient at w_0 with a learned initialisation).
    Memory: O(P + N) — no trajectory is stored; flat in T.
    """
    check(isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 < gamma <= 1,
          f"gamma must be in (0, 1], got {gamma!r}; gamma -> 0 is t1t2 (use method='t1t2')")
    alpha = tree_detach(alpha)
    T = problem.T
    state = tree_detach(unroll.initial_state(problem, alpha))
    init_term = None
    if problem.learned_init:
        _, init_vjp = vjp(lambda a: unroll.initial_state(problem, a)[0], alpha)
        init_term = init_vjp(_w_grad_of_outer(problem, state[0], alpha, cost))[0]
        cost.vjps += 1
    h = tree_zeros_like(alpha)
    losses = []
    for t in range(T):
        state, loss, b_t = _step_vjp(problem, state, alpha, t,
                                     lambda st: _w_grad_of_outer(problem, st[0], alpha, cost), cost)
        h = tree_axpy(gamma, h, b_t)
        losses.append(loss)
    import torch
    unroll.check_losses(torch.stack(losses), 0, problem, alpha)
    value, _, ga = unroll.outer_value_and_grads(problem, state[0], alpha, cost)
    result = tree_add(ga, h)
    if init_term is not None:
        result = tree_add(result, tree_scale(init_term, gamma ** T))
    return result, value, state


@register("t1t2")
def t1t2(problem, alpha, cost):
    r"""T1−T2 (Luketina et al. 2016): the one-step greedy hypergradient
    :math:`\nabla_\alpha L_{val}(w_T) + \nabla_{w_T}L_{val}(w_T) B_T`, the γ → 0 limit of ``greedy``.
    Cost: T steps + 1 transition VJP. Memory: O(P + N)."""
    alpha = tree_detach(alpha)
    state = unroll.run(problem, alpha, stop=problem.T - 1, cost=cost)
    grads = {}

    def cot(st):
        value, gw, ga = unroll.outer_value_and_grads(problem, st[0], alpha, cost)
        grads.update(value=value, ga=ga)
        return gw
    state, loss, b_t = _step_vjp(problem, state, alpha, problem.T - 1, cot, cost)
    import torch
    unroll.check_losses(loss.reshape(1), problem.T - 1, problem, alpha)
    return tree_add(grads["ga"], b_t), grads["value"].detach(), state


@register("fo", black_box=True)
def fo(problem, alpha, cost):
    r"""First-order: :math:`\nabla_\alpha L_{val}(w_T, \alpha)` only, ignoring how :math:`w_T`
    depends on α (zero when the outer loss does not depend on α). Cost: T steps + 1 gradient."""
    from ..problem import BlackBoxProblem
    alpha = tree_detach(alpha)
    if isinstance(problem, BlackBoxProblem):
        w = problem.solve(alpha)
        cost.solver_calls += 1
        value, ga = _value_and_alpha_grad(problem, w, alpha, cost)
        return ga, value
    state = unroll.run(problem, alpha, cost=cost)
    value, _, ga = unroll.outer_value_and_grads(problem, state[0], alpha, cost)
    return ga, value, state


def _value_and_alpha_grad(problem, w, alpha, cost):
    from torch.func import grad_and_value
    cost.outer_grads += 1
    ga, value = grad_and_value(problem.outer_loss, argnums=1)(tree_detach(w), alpha, problem.outer_batch)
    return value, ga
