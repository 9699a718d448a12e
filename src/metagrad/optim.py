"""Differentiable inner optimisers as pure state-passing functions — an open protocol.

An inner optimiser is *any* object with three methods, in the style of optax/TorchOpt (no
metagrad base class is needed, nothing checks ``isinstance``)::

    buffers = opt.init(w)                                  # optimiser state (a tree of tensors)
    hyper = opt.hyper(alpha)                               # its hyperparameters at alpha
    w, buffers = opt.step(w, buffers, g, hyper, t)         # one update, t = 1, 2, ...

and optionally ``opt.learning_rate(alpha) -> float``, the default step η of the implicit
methods (``neumann``, ``hessian-free``). ``step`` must be pure (return new tensors, no in-place
updates), so derivatives flow through the whole state (weights *and* buffers). Example, a
user-defined sign-SGD with a learned learning rate::

    class SignSGD:
        def init(self, w):            return {}
        def hyper(self, alpha):       return {"lr": alpha["lr"]}
        def step(self, w, buffers, g, hyper, t):
            return {k: w[k] - hyper["lr"] * torch.tanh(g[k] / 1e-2) for k in w}, {}

The built-in optimisers (:class:`SGD`, :class:`Momentum`, :class:`Nesterov`, :class:`Adam`,
:class:`AdamW`, :class:`RMSprop`) follow the ``torch.optim`` update rules. Each hyperparameter
is one of

* a number;
* a callable ``alpha -> tensor`` (a learned hyperparameter the hypergradient flows into);
* a dict ``{parameter name: value}`` keyed like ``w`` (per-leaf values, e.g. Meta-SGD's
  learning rate per parameter tensor), or a callable ``alpha -> dict`` (learned per-leaf,
  possibly elementwise: ``lr=lambda a: a["lrs"]`` with ``a["lrs"][k]`` shaped like ``w[k]``);
* :func:`schedule` ``(fn)`` — a function of the step ``t = 1..T`` (and optionally of alpha).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable, Union

import torch

from ._tree import tree_map as _pytree_map, tree_zeros_like
from ._validate import as_real, plain_number
from .errors import check, ConfigError

__all__ = ["SGD", "Momentum", "Nesterov", "Adam", "AdamW", "RMSprop", "Hyper", "schedule",
           "Schedule"]

Hyper = Union[float, dict, Callable[[Any], Any], "Schedule"]


@dataclass(frozen=True)
class Schedule:
    """A hyperparameter that depends on the inner step: ``fn(t)`` or ``fn(t, alpha)``,
    ``t = 1..T`` (e.g. ``schedule(lambda t: 0.1 * 0.95 ** t)``, or a learned warm-up
    ``schedule(lambda t, a: a["lr"] * min(1, t / 5))``)."""
    fn: Callable

    def bind(self, alpha: Any) -> Callable[[int], Any]:
        takes_alpha = len(inspect.signature(self.fn).parameters) >= 2
        return (lambda t: self.fn(t, alpha)) if takes_alpha else self.fn


def schedule(fn: Callable) -> Schedule:
    """Mark ``fn(t)`` / ``fn(t, alpha)`` as a per-step hyperparameter (see :class:`Schedule`)."""
    check(callable(fn), f"schedule needs a function t -> value, got {type(fn).__name__}")
    return Schedule(fn)


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """``torch.utils._pytree.tree_map`` with a fast path for (nested) dicts of tensors, the house
    format of ``w``: the same calls in the same key order, without pytree's flatten/unflatten
    (a few microseconds per call, seven calls per optimiser step)."""
    if type(tree) is dict:
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return fn(tree, *rest)
    return _pytree_map(fn, tree, *rest)


class _Bound:
    """A schedule bound to alpha: resolved at each step."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, t):
        return self.fn(t)


