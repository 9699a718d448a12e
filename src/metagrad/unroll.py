r"""Running the inner loop: the transition :math:`\Phi_t`, plain runs, taped segments.

The inner *state* is the pair ``(w, buffers)``: weights and optimiser buffers (e.g. the
momentum velocity), so that derivatives flow through the whole optimiser state.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.func import grad_and_value

from ._tree import tree_detach
from .errors import InnerDivergenceError
from . import module

__all__ = ["initial_state", "transition", "run", "run_taped", "outer_value_and_grads",
           "check_losses", "State"]

State = tuple  # (w, buffers)


def initial_state(problem, alpha: Any) -> State:
    """``(w_0, buffers_0)``; ``w_0 = init(alpha)`` for a learned initialisation."""
    w0 = problem.w0(alpha)
    if getattr(problem, "buffers", None) is not None:  # module buffers ride in the state
        return (w0, module.initial_buffers(problem, w0))
    return (w0, problem.optimizer.init(w0))


def transition(problem, state: State, alpha: Any, t: int) -> tuple[State, torch.Tensor]:
    """One inner step ``t -> t+1`` (``t`` is 0-based). Returns the new state and
    ``L_train(w_t)``, the loss at the *old* weights."""
    if getattr(problem, "buffers", None) is not None:  # an nn.Module's buffers (mg.from_module)
        return module.stateful_transition(problem, state, alpha, t)
    w, buffers = state
    g, loss = grad_and_value(problem.inner_loss)(w, alpha, problem.batch(t))
    hp = problem.optimizer.hyper(alpha)
    w, buffers = problem.optimizer.step(w, buffers, g, hp, t + 1)
    return (w, buffers), loss


def run_taped(problem, alpha: Any, state: State, start: int, stop: int):
    """Steps ``start..stop-1`` as a pure function (to be differentiated by torch.func).
    Returns ``(state, losses)``, losses stacked in a 1-D tensor."""
    losses = []
    for t in range(start, stop):
        state, loss = transition(problem, state, alpha, t)
        losses.append(loss)
    return state, (torch.stack(losses) if losses else torch.zeros(0))


def run(problem, alpha: Any, *, state: State | None = None, start: int = 0,
        stop: int | None = None, cost=None, check: bool = True) -> State:
    """A plain inner run (no derivatives kept): steps ``start..stop-1``.

    This is the *floor* every estimator is compared with. Raises
    :class:`~metagrad.errors.InnerDivergenceError` if the inner loss turns NaN/Inf."""
    stop = problem.T if stop is None else stop
    alpha = tree_detach(alpha)
    with torch.no_grad():
        if state is None:
            state = initial_state(problem, alpha)
        state, losses = run_taped(problem, alpha, tree_detach(state), start, stop)
    if cost is not None:
        cost.inner_steps += stop - start
    if check:
        check_losses(losses, start, problem, alpha)
    return state


def outer_value_and_grads(problem, w: Any, alpha: Any, cost=None):
    """``(L_val, ∇_w L_val, ∇_α L_val)`` at ``(w, alpha)``."""
    (gw, ga), value = grad_and_value(problem.outer_loss, argnums=(0, 1))(
        w, alpha, problem.outer_batch)
    if cost is not None:
        cost.outer_grads += 1
    return value, gw, ga


def check_losses(losses: torch.Tensor, start: int, problem, alpha: Any) -> None:
    """Raise :class:`InnerDivergenceError` at the first non-finite inner loss."""
    losses = losses.detach()
    if losses.numel() == 0 or bool(torch.isfinite(losses).all()):
        return
    bad = int((~torch.isfinite(losses)).nonzero()[0, 0])
    try:
        lr = problem.optimizer.learning_rate(alpha)
    except Exception:  # a learning rate that cannot be read as a number
        lr = None
    raise InnerDivergenceError(start + bad, float(losses[bad]), lr)
