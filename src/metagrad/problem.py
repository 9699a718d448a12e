r"""What a bilevel problem is.

.. math::
    \min_\alpha F(\alpha) = L_{val}(w_T(\alpha), \alpha), \qquad
    w_t = \Phi_t(w_{t-1}, \alpha) \ (t = 1..T), \quad w_0 = \Omega_0(\alpha).

The transition :math:`\Phi_t` is one step of a differentiable inner optimiser on
``inner_loss`` (:math:`L_{train}`) with the inner batch of step ``t``. Both losses are pure
functions ``loss(w, alpha, batch) -> scalar tensor`` of dicts of tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from torch.utils import _pytree as pytree

from ._tree import tree_leaves, describe
from ._validate import as_int
from .errors import check, ConfigError, MetagradError
from .optim import SGD
from .module import FunctionalModule, _bound

__all__ = ["BilevelProblem", "BlackBoxProblem", "minibatches"]

Loss = Callable[[Any, Any, Any], torch.Tensor]


@dataclass(frozen=True)
class BilevelProblem:
    """A bilevel problem with an unrolled, differentiable inner loop.

    Args:
        inner_loss: ``L_train(w, alpha, batch) -> scalar``.
        outer_loss: ``L_val(w, alpha, batch) -> scalar``.
        init: initial inner parameters ``w_0`` (a dict of tensors) or a function
            ``alpha -> w_0`` for a learned initialisation.
        optimizer: any object with ``init(w)``, ``step(w, buffers, g, hyper, t)`` and
            ``hyper(alpha)`` (see :mod:`metagrad.optim`: SGD, Momentum, Adam, AdamW, RMSprop,
            or your own class); its hyperparameters may be callables of ``alpha``.
        T: horizon (number of inner steps), ``T >= 1``.
        inner_batches: the inner batch used at every step (full batch), or a callable
            ``t -> batch`` (``t = 0..T-1``) for a deterministic minibatch schedule
            (see :func:`minibatches`).
        outer_batch: the batch of the outer loss.
        buffers: non-differentiated inner state of an ``nn.Module`` (BatchNorm running
            statistics, counters): ``net.buffers`` of :func:`metagrad.module.from_module`. Updated by
            every inner step, never differentiated.
    """
    inner_loss: Loss
    outer_loss: Loss
    init: Any
    optimizer: Any = field(default_factory=SGD)
    T: int = 10
    inner_batches: Any = None
    outer_batch: Any = None
    buffers: Any = None

    def __post_init__(self):
        check(callable(self.inner_loss), "inner_loss must be a function (w, alpha, batch) -> scalar")
        check(callable(self.outer_loss), "outer_loss must be a function (w, alpha, batch) -> scalar")
        object.__setattr__(self, "T", as_int("T (the horizon)", self.T, 1, "; pass e.g. T=10"))
        opt = self.optimizer
        if isinstance(opt, torch.optim.Optimizer) or (isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer)):
            raise ConfigError(f"optimizer is torch.optim.{getattr(opt, '__name__', type(opt).__name__)}, which updates "
                              f"in place and cannot be differentiated through; use metagrad's pure "
                              f"optimisers (mg.SGD, mg.Momentum, mg.Adam, mg.AdamW, mg.RMSprop) for the "
                              f"inner loop. torch.optim is for alpha: outer_loop(..., optimizer=...)")
        missing = [m for m in ("init", "step", "hyper") if not callable(getattr(opt, m, None))]
        check(not missing,
              f"optimizer {type(self.optimizer).__name__} lacks the method(s) {missing}: an inner "
              f"optimiser needs init(w), step(w, buffers, g, hyper, t) and hyper(alpha) "
              f"(see metagrad.optim, e.g. mg.SGD(lr=0.1))")
        if isinstance(self.init, torch.nn.Module):
            raise ConfigError(
                f"init is an nn.Module ({type(self.init).__name__}); a module is not a learned "
                f"initialisation. Use net = mg.from_module(model) and pass init=net.params, "
                f"buffers=net.buffers, and call net(w, x) in the losses")
        if isinstance(self.init, FunctionalModule):
            raise ConfigError("init is the functional module itself: pass init=net.params, "
                              "buffers=net.buffers")
        check(callable(self.init) or isinstance(self.init, dict),
              "init must be a dict of tensors (w_0) or a function alpha -> dict of tensors")
        check(self.buffers is None or (isinstance(self.buffers, dict) and all(
            isinstance(v, dict) and all(isinstance(x, torch.Tensor) for x in v.values())
            for v in self.buffers.values())),
            f"buffers must be net.buffers of mg.from_module ({{name: {{buffer: tensor}}}}), "
            f"got {describe(self.buffers)}")

    # -- pieces every estimator uses ------------------------------------------------------
    @property
    def learned_init(self) -> bool:
        """True when ``w_0`` depends on ``alpha``."""
        return callable(self.init)

    def w0(self, alpha: Any) -> Any:
        return self.init(alpha) if callable(self.init) else self.init

    def batch(self, t: int) -> Any:
        return self.inner_batches(t) if callable(self.inner_batches) else self.inner_batches

    def replace(self, **changes) -> "BilevelProblem":
        """A copy with some fields changed (e.g. ``problem.replace(T=50)``)."""
        from dataclasses import replace
        return replace(self, **changes)

    def validate(self, alpha: Any) -> None:
        """Check inputs once, before an estimator spends time: structure, dtypes, finite
        values, scalar losses (a loss that fails on α is reported with α's keys and shapes)."""
        check_alpha(alpha)
        # no side effects: no gradients, and module buffers are bound to copies
        with torch.no_grad(), _bound(self.buffers or {}):
            w0 = _call("init", lambda: self.w0(alpha), alpha) if callable(self.init) else self.init
            check(isinstance(w0, dict) and all(isinstance(x, torch.Tensor) and x.is_floating_point()
                                               for x in tree_leaves(w0)),
                  f"init must give a dict of floating-point tensors, got {describe(w0)}")
            for name, fn, batch in (("inner_loss", self.inner_loss, self.batch(0)),
                                    ("outer_loss", self.outer_loss, self.outer_batch)):
                value = _call(name, lambda: _evaluate_pure(name, fn, w0, alpha, batch), alpha, w0)
                _check_scalar(name, value)


def check_alpha(alpha: Any) -> None:
    """α must be a non-empty dict whose leaves are finite floating-point tensors."""
    check(isinstance(alpha, dict) and len(alpha) > 0,
          f"alpha must be a non-empty dict of tensors, got {describe(alpha)}")
    for path, leaf in pytree.tree_flatten_with_path(alpha)[0]:
        key = "alpha" + pytree.keystr(path)
        check(isinstance(leaf, torch.Tensor) and leaf.is_floating_point(),
              f"every leaf of alpha must be a floating-point tensor, but {key} is "
              f"{getattr(leaf, 'dtype', type(leaf).__name__)}; alpha is {describe(alpha)}. "
              f"Pass e.g. torch.tensor(..., dtype=torch.float64) (an integer alpha would make "
              f"finite-difference and gradient steps meaningless)")
        bad = ~torch.isfinite(leaf.detach())
        if bool(bad.any()):
            raise ConfigError(f"{key} holds {int(bad.sum())} NaN/Inf value(s) (first at flat index "
                              f"{int(bad.reshape(-1).nonzero()[0])}); give finite hyperparameters")


def _call(name: str, fn: Callable[[], Any], alpha: Any, w0: Any = None) -> Any:
    """Run a user function once; a lookup or shape error is re-raised with α's (and w_0's)
    keys and shapes, which is what such an error is almost always about."""
    try:
        return fn()
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, MetagradError):
            raise
        what = f"alpha is {describe(alpha)}" + ("" if w0 is None else f", w_0 is {describe(w0)}")
        key = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
        missing = (f"; key {key!r} is not in alpha (its keys are {sorted(map(str, alpha))})"
                   if isinstance(key, str) and key not in alpha else "")
        raise ConfigError(f"{name} failed on the given alpha with {type(exc).__name__}: {exc}{missing}. "
                          f"{what}: check that alpha has the keys and shapes {name} expects") from exc