def _evaluate(value: Any, alpha: Any) -> Any:
    if isinstance(value, Schedule):
        return _Bound(value.bind(alpha))
    if isinstance(value, dict):
        return {k: _evaluate(v, alpha) for k, v in value.items()}
    if callable(value):
        return value(alpha)
    return value


def _resolve(hp: dict, t: int, w: Any) -> dict:
    """Every hyperparameter at step ``t`` as a tree shaped like ``w`` (per-leaf values)."""
    def at(v):
        if isinstance(v, _Bound):
            return v(t)
        if isinstance(v, dict):
            return {k: at(x) for k, x in v.items()}
        return v

    out = {}
    for name, v in hp.items():
        v = at(v)
        if isinstance(v, dict):
            missing = sorted(set(w) - set(v)) if isinstance(w, dict) else []
            if missing:
                raise ConfigError(f"per-parameter hyperparameter {name!r} has keys {sorted(v)} but "
                                  f"w has {sorted(w)}; give a value for {missing}")
            out[name] = {k: v[k] for k in w}
        else:
            out[name] = tree_map(lambda _: v, w)
    return out


class _Optimizer:
    """Shared behaviour of the built-in optimisers: evaluate and check hyperparameters."""

    def hyper(self, alpha: Any) -> dict[str, Any]:
        return {f.name: _evaluate(getattr(self, f.name), alpha) for f in fields(self)}

    def learning_rate(self, alpha: Any) -> float:
        """The (detached) scalar learning rate at ``alpha``, e.g. for implicit methods' η."""
        lr = self.hyper(alpha)["lr"]
        if isinstance(lr, (dict, _Bound)) or (isinstance(lr, torch.Tensor) and lr.numel() != 1):
            raise ConfigError(f"{type(self).__name__}.lr is per-parameter or scheduled, so it has no "
                              f"single value: pass eta=<float> to the implicit method")
        return float(lr.detach()) if isinstance(lr, torch.Tensor) else float(lr)

    def _check_numbers(self) -> None:
        """Numbers (numpy / 0-dim tensor ones too) become floats checked against
        :data:`_RANGES`; callables and schedules are checked when evaluated."""
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type not in ("bool", bool):
                v = ({k: plain_number(x) for k, x in v.items()} if isinstance(v, dict)
                     else plain_number(v))
            if f.type in ("bool", bool):
                check(isinstance(v, bool), f"{type(self).__name__}.{f.name} must be True or False, "
                                           f"got {v!r}")
                continue
            ok = callable(v) or isinstance(v, (int, float, Schedule)) and not isinstance(v, bool)
            ok = ok or isinstance(v, dict) and all(callable(x) or isinstance(x, (int, float, Schedule))
                                                   for x in v.values())
            check(ok, f"{type(self).__name__}.{f.name} must be a number or a callable alpha -> tensor, "
                      f"got {type(v).__name__}; a dict of those per parameter and mg.schedule(fn) "
                      f"are accepted too" + ("; to learn it, pass a callable such as lambda a: a['lr']"
                                             if isinstance(v, torch.Tensor) else ""))
            object.__setattr__(self, f.name, _in_range(f"{type(self).__name__}.{f.name}", f.name, v))

    def __post_init__(self):
        self._check_numbers()


#: The valid range of each hyperparameter given as a number (see metagrad._validate.as_real).
_RANGES = {"lr": dict(low=0, low_open=True, hint="; pass e.g. lr=0.1"),
           "momentum": dict(low=0, high=1, high_open=True, hint="; pass e.g. momentum=0.9"),
           "beta1": dict(low=0, high=1, high_open=True, hint="; pass e.g. beta1=0.9"),
           "beta2": dict(low=0, high=1, high_open=True, hint="; pass e.g. beta2=0.999"),
           "decay": dict(low=0, high=1, high_open=True, hint="; pass e.g. decay=0.99"),
           "eps": dict(low=0), "eps_root": dict(low=0), "weight_decay": dict(low=0)}


