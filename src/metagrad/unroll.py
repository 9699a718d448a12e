r"""Running the inner loop: the transition :math:`\Phi_t`, plain runs, taped segments.

The inner *state* is the pair ``(w, buffers)``: weights and optimiser buffers (e.g. the
momentum velocity), so that derivatives flow through the whole optimiser state.

Two implementations of one step share :func:`apply_step` (the optimiser update):

* :func:`transition` — a pure function (``torch.func.grad_and_value`` inside), for use under
  ``torch.func`` transforms (``vjp``, ``jvp``, ``vmap``: fg2u, fmd, the theory checks);
* :func:`inner_grad` / :func:`tape` / :func:`run` — plain autograd (``torch.autograd.grad``),
  with no functorch wrapping, for everything else: a plain run costs what a hand-written
  PyTorch loop costs, and reverse mode is one ``create_graph`` tape and one backward.

Problems with ``nn.Module`` buffers (:func:`metagrad.from_module`) always step through
:func:`transition` (``module.stateful_transition``), which autograd differentiates as well.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.func import grad_and_value
from torch.utils import _pytree as pytree

from ._tree import tree_detach
from .errors import InnerDivergenceError
from . import module

__all__ = ["initial_state", "transition", "run", "run_taped", "tape", "inner_grad", "apply_step",
           "taped_step", "outer_value_and_grads", "outer_w_grad", "check_losses", "in_transform", "State"]

State = tuple  # (w, buffers)


def in_transform() -> bool:
    """True inside a ``torch.func`` transform, where plain autograd cannot see the tensors."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def _has_module_buffers(problem) -> bool:
    return getattr(problem, "buffers", None) is not None


def initial_state(problem, alpha: Any) -> State:
    """``(w_0, buffers_0)``; ``w_0 = init(alpha)`` for a learned initialisation."""
    w0 = problem.w0(alpha)
    if _has_module_buffers(problem):  # module buffers ride in the state
        return (w0, module.initial_buffers(problem, w0))
    return (w0, problem.optimizer.init(w0))


def apply_step(problem, state: State, g: Any, hp: dict, t: int) -> State:
    """The optimiser update of step ``t`` (0-based) given the inner gradient ``g``."""
    w, buffers = state
    return problem.optimizer.step(w, buffers, g, hp, t + 1)


def transition(problem, state: State, alpha: Any, t: int) -> tuple[State, torch.Tensor]:
    """One inner step ``t -> t+1`` (``t`` is 0-based) as a pure function (torch.func).
    Returns the new state and ``L_train(w_t)``, the loss at the *old* weights."""
    if _has_module_buffers(problem):  # an nn.Module's buffers (mg.from_module)
        return module.stateful_transition(problem, state, alpha, t)
    g, loss = grad_and_value(problem.inner_loss)(state[0], alpha, problem.batch(t))
    return apply_step(problem, state, g, problem.optimizer.hyper(alpha), t), loss


def run_taped(problem, alpha: Any, state: State, start: int, stop: int):
    """Steps ``start..stop-1`` as a pure function (to be differentiated by torch.func).
    Returns ``(state, losses)``, losses stacked in a 1-D tensor."""
    losses = []
    for t in range(start, stop):
        state, loss = transition(problem, state, alpha, t)
        losses.append(loss)
    return state, (torch.stack(losses) if losses else torch.zeros(0))


def _grads(out: torch.Tensor, inputs: list, **kw) -> list:
    """``torch.autograd.grad`` with zeros for inputs ``out`` does not depend on."""
    if not out.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    gs = torch.autograd.grad(out, inputs, allow_unused=True, **kw)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gs)]


_VETTED: set[int] = set()


def _vet(problem, w: Any, alpha: Any, t: int) -> None:
    """Once per problem: one step through :func:`transition` (torch.func), which refuses a loss
    that mutates a captured tensor in place (an ``nn.Module`` with BatchNorm called directly
    instead of through :func:`metagrad.from_module`); plain autograd would let it mutate."""
    key = id(problem)
    if key in _VETTED:
        return
    with torch.no_grad():
        state = (tree_detach(w), problem.optimizer.init(tree_detach(w)))
        transition(problem, state, tree_detach(alpha), t)
    _VETTED.add(key)
    weakref.finalize(problem, _VETTED.discard, key)


