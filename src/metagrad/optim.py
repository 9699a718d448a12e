"""Differentiable inner optimisers as pure state-passing functions.

An optimiser is a small frozen object with two pure methods, in the style of optax/TorchOpt::

    buffers = opt.init(w)                                  # optimiser state (dict of trees)
    w, buffers = opt.step(w, buffers, g, hyper, t)         # one update, t = 1, 2, ...

``hyper = opt.hyper(alpha)`` evaluates the optimiser's hyperparameters. Each one is either a
number or a callable ``alpha -> tensor``, so a learning rate or momentum can itself be a
hyperparameter that the hypergradient flows into. No in-place updates: every step returns new
tensors, so derivatives flow through the whole state (weights *and* buffers).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Union

import torch

from ._tree import tree_map, tree_zeros_like
from ._validate import as_real, plain_number
from .errors import check

__all__ = ["SGD", "Momentum", "Adam", "Hyper"]

Hyper = Union[float, Callable[[Any], torch.Tensor]]


class _Optimizer:
    """Shared behaviour: evaluate hyperparameters, describe them."""

    def hyper(self, alpha: Any) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name)(alpha) if callable(getattr(self, f.name))
                         else getattr(self, f.name)) for f in fields(self)}

    def learning_rate(self, alpha: Any) -> float:
        """The (detached) learning rate at ``alpha``, e.g. for implicit methods' η."""
        lr = self.hyper(alpha)["lr"]
        return float(lr.detach()) if isinstance(lr, torch.Tensor) else float(lr)

    #: field -> keyword arguments of :func:`~metagrad._validate.as_real` (the valid range).
    _RANGES: dict = {}

    def _check_numbers(self) -> None:
        """Numbers (also numpy / 0-dim tensor ones) become floats checked against ``_RANGES``;
        callables ``alpha -> tensor`` are checked when evaluated."""
        for f in fields(self):
            v = plain_number(getattr(self, f.name))
            name = f"{type(self).__name__}.{f.name}"
            check(callable(v) or (isinstance(v, (int, float)) and not isinstance(v, bool)),
                  f"{name} must be a number or a callable alpha -> tensor, got {type(v).__name__}"
                  + ("; to learn it, pass a callable such as lambda a: a['lr']"
                     if isinstance(v, torch.Tensor) else ""))
            if not callable(v):
                object.__setattr__(self, f.name, as_real(name, v, **self._RANGES.get(f.name, {})))


@dataclass(frozen=True)
class SGD(_Optimizer):
    r"""Plain gradient descent: :math:`w_{t} = w_{t-1} - \eta\, g_t`. No buffers."""
    lr: Hyper = 0.1
    _RANGES = {"lr": dict(low=0, low_open=True, hint="; pass e.g. lr=0.1")}

    def __post_init__(self):
        self._check_numbers()

    def init(self, w: Any) -> dict:
        return {}

    def step(self, w, buffers, g, hp, t):
        return tree_map(lambda wi, gi: wi - hp["lr"] * gi, w, g), {}


@dataclass(frozen=True)
class Momentum(_Optimizer):
    r"""Heavy-ball SGD, PyTorch convention: :math:`v_t = \mu v_{t-1} + g_t`,
    :math:`w_t = w_{t-1} - \eta v_t`. Buffers: ``{"v": velocity}``."""
    lr: Hyper = 0.1
    momentum: Hyper = 0.9
    _RANGES = {"lr": dict(low=0, low_open=True, hint="; pass e.g. lr=0.1"),
               "momentum": dict(low=0, high=1, high_open=True, hint="; pass e.g. momentum=0.9")}

    def __post_init__(self):
        self._check_numbers()

    def init(self, w: Any) -> dict:
        return {"v": tree_zeros_like(w)}

    def step(self, w, buffers, g, hp, t):
        v = tree_map(lambda vi, gi: hp["momentum"] * vi + gi, buffers["v"], g)
        return tree_map(lambda wi, vi: wi - hp["lr"] * vi, w, v), {"v": v}


@dataclass(frozen=True)
class Adam(_Optimizer):
    r"""Adam with bias correction:
    :math:`m_t = \beta_1 m + (1-\beta_1) g`, :math:`s_t = \beta_2 s + (1-\beta_2) g^2`,
    :math:`w_t = w - \eta\, \hat m_t / (\sqrt{\hat s_t + \epsilon_{root}} + \epsilon)`.

    ``eps_root`` (inside the square root, as in TorchOpt/optax) keeps the derivative of the
    square root finite when a gradient coordinate is exactly zero."""
    lr: Hyper = 1e-3
    beta1: Hyper = 0.9
    beta2: Hyper = 0.999
    eps: Hyper = 1e-8
    eps_root: Hyper = 1e-16
    _RANGES = {"lr": dict(low=0, low_open=True, hint="; pass e.g. lr=1e-3"),
               "beta1": dict(low=0, high=1, high_open=True, hint="; pass e.g. beta1=0.9"),
               "beta2": dict(low=0, high=1, high_open=True, hint="; pass e.g. beta2=0.999"),
               "eps": dict(low=0), "eps_root": dict(low=0)}

    def __post_init__(self):
        self._check_numbers()

    def init(self, w: Any) -> dict:
        return {"m": tree_zeros_like(w), "s": tree_zeros_like(w)}

    def step(self, w, buffers, g, hp, t):
        b1, b2 = hp["beta1"], hp["beta2"]
        m = tree_map(lambda mi, gi: b1 * mi + (1 - b1) * gi, buffers["m"], g)
        s = tree_map(lambda si, gi: b2 * si + (1 - b2) * gi * gi, buffers["s"], g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        w = tree_map(lambda wi, mi, si: wi - hp["lr"] * (mi / c1)
                     / (torch.sqrt(si / c2 + hp["eps_root"]) + hp["eps"]), w, m, s)
        return w, {"m": m, "s": s}