def _in_range(name: str, field: str, v: Any, frozen_ok: bool = False) -> Any:
    """``v`` with its numbers checked against _RANGES; a per-parameter dict may hold lr=0
    (a frozen parameter)."""
    if isinstance(v, dict):
        return {k: _in_range(f"{name}[{k!r}]", field, x, True) for k, x in v.items()}
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        rng = dict(_RANGES.get(field, {}))
        if field == "lr":
            rng.update(low_open=not frozen_ok, hint="; pass e.g. lr=0.1 (a per-parameter dict "
                                                    "may hold 0 to freeze a parameter)")
        return as_real(name, v, **rng)
    return v


def _decayed(g, w, wd):
    """``g + wd * w`` (coupled L2 weight decay, as torch.optim's ``weight_decay``)."""
    return tree_map(lambda gi, wi, d: _axpy(gi, d, wi) if not _is_zero(d) else gi, g, w, wd)


def _is_zero(x) -> bool:
    return isinstance(x, (int, float)) and x == 0


def _number(s) -> bool:
    """A plain number, outside ``torch.compile``: the fused form is eager-only (under
    ``torch.compile`` in torch 2.13 the compiled step came out as if ``alpha`` were 1 — caught by
    the benchmark's compiled-vs-uncompiled check and by tests/test_speed.py)."""
    return isinstance(s, (int, float)) and not isinstance(s, bool) and not torch.compiler.is_compiling()


def _axpy(y, s, x):
    """``y + s * x``: one fused ``torch.add(y, x, alpha=s)`` when ``s`` is a plain number (one
    pass over memory instead of two, one product in its backward instead of two), the plain
    expression when ``s`` is a tensor (a learned hyperparameter the derivative flows into)."""
    return torch.add(y, x, alpha=s) if _number(s) else y + s * x


def _minus_scaled(y, s, x):
    """``y - s * x`` (fused like :func:`_axpy` when ``s`` is a plain number)."""
    return torch.add(y, x, alpha=-s) if _number(s) else y - s * x


@dataclass(frozen=True)
class SGD(_Optimizer):
    r"""Plain gradient descent: :math:`w_{t} = w_{t-1} - \eta\, (g_t + \lambda w_{t-1})`. No buffers."""
    lr: Hyper = 0.1
    weight_decay: Hyper = 0.0

    def init(self, w: Any) -> dict:
        return {}

    def step(self, w, buffers, g, hp, t):
        h = _resolve(hp, t, w)
        g = _decayed(g, w, h["weight_decay"])
        return tree_map(lambda wi, gi, lr: _minus_scaled(wi, lr, gi), w, g, h["lr"]), {}


@dataclass(frozen=True)
class Momentum(_Optimizer):
    r"""Heavy-ball SGD, PyTorch convention: :math:`v_t = \mu v_{t-1} + g_t`,
    :math:`w_t = w_{t-1} - \eta v_t` (``nesterov=True``: :math:`w_t = w_{t-1} - \eta(g_t + \mu v_t)`).
    ``weight_decay`` adds :math:`\lambda w` to the gradient. Buffers: ``{"v": velocity}``."""
    lr: Hyper = 0.1
    momentum: Hyper = 0.9
    weight_decay: Hyper = 0.0
    nesterov: bool = False

    def init(self, w: Any) -> dict:
        return {"v": tree_zeros_like(w)}

    def step(self, w, buffers, g, hp, t):
        h = _resolve(hp, t, w)
        g = _decayed(g, w, h["weight_decay"])
        v = tree_map(lambda vi, gi, mu: _axpy(gi, mu, vi), buffers["v"], g, h["momentum"])
        d = tree_map(lambda gi, vi, mu: _axpy(gi, mu, vi), g, v, h["momentum"]) if self.nesterov else v
        return tree_map(lambda wi, di, lr: _minus_scaled(wi, lr, di), w, d, h["lr"]), {"v": v}


