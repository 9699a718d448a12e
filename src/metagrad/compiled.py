r"""An opt-in compiled transition: :math:`\Phi_t` through ``torch.compile``, cached per problem.

Small problems (P ≲ 10⁴) spend most of their time in Python and in launching many tiny
operations; compiling one step — the inner gradient (``torch.func.grad_and_value``) and the
optimiser update — into one fused graph removes that overhead. Three compiled functions, each
built on first use and kept for the problem's lifetime:

* :func:`step` — ``(state, loss) = Φ_t(state, α)``; differentiable once by autograd (AOTAutograd
  compiles its backward), which is all ``rmd`` (one backward through the tape) and ``greedy``
  (one VJP per step) need;
* :func:`outer_w_grad` — ``∇_w L_val``;
* :func:`greedy_step` — one whole step of ``greedy``: the step, the validation gradient at the
  new weights and the step's VJP w.r.t. α, in one graph without autograd at run time (one
  compiled call per step instead of a compiled step, its compiled backward and a compiled
  validation gradient);
* :func:`tangent_step` — the step with a batch of forward-mode tangents (``vmap`` of ``jvp``),
  for ``fg2u``.

Estimators take ``compile=True``. Where compiling fails (no C++ compiler, an operation the
compiler does not support, a platform without ``torch.compile``) a warning is issued once per
problem and the uncompiled code runs instead, with identical results.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable

import torch
from torch.func import grad, grad_and_value, jvp, vjp, vmap

from . import unroll

__all__ = ["step", "outer_w_grad", "greedy_step", "tangent_step", "available", "clear"]

_CACHE: dict[int, dict[str, Any]] = {}


def clear() -> None:
    """Forget every compiled function (e.g. to measure compile time again)."""
    _CACHE.clear()
    torch._dynamo.reset()


def _entry(problem) -> dict:
    key = id(problem)
    if key not in _CACHE:
        _CACHE[key] = {}
        weakref.finalize(problem, _CACHE.pop, key, None)
    return _CACHE[key]


def _compiled(problem, name: str, make: Callable[[], Callable]) -> Callable | None:
    """The compiled function ``name`` of ``problem`` (None after a failed compile)."""
    entry = _entry(problem)
    if name not in entry:
        # dynamic=None: the step index t becomes symbolic after its first change (one recompile)
        entry[name] = torch.compile(make())
    return entry[name]


def _fallback(problem, name: str, err: Exception) -> None:
    entry = _entry(problem)
    entry[name] = None
    warnings.warn(f"metagrad: torch.compile of the {name} failed ({type(err).__name__}: "
                  f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}); running "
                  f"uncompiled (same results, slower)", RuntimeWarning, stacklevel=3)


def _call(problem, name: str, make: Callable[[], Callable], eager: Callable, *args):
    fn = _compiled(problem, name, make)
    if fn is not None:
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 — any compiler failure falls back
            _fallback(problem, name, err)
    return eager(*args)


def available() -> bool:
    """True when ``torch.compile`` exists on this platform (it may still fail for a problem)."""
    return hasattr(torch, "compile")


def _pure_step(problem):
    def fn(w, buffers, alpha, batch, t):
        g, loss = grad_and_value(problem.inner_loss)(w, alpha, batch)
        hp = problem.optimizer.hyper(alpha)
        return unroll.apply_step(problem, (w, buffers), g, hp, t), loss
    return fn


def step(problem, state, alpha, t: int):
    """``(new_state, L_train(w_t))``: one compiled step, differentiable w.r.t. α and ``state``."""
    fn = _pure_step(problem)
    return _call(problem, "step", lambda: fn, fn, state[0], state[1], alpha, problem.batch(t), t)


def outer_w_grad(problem, w, alpha):
    """``∇_w L_val(w, α)``, compiled."""
    fn = lambda w, a, b: grad(problem.outer_loss)(w, a, b)  # noqa: E731
    return _call(problem, "outer_w_grad", lambda: fn, fn, w, alpha, problem.outer_batch)


def greedy_step(problem, state, alpha, t: int):
    """``(new_state, L_train(w_t), B_t^T c, L_val(w_{t+1}), ∇_α L_val(w_{t+1}))`` with
    ``c = ∇_w L_val(w_{t+1})``: one step of :func:`metagrad.estimators.greedy.greedy`, compiled
    as one pure function (``torch.func.vjp`` of the step w.r.t. α)."""
    pure = _pure_step(problem)

    def fn(w, buffers, alpha, batch, outer_batch, t):
        def step_of_alpha(a):
            new_state, loss = pure(w, buffers, a, batch, t)
            return new_state[0], (new_state, loss)
        new_w, pull, (new_state, loss) = vjp(step_of_alpha, alpha, has_aux=True)
        (gw, ga), value = grad_and_value(problem.outer_loss, argnums=(0, 1))(new_w, alpha, outer_batch)
        (b_t,) = pull(gw)
        return new_state, loss, b_t, value, ga
    return _call(problem, "greedy_step", lambda: fn, fn, state[0], state[1], alpha,
                 problem.batch(t), problem.outer_batch, t)


def tangent_init(problem, alpha, V):
    """``(state_0, tangents_0)``: the initial state and its tangents along the rows of ``V``
    (a tree like α with a leading batch dimension); uncompiled, once per call."""
    def one(v):
        return jvp(lambda a: unroll.initial_state(problem, a), (alpha,), (v,))
    return vmap(one, out_dims=(None, 0))(V)


def tangent_outer(problem, state, tangents, alpha, V):
    """``(F, [∇F·v_i]_i)`` from the final state and its tangents; uncompiled, once per call."""
    def one(ts, v):
        return jvp(lambda w, a: problem.outer_loss(w, a, problem.outer_batch), (state[0], alpha),
                   (ts[0], v))
    return vmap(one, out_dims=(None, 0))(tangents, V)


def tangent_step(problem, state, tangents, alpha, V, t: int):
    """One step carrying a batch of tangents: ``(state, tangents, loss)``; ``tangents`` (a tree
    like ``state`` with a leading batch dimension) move along the directions ``V`` (a tree like α,
    same leading dimension)."""
    pure = _pure_step(problem)

    def fn(state, tangents, alpha, V, batch, t):
        def one(ts, v):
            (new, loss), (dnew, _) = jvp(lambda s, a: pure(s[0], s[1], a, batch, t),
                                         (state, alpha), (ts, v))
            return new, dnew, loss
        new, dnew, loss = vmap(one, out_dims=(None, 0, None))(tangents, V)
        return new, dnew, loss
    return _call(problem, "tangent_step", lambda: fn, fn, state, tangents, alpha, V,
                 problem.batch(t), t)