MUTATION_HINT = ("Use net = mg.from_module(model), call net(w, x) in the losses and pass "
                 "init=net.params, buffers=net.buffers")


def _evaluate_pure(name: str, fn, w0, alpha, batch):
    """Evaluate a loss inside a ``torch.func`` transform (a JVP with a zero tangent), where an
    in-place update of a captured tensor — an ``nn.Module`` called directly, whose BatchNorm
    statistics would change — is refused *before* it happens: validation has no side effects."""
    from torch.func import jvp
    from ._tree import tree_zeros_like
    try:
        return jvp(lambda w: fn(w, alpha, batch), (w0,), (tree_zeros_like(w0),))[0]
    except RuntimeError as e:
        if "mutate" in str(e) and "captured" in str(e):
            raise ConfigError(f"{name} updates a tensor in place (typically an nn.Module called "
                              f"directly: BatchNorm updates its running statistics). "
                              f"{MUTATION_HINT}") from e
    except Exception:  # e.g. a non-tensor result: evaluate plainly for the precise message below
        pass
    return fn(w0, alpha, batch)


def _check_scalar(name: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(f"{name} must return a scalar (0-dim) tensor, got shape {shape}; "
                          f"reduce it with .mean() or .sum()")


@dataclass(frozen=True)
class BlackBoxProblem:
    """A bilevel problem whose inner solver is a black box: ``solve(alpha) -> w_T``.

    Autograd does not need to see through ``solve`` (it may call numpy/scipy); only the
    zeroth-order estimator ``fg2u-zo`` (and ``fo``-style evaluations) apply. ``outer_loss``
    is ``L_val(w_T, alpha, batch) -> scalar`` evaluated on ``outer_batch``.
    """
    solve: Callable[[Any], Any]
    outer_loss: Loss
    outer_batch: Any = None
    buffers: Any = None

    def __post_init__(self):
        check(callable(self.solve), "solve must be a function alpha -> w_T")
        check(callable(self.outer_loss), "outer_loss must be a function (w, alpha, batch) -> scalar")

    def validate(self, alpha: Any) -> None:
        """α must be a non-empty dict of finite floating-point tensors (an integer α would make
        every finite-difference step ``α + μv`` round to the same point)."""
        check_alpha(alpha)


def minibatches(data: Any, batch_size: int, *, seed: int = 0,
                drop_last: bool = False) -> Callable[[int], Any]:
    """A deterministic minibatch schedule ``t -> batch`` over a dict/tuple of tensors.

    Each epoch is a fresh permutation drawn from ``seed``; the same ``t`` always gives the
    same batch, which every estimator needs (the unrolled loop is replayed). Every example is
    used once per epoch: when ``batch_size`` does not divide n, the epoch's last batch holds the
    ``n mod batch_size`` remaining examples (as ``torch.utils.data.DataLoader`` does by
    default). ``drop_last=True`` drops them instead, so that every batch has ``batch_size``
    examples (then ``n mod batch_size`` random examples are unused in each epoch).
    """
    leaves = tree_leaves(data)
    check(len(leaves) > 0, "minibatches needs a dict or tuple of tensors")
    n = leaves[0].shape[0] if leaves[0].dim() else 0
    sizes = {tuple(x.shape[:1]) for x in leaves}
    check(len(sizes) == 1, f"minibatches: every tensor needs the same number of examples (first "
                           f"dimension); got {describe(data)}")
    batch_size = as_int("batch_size", batch_size, 1)
    seed = as_int("minibatches: seed", seed)
    check(batch_size <= n, f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}")
    per_epoch = n // batch_size if drop_last else -(-n // batch_size)
    cache: dict[int, torch.Tensor] = {}

    def perm(epoch: int) -> torch.Tensor:
        # numpy, not torch: a schedule may first be read inside torch.func.vmap, where torch's
        # random operations are refused.
        # Only the current epoch is kept: a cache over all epochs would grow with T.
        if epoch not in cache:
            cache.clear()
            rng = np.random.default_rng(seed * 100_003 + epoch)
            cache[epoch] = torch.from_numpy(rng.permutation(n))
        return cache[epoch]

    def batch(t: int):
        epoch, k = divmod(t, per_epoch)
        idx = perm(epoch)[k * batch_size:min((k + 1) * batch_size, n)].to(leaves[0].device)
        from torch.utils._pytree import tree_map
        return tree_map(lambda x: x[idx], data)
    return batch