@dataclass(frozen=True)
class Nesterov(Momentum):
    """:class:`Momentum` with Nesterov's look-ahead (``torch.optim.SGD(nesterov=True)``)."""
    nesterov: bool = True


@dataclass(frozen=True)
class Adam(_Optimizer):
    r"""Adam with bias correction:
    :math:`m_t = \beta_1 m + (1-\beta_1) g`, :math:`s_t = \beta_2 s + (1-\beta_2) g^2`,
    :math:`w_t = w - \eta\, \hat m_t / (\sqrt{\hat s_t + \epsilon_{root}} + \epsilon)`;
    ``weight_decay`` is coupled L2 (added to g, as ``torch.optim.Adam``).

    ``eps_root`` (inside the square root, as in TorchOpt/optax) keeps the derivative of the
    square root finite when a gradient coordinate is exactly zero."""
    lr: Hyper = 1e-3
    beta1: Hyper = 0.9
    beta2: Hyper = 0.999
    eps: Hyper = 1e-8
    eps_root: Hyper = 1e-16
    weight_decay: Hyper = 0.0

    def init(self, w: Any) -> dict:
        return {"m": tree_zeros_like(w), "s": tree_zeros_like(w)}

    def _decoupled(self) -> bool:
        return False

    def step(self, w, buffers, g, hp, t):
        h = _resolve(hp, t, w)
        if self._decoupled():  # AdamW: w <- w (1 - lr wd), then the Adam step without decay
            w = tree_map(lambda wi, lr, d: wi * (1 - lr * d), w, h["lr"], h["weight_decay"])
        else:
            g = _decayed(g, w, h["weight_decay"])
        m = tree_map(lambda mi, gi, b1: b1 * mi + (1 - b1) * gi, buffers["m"], g, h["beta1"])
        s = tree_map(lambda si, gi, b2: b2 * si + (1 - b2) * gi * gi, buffers["s"], g, h["beta2"])
        w = tree_map(lambda wi, mi, si, lr, b1, b2, e, er: wi - lr * (mi / (1 - b1 ** t))
                     / (torch.sqrt(si / (1 - b2 ** t) + er) + e),
                     w, m, s, h["lr"], h["beta1"], h["beta2"], h["eps"], h["eps_root"])
        return w, {"m": m, "s": s}


@dataclass(frozen=True)
class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019; ``torch.optim.AdamW``):
    :math:`w \leftarrow w(1-\eta\lambda)` before the Adam step. Default ``weight_decay=1e-2``."""
    weight_decay: Hyper = 1e-2

    def _decoupled(self) -> bool:
        return True


@dataclass(frozen=True)
class RMSprop(_Optimizer):
    r"""RMSprop, ``torch.optim.RMSprop`` convention: :math:`s_t = \rho s + (1-\rho) g^2`,
    :math:`w_t = w - \eta\, g / (\sqrt{s_t + \epsilon_{root}} + \epsilon)`. ``decay`` is
    torch's ``alpha`` (renamed: α is metagrad's hyperparameter tree). Buffers: ``{"s": ...}``."""
    lr: Hyper = 1e-2
    decay: Hyper = 0.99
    eps: Hyper = 1e-8
    eps_root: Hyper = 1e-16
    weight_decay: Hyper = 0.0

    def init(self, w: Any) -> dict:
        return {"s": tree_zeros_like(w)}

    def step(self, w, buffers, g, hp, t):
        h = _resolve(hp, t, w)
        g = _decayed(g, w, h["weight_decay"])
        s = tree_map(lambda si, gi, r: r * si + (1 - r) * gi * gi, buffers["s"], g, h["decay"])
        w = tree_map(lambda wi, gi, si, lr, e, er: wi - lr * gi / (torch.sqrt(si + er) + e),
                     w, g, s, h["lr"], h["eps"], h["eps_root"])
        return w, {"s": s}