def inner_grad(problem, w: Any, alpha: Any, t: int, *, create_graph: bool = False):
    """``(∇_w L_train(w, α; batch_t), L_train)`` by plain autograd. With ``create_graph`` the
    gradient stays differentiable (w.r.t. ``w`` and α) for reverse-mode tapes."""
    _vet(problem, w, alpha, t)
    flat = type(w) is dict and all(isinstance(x, torch.Tensor) for x in w.values())
    if flat:  # the common case, a flat dict of tensors: no pytree round trips
        leaves, keys = list(w.values()), list(w)
    else:
        leaves, spec = pytree.tree_flatten(w)
    with torch.enable_grad():
        leaves = [x if (create_graph and x.requires_grad) else x.detach().requires_grad_()
                  for x in leaves]
        loss = problem.inner_loss(dict(zip(keys, leaves)) if flat else pytree.tree_unflatten(leaves, spec),
                                  alpha, problem.batch(t))
        g = _grads(loss, leaves, create_graph=create_graph)
    return (dict(zip(keys, g)) if flat else pytree.tree_unflatten(g, spec)), loss


def taped_step(problem, state: State, alpha: Any, t: int, hp: dict | None = None):
    """``(new_state, loss)``: step ``t`` under autograd, differentiable w.r.t. α and ``state``
    (``hp``: the optimiser's hyperparameters at α, if already evaluated)."""
    with torch.enable_grad():
        if _has_module_buffers(problem):
            return transition(problem, state, alpha, t)
        g, loss = inner_grad(problem, state[0], alpha, t, create_graph=True)
        hp = problem.optimizer.hyper(alpha) if hp is None else hp
        return apply_step(problem, state, g, hp, t), loss


def tape(problem, alpha: Any, state: State, start: int, stop: int, *, step=None):
    """Steps ``start..stop-1`` under a plain autograd tape (``create_graph=True``): the
    returned state is differentiable w.r.t. α and ``state`` (which should require grad).
    ``step(problem, state, alpha, t) -> (state, loss)`` replaces :func:`taped_step` (e.g. the
    compiled step of :mod:`metagrad.compiled`)."""
    losses = []
    with torch.enable_grad():
        hp = problem.optimizer.hyper(alpha)
        for t in range(start, stop):
            state, loss = (taped_step(problem, state, alpha, t, hp) if step is None
                           else step(problem, state, alpha, t))
            losses.append(loss.detach())
    return state, (torch.stack(losses) if losses else torch.zeros(0))


def run(problem, alpha: Any, *, state: State | None = None, start: int = 0,
        stop: int | None = None, cost=None, check: bool = True) -> State:
    """A plain inner run (no derivatives kept): steps ``start..stop-1``.

    Plain autograd per step (inside a torch.func transform: the pure :func:`transition`).
    Raises :class:`~metagrad.errors.InnerDivergenceError` if the inner loss turns NaN/Inf."""
    stop = problem.T if stop is None else stop
    alpha = tree_detach(alpha)
    with torch.no_grad():
        if state is None:
            state = initial_state(problem, alpha)
        state = tree_detach(state)
        if in_transform() or _has_module_buffers(problem):
            state, losses = run_taped(problem, alpha, state, start, stop)
        else:
            hp, losses = problem.optimizer.hyper(alpha), []
            for t in range(start, stop):
                g, loss = inner_grad(problem, state[0], alpha, t)
                state = apply_step(problem, state, g, hp, t)
                losses.append(loss.detach())
            losses = torch.stack(losses) if losses else torch.zeros(0)
    if cost is not None:
        cost.inner_steps += stop - start
    if check:
        check_losses(losses, start, problem, alpha)
    return state


def outer_value_and_grads(problem, w: Any, alpha: Any, cost=None):
    """``(L_val, ∇_w L_val, ∇_α L_val)`` at ``(w, alpha)``."""
    if cost is not None:
        cost.outer_grads += 1
    if in_transform():
        (gw, ga), value = grad_and_value(problem.outer_loss, argnums=(0, 1))(
            w, alpha, problem.outer_batch)
        return value, gw, ga
    (lw, sw), (la, sa) = pytree.tree_flatten(w), pytree.tree_flatten(alpha)
    with torch.enable_grad():
        lw = [x.detach().requires_grad_() for x in lw]
        la = [x.detach().requires_grad_() for x in la]
        value = problem.outer_loss(pytree.tree_unflatten(lw, sw), pytree.tree_unflatten(la, sa),
                                   problem.outer_batch)
        g = _grads(value, lw + la)
    return (value.detach(), pytree.tree_unflatten(g[:len(lw)], sw),
            pytree.tree_unflatten(g[len(lw):], sa))


def outer_w_grad(problem, w: Any, alpha: Any, cost=None) -> Any:
    """``∇_w L_val(w, α)`` only (α held fixed)."""
    if cost is not None:
        cost.outer_grads += 1
    if in_transform():
        return torch.func.grad(problem.outer_loss)(w, alpha, problem.outer_batch)
    leaves, spec = pytree.tree_flatten(w)
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() for x in leaves]
        value = problem.outer_loss(pytree.tree_unflatten(leaves, spec), tree_detach(alpha),
                                   problem.outer_batch)
        return pytree.tree_unflatten(_grads(value, leaves), spec)


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
