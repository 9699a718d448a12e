r"""Bring your own ``nn.Module``: parameters as ``w``, buffers as non-differentiated inner state.

:func:`from_module` turns a module into initial parameters plus a pure apply function built on
:func:`torch.func.functional_call`::

    net = mg.from_module(model)             # model: any nn.Module, e.g. a CNN with BatchNorm
    def inner_loss(w, alpha, batch):
        x, y = batch
        return F.cross_entropy(net(w, x), y)
    problem = mg.BilevelProblem(inner_loss, outer_loss, init=net.params, buffers=net.buffers, ...)

The module's *buffers* (BatchNorm running statistics, the integer ``num_batches_tracked``) are
not part of ``w``: they ride along in the inner state next to the optimiser's buffers, are
updated by every inner step in train mode, and are treated as constants by every estimator
(stop-gradient, as in ``higher`` and TorchOpt). In train mode BatchNorm normalises with the
statistics of the batch, so the losses do not depend on the running statistics and the
hypergradient is exact; a loss that reads running statistics (eval mode) differentiates as if
they were constant.

Outside the inner loop (the outer loss, your evaluation), ``net(w, x)`` uses the buffers passed
as ``buffers=`` (e.g. ``result.state_T[1]["module"]``, the buffers at the end of the inner loop)
or else the module's buffers as they were when :func:`from_module` was called; an eval-mode call
of the latter kind warns once, since it is rarely what is meant. Nothing ever writes into
``model``: every call works on clones.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any

import torch
from torch.func import functional_call, grad_and_value

from .errors import check, ConfigError

__all__ = ["from_module", "FunctionalModule", "stateful_transition"]

_LOCAL = threading.local()


@contextlib.contextmanager
def _bound(buffers: dict):
    """Make ``buffers`` (``{module name: {buffer: tensor}}``) the current inner state: calls of
    :class:`FunctionalModule` read their buffers from it and write the updated ones back."""
    slot = {k: dict(v) for k, v in buffers.items()}
    previous = getattr(_LOCAL, "slot", None)
    _LOCAL.slot = slot
    try:
        yield slot
    finally:
        _LOCAL.slot = previous


@contextlib.contextmanager
def _mode(model: torch.nn.Module, train: bool):
    modes = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


class FunctionalModule:
    """A pure view of an ``nn.Module``: ``net(w, *inputs, buffers=None, train=None)``.

    Attributes:
        params: the trainable parameters (``requires_grad=True``) at creation, detached copies:
            use them as ``w_0`` (``init=net.params``).
        buffers: ``{name: {buffer: tensor}}``, the module's buffers at creation, to pass as
            ``BilevelProblem(buffers=...)`` (merge several modules' dicts with ``{**a, **b}``).
        train: the mode used when a call does not say (the module's mode at creation).
    """

    def __init__(self, model: torch.nn.Module, name: str, train: bool | None):
        self.model, self.name = model, name
        self.train = model.training if train is None else bool(train)
        self.params = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
        self.frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {name: {k: b.detach().clone() for k, b in model.named_buffers()}}
        self._dtypes = {k: b.dtype for k, b in model.named_buffers()}
        self._warned = False

    def __call__(self, w: dict, *args, buffers: dict | None = None, train: bool | None = None,
                 **kwargs):
        slot = getattr(_LOCAL, "slot", None)
        inside = buffers is None and slot is not None and self.name in slot
        explicit = buffers is not None
        if buffers is None:
            buffers = slot[self.name] if inside else self.buffers[self.name]
        elif self.name in buffers and isinstance(buffers[self.name], dict):
            buffers = buffers[self.name]  # accept the {name: {...}} form too
        missing = sorted(set(self.params) - set(w)) if isinstance(w, dict) else None
        if missing is None or missing:
            raise ConfigError(f"{type(self.model).__name__} expects w with its parameters "
                              f"{sorted(self.params)}; missing {missing if missing else w!r}")
        mode = self.train if train is None else train
        if not mode and not inside and not explicit and self.buffers[self.name] and not self._warned:
            self._warned = True
            warnings.warn(f"{self!r} called in eval mode outside the inner loop without buffers=: "
                          f"it uses the buffers from when from_module was called, not those at the "
                          f"end of the inner loop; pass buffers=result.state_T[1]['module'] (or use "
                          f"train mode in the outer loss)", UserWarning, stacklevel=2)
        # BatchNorm updates its running statistics in place: give it fresh copies, so the
        # caller's tensors (and the module's) are never mutated, also inside torch.func.
        fresh = {k: b.detach().to(self._dtypes.get(k, b.dtype), copy=True) for k, b in buffers.items()}
        params = {k: w[k] for k in self.params}  # w may hold more than this module's weights
        with _mode(self.model, mode):
            out = functional_call(self.model, ({**self.frozen, **params}, fresh), args, kwargs,
                                  strict=False)
        if inside:
            slot[self.name] = {k: _as_state(b.detach()) for k, b in fresh.items()}
        return out

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.params.values())
        return (f"FunctionalModule({type(self.model).__name__}, {n} parameters, "
                f"buffers={sorted(self.buffers[self.name])}, train={self.train})")


def from_module(model: torch.nn.Module, *, name: str = "module", train: bool | None = None
                ) -> FunctionalModule:
    """``model`` as initial parameters ``net.params`` and a pure function ``net(w, *inputs)``.

    Args:
        model: any ``torch.nn.Module``; its trainable parameters become ``w``, its frozen
            parameters constants, its buffers non-differentiated inner state.
        name: the key of this module's buffers in ``net.buffers`` (give distinct names when
            a problem uses several modules).
        train: the default mode of calls (default: ``model.training``); a call may override it
            with ``net(w, x, train=False)``.
    """
    check(isinstance(model, torch.nn.Module),
          f"from_module needs a torch.nn.Module, got {type(model).__name__}")
    check(isinstance(name, str) and name, f"name must be a non-empty string, got {name!r}")
    return FunctionalModule(model, name, train)


def stateful_transition(problem, state, alpha, t: int):
    """One inner step of a problem with module buffers (``problem.buffers`` is set).

    The inner state is ``(w, {"opt": optimiser buffers, "module": module buffers})``; the module
    buffers written by the inner loss come out of ``grad_and_value`` as auxiliary output, so
    they are plain (non-differentiated) tensors at every torch.func level."""
    w, buffers = state

    def loss_and_buffers(w_, a_, batch):
        with _bound(buffers["module"]) as slot:
            loss = problem.inner_loss(w_, a_, batch)
        return loss, slot

    g, (loss, module_buffers) = grad_and_value(loss_and_buffers, has_aux=True)(
        w, alpha, problem.batch(t))
    hp = problem.optimizer.hyper(alpha)
    w, opt = problem.optimizer.step(w, buffers["opt"], g, hp, t + 1)
    return (w, {"opt": opt, "module": module_buffers}), loss


def has_buffers(problem) -> bool:
    """True when ``problem`` carries an nn.Module's buffers in its inner state."""
    return getattr(problem, "buffers", None) is not None


def initial_buffers(problem, w0) -> Any:
    """The optimiser's initial buffers, joined with the module buffers when there are any."""
    opt = problem.optimizer.init(w0)
    if problem.buffers is None:
        return opt
    return {"opt": opt, "module": {name: {k: _as_state(b) for k, b in v.items()}
                                   for name, v in problem.buffers.items()}}


def _as_state(b: torch.Tensor) -> torch.Tensor:
    """Integer buffers (``num_batches_tracked``) travel as float64 (exact up to 2**53), so that
    every estimator can treat the whole inner state as floating point; cast back on use."""
    return b if b.is_floating_point() else b.to(torch.float64)
