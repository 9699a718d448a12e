r"""Reverse-mode unrolling: full (``rmd``) and truncated (``trgu``).

Both run the inner loop forward and pull the cotangent :math:`d_T = \nabla_{w_T} L_{val}` back
through the transitions with vector-Jacobian products (``torch.func.vjp``):

.. math:: \nabla F = c_T + \sum_t d_T A_T \cdots A_{t+1} B_t \;(+\, d_T A_T\cdots A_1 Z_0).
"""
from __future__ import annotations

import torch
from torch.func import vjp

from .._tree import tree_add, tree_detach, tree_map, tree_zeros_like
from ..errors import check
from .. import unroll
from ._registry import register

__all__ = ["rmd", "trgu"]


@register("rmd")
def rmd(problem, alpha, cost, *, checkpoint: int | None = None):
    r"""Full reverse-mode differentiation through the unrolled loop (RGU / "full").

    Exact. Cost: T transition VJPs (+1 through a learned initialisation; +T recomputed steps
    with checkpointing).
    Memory: O(T·P) activations without checkpointing; with ``checkpoint=k`` the loop is cut into
    segments of k steps, only segment-start states are stored (O(T/k·P)) and each segment is
    recomputed under a tape during the backward pass (O(k·P) activations).
    Reference: Maclaurin et al. 2015; (FG)²U paper §2 ("RGU").
    """
    k = problem.T if checkpoint is None else checkpoint
    check(isinstance(k, int) and 1 <= k <= problem.T,
          f"checkpoint must be an integer in [1, T={problem.T}] (steps per recomputed segment), got {k!r}")
    return _reverse(problem, alpha, cost, K=problem.T, segment=k)


@register("trgu")
def trgu(problem, alpha, cost, *, K: int = 1):
    r"""Truncated reverse-mode: back-propagate through the last ``K`` steps only (Shaban et al. 2019).

    ``K = T`` is ``rmd``; ``K = 0`` is ``fo``. Biased for K < T: the bias decays like
    :math:`(1-\eta a)^K/(\eta a)` for a-strongly convex inner problems.
    Cost: T steps forward + K transition VJPs. Memory: O(K·P) activations.
    """
    check(isinstance(K, int) and K >= 0, f"K (truncation length) must be an integer >= 0, got {K!r}")
    check(K <= problem.T, f"K={K} exceeds the horizon T={problem.T}; pass K <= T (K = T is full rmd)")
    return _reverse(problem, alpha, cost, K=K, segment=max(K, 1))


def _reverse(problem, alpha, cost, *, K: int, segment: int):
    T = problem.T
    alpha = tree_detach(alpha)
    seg_starts = list(range(T - K, T, segment)) if K > 0 else []
    # Forward without tape, keeping the state at each segment start.
    checkpoints, state, t = {}, None, 0
    for s in seg_starts:
        state = unroll.run(problem, alpha, state=state, start=t, stop=s, cost=cost) if s > t \
            else (state if state is not None else tree_detach(unroll.initial_state(problem, alpha)))
        checkpoints[s], t = state, s
    if not seg_starts:  # K = 0: first-order
        state = unroll.run(problem, alpha, cost=cost)
        loss, _, ga = unroll.outer_value_and_grads(problem, state[0], alpha, cost)
        return ga, loss, state

    grad, cot, loss, final = None, None, None, None
    for s in reversed(seg_starts):
        e = min(s + segment, T)

        def seg_fn(a, st, s=s, e=e):
            return unroll.run_taped(problem, a, st, s, e)
        (end_state, vjp_fn, losses) = vjp(seg_fn, alpha, checkpoints[s], has_aux=True)
        cost.inner_steps += e - s
        cost.vjps += e - s
        unroll.check_losses(losses, s, problem, alpha)
        if cot is None:  # the last segment ends at w_T: start the backward pass there
            loss, gw, grad = unroll.outer_value_and_grads(problem, end_state[0], alpha, cost)
            cot = (gw, tree_zeros_like(end_state[1]))
            final = tree_detach(end_state)
        g_alpha, cot = vjp_fn(cot)
        grad = tree_add(grad, g_alpha)
        del end_state, vjp_fn
    if seg_starts[0] == 0 and problem.learned_init:  # w_0 = Ω_0(α)
        _, init_vjp = vjp(lambda a: unroll.initial_state(problem, a), alpha)
        cost.vjps += 1
        grad = tree_add(grad, init_vjp(cot)[0])
    return tree_map(torch.Tensor.detach, grad), loss, final
