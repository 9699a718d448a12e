r"""Reverse-mode unrolling: full (``rmd``) and truncated (``trgu``).

Both run the inner loop forward and pull the cotangent :math:`d_T = \nabla_{w_T} L_{val}` back
through the transitions with vector-Jacobian products (one plain-autograd tape per segment,
``create_graph=True`` for the inner gradients, then one backward pass):

.. math:: \nabla F = c_T + \sum_t d_T A_T \cdots A_{t+1} B_t \;(+\, d_T A_T\cdots A_1 Z_0).
"""
from __future__ import annotations

import torch
from torch.func import vjp
from torch.utils import _pytree as pytree

from .._tree import tree_add, tree_detach, tree_map
from ..errors import check
from .. import unroll
from ._registry import register

__all__ = ["rmd", "trgu"]


@register("rmd")
def rmd(problem, alpha, cost, *, checkpoint: int | None = None, compile: bool = False):
    r"""Full reverse-mode differentiation through the unrolled loop (RGU / "full").

    Exact. Cost: T transition VJPs (+1 through a learned initialisation; +T recomputed steps
    with checkpointing).
    Memory: O(T·P) activations without checkpointing; with ``checkpoint=k`` the loop is cut into
    segments of k steps, only segment-start states are stored (O(T/k·P)) and each segment is
    recomputed under a tape during the backward pass (O(k·P) activations).
    ``compile=True``: the taped steps run through :func:`metagrad.compiled.step`
    (``torch.compile``; pays on small problems; falls back with a warning).
    Reference: Maclaurin et al. 2015; (FG)²U paper §2 ("RGU").
    """
    k = problem.T if checkpoint is None else checkpoint
    check(isinstance(k, int) and 1 <= k <= problem.T,
          f"checkpoint must be an integer in [1, T={problem.T}] (steps per recomputed segment), got {k!r}")
    return _reverse(problem, alpha, cost, K=problem.T, segment=k, compile=compile)


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


def _step_fn(problem, compile: bool):
    check(isinstance(compile, bool), f"compile must be True or False, got {compile!r}")
    if not compile:
        return None
    from .. import compiled
    return compiled.step


def _constant_leaves(tree):
    leaves, spec = pytree.tree_flatten(tree)
    leaves = [x.detach() for x in leaves]
    return leaves, pytree.tree_unflatten(leaves, spec)


def _leaves_requiring_grad(tree):
    """Detached copies of the leaves, floating-point ones requiring grad (integer module
    buffers such as ``num_batches_tracked`` stay constants)."""
    leaves, spec = pytree.tree_flatten(tree)
    leaves = [x.detach().requires_grad_() if x.is_floating_point() else x.detach() for x in leaves]
    return leaves, pytree.tree_unflatten(leaves, spec)


def _reverse(problem, alpha, cost, *, K: int, segment: int, compile: bool = False):
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

    # Backward, segment by segment: re-run the segment under a plain autograd tape
    # (create_graph), then one backward pass for the cotangent on its end state.
    a_leaves, a = _leaves_requiring_grad(alpha)
    grad, cot, loss, final = None, None, None, None
    for s in reversed(seg_starts):
        e = min(s + segment, T)
        # the start state's cotangent is needed only for an earlier segment or Ω_0(α)
        need_start = s != seg_starts[0] or (s == 0 and problem.learned_init)
        st_leaves, st = (_leaves_requiring_grad(checkpoints.pop(s)) if need_start
                         else _constant_leaves(checkpoints.pop(s)))
        end_state, losses = unroll.tape(problem, a, st, s, e, step=_step_fn(problem, compile))
        cost.inner_steps += e - s
        cost.vjps += e - s
        unroll.check_losses(losses, s, problem, alpha)
        if cot is None:  # the last segment ends at w_T: the backward pass starts at F itself
            # (L_val on the tape: ∇_w L_val is never held whole, and ∇_α L_val comes with it)
            with torch.enable_grad():
                F = problem.outer_loss(end_state[0], a, problem.outer_batch)
            cost.outer_grads += 1
            loss, final = F.detach(), tree_detach(end_state)
            outs, cots = [F], [torch.ones_like(F)]
        else:  # cotangent on the whole state (weights and optimiser buffers)
            outs, cots = pytree.tree_leaves(end_state), cot
        pairs = [(o, c) for o, c in zip(outs, cots) if o.requires_grad]
        inputs = a_leaves + st_leaves
        wanted = [x for x in inputs if x.requires_grad]
        got = torch.autograd.grad([o for o, _ in pairs], wanted, [c for _, c in pairs],
                                  allow_unused=True) if pairs and wanted else [None] * len(wanted)
        got = dict(zip(map(id, wanted), got))
        gs = [torch.zeros_like(x) if got.get(id(x)) is None else got[id(x)] for x in inputs]
        part = pytree.tree_unflatten(gs[:len(a_leaves)], pytree.tree_structure(alpha))
        grad = part if grad is None else tree_add(grad, part)
        cot = gs[len(a_leaves):]
        del end_state, st, st_leaves, pairs, outs
    if seg_starts[0] == 0 and problem.learned_init:  # w_0 = Ω_0(α)
        state0, init_vjp = vjp(lambda a: unroll.initial_state(problem, a), alpha)
        cost.vjps += 1
        grad = tree_add(grad, init_vjp(pytree.tree_unflatten(cot, pytree.tree_structure(state0)))[0])
    return tree_map(torch.Tensor.detach, grad), loss, final
