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

import torch
from torch.func import vjp
from torch.utils import _pytree as pytree

from .._tree import tree_add, tree_axpy, tree_detach, tree_scale, tree_zeros_like
from ..errors import check
from .. import unroll
from ._registry import register

__all__ = ["greedy", "t1t2", "fo"]


def _step_vjp(problem, state, a_leaves, a, t, cotangent_w, cost, compile=False):
    """``(new_state, loss, B_t^T c)``: one step taped by plain autograd, and the VJP of the step
    w.r.t. α for the cotangent ``c`` on the new ``w`` (``cotangent_w``: a function of the new
    state). The backward pass is restricted to α (``autograd.grad(inputs=α)``): it visits only
    the part of the inner gradient's graph that depends on α."""
    if compile:
        from .. import compiled
        new_state, loss = compiled.step(problem, state, a, t)
    else:
        new_state, loss = unroll.taped_step(problem, state, a, t)
    c = cotangent_w(tree_detach(new_state))
    outs, cots = pytree.tree_leaves(new_state[0]), pytree.tree_leaves(c)
    pairs = [(o, ci) for o, ci in zip(outs, cots) if o.requires_grad]
    gs = torch.autograd.grad([o for o, _ in pairs], a_leaves, [ci for _, ci in pairs],
                             allow_unused=True) if pairs else [None] * len(a_leaves)
    b_t = pytree.tree_unflatten([torch.zeros_like(x) if gi is None else gi
                                 for x, gi in zip(a_leaves, gs)], pytree.tree_structure(a))
    cost.inner_steps += 1
    cost.vjps += 1
    return tree_detach(new_state), loss.detach(), b_t


def _alpha_leaves(alpha):
    leaves, spec = pytree.tree_flatten(alpha)
    leaves = [x.detach().requires_grad_() for x in leaves]
    return leaves, pytree.tree_unflatten(leaves, spec)


@register("greedy")
def greedy(problem, alpha, cost, *, gamma: float = 0.9, compile: bool = False):
    r"""Generalized greedy hypergradient, accumulated online (Yakovlev 2024).

    ``gamma`` in (0, 1]; γ → 0 gives ``t1t2``; with :math:`\nabla^2_w L_{train} = I`,
    γ = 1 − η and a linear outer loss it is exact. Cost per call: T steps, T transition VJPs and
    T validation gradients, the last of which (at :math:`w_T`) also gives :math:`F` and
    :math:`\nabla_\alpha L_{val}` (+1 VJP and gradient at w_0 with a learned initialisation).
    Memory: O(P + N) — no trajectory is stored; flat in T.
    ``compile=True``: each step with its validation gradient and VJP is one compiled call
    (:func:`metagrad.compiled.greedy_step`).
    """
    check(isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 < gamma <= 1,
          f"gamma must be in (0, 1], got {gamma!r}; gamma -> 0 is t1t2 (use method='t1t2')")
    alpha = tree_detach(alpha)
    T = problem.T
    state = tree_detach(unroll.initial_state(problem, alpha))
    init_term = None
    if problem.learned_init:
        _, init_vjp = vjp(lambda a: unroll.initial_state(problem, a)[0], alpha)
        init_term = init_vjp(unroll.outer_w_grad(problem, state[0], alpha, cost))[0]
        cost.vjps += 1
    h = tree_zeros_like(alpha)
    losses = []
    a_leaves, a = _alpha_leaves(alpha)
    check(isinstance(compile, bool), f"compile must be True or False, got {compile!r}")
    if compile:
        from .. import compiled

        def val_grad(st):
            cost.outer_grads += 1
            return compiled.outer_w_grad(problem, st[0], alpha)
    else:
        def val_grad(st):
            return unroll.outer_w_grad(problem, st[0], alpha, cost)
    final = {}

    def last_grads(st):  # at w_T: L_val, ∇_w L_val (the last cotangent) and ∇_α L_val in one pass
        value, gw, ga = unroll.outer_value_and_grads(problem, st[0], alpha, cost)
        final.update(value=value, ga=ga)
        return gw
    fused = compile and not unroll._has_module_buffers(problem)
    for t in range(T):
        if fused:  # step, validation gradient and VJP in one compiled call
            state, loss, b_t, value, ga = compiled.greedy_step(problem, state, alpha, t)
            final.update(value=value.detach(), ga=ga)
            cost.inner_steps += 1
            cost.vjps += 1
            cost.outer_grads += 1
        else:
            cot = last_grads if t == T - 1 else val_grad
            state, loss, b_t = _step_vjp(problem, state, a_leaves, a, t, cot, cost, compile)
        h = tree_axpy(gamma, h, b_t)
        losses.append(loss)
    unroll.check_losses(torch.stack(losses), 0, problem, alpha)
    if T == 0:  # no step: the outer gradients at w_0
        last_grads(state)
    value, ga = final["value"], final["ga"]
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
    a_leaves, a = _alpha_leaves(alpha)
    state, loss, b_t = _step_vjp(problem, state, a_leaves, a, problem.T - 1, cot, cost)
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
