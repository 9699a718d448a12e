"""Estimators selected by name: the registry and the one entry point :func:`hypergrad`."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .._tree import same_structure, tree_leaves, describe, tree_map, tree_detach
from ..cost import Cost, measure
from ..errors import ConfigError, MetagradError, check
from ..problem import BilevelProblem, BlackBoxProblem
from .. import unroll
from ._checks import GUARDS, normalise_options
from .semantics import warn_structural_zeros

__all__ = ["Result", "register", "available_methods", "hypergrad"]

_REGISTRY: dict[str, tuple[Callable, bool]] = {}


@dataclass
class Result:
    """What every estimator returns: the hypergradient (structured like α), ``F(α)``, the cost.

    ``w_T`` (detached inner weights at T, e.g. for a warm start: ``problem.replace(init=res.w_T)``)
    and ``state_T`` (``(w_T, buffers)``, with an nn.Module's buffers under
    ``state_T[1]["module"]``) are kept by every method that runs the inner loop once; ``fg2u-zo``
    (which runs it at shifted α) and ``fo`` on a :class:`~metagrad.problem.BlackBoxProblem` leave
    them ``None``."""
    grad: dict
    loss: torch.Tensor
    cost: Cost
    method: str
    options: dict = field(default_factory=dict)
    w_T: Any = None
    state_T: Any = None


def register(name: str, *, black_box: bool = False) -> Callable:
    """Register ``fn(problem, alpha, cost, **options) -> (grad, loss)`` (or ``(grad, loss,
    state_T)``, the inner state at T) under ``name``.
    ``black_box=True``: it also accepts a :class:`~metagrad.problem.BlackBoxProblem`."""
    def deco(fn: Callable) -> Callable:
        _REGISTRY[name] = (fn, black_box)
        return fn
    return deco


def available_methods(*, black_box: bool | None = None) -> list[str]:
    """Names accepted by :func:`hypergrad` (``black_box=True``: those for black-box solvers)."""
    return sorted(n for n, (_, bb) in _REGISTRY.items() if bb or not black_box)


def options_of(method: str) -> dict[str, Any]:
    """The keyword options of ``method`` and their defaults."""
    fn, _ = _lookup(method)
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_options(method: str, options: dict) -> None:
    """Raise :class:`ConfigError` for an unknown method or an option ``method`` does not have."""
    known = options_of(method)
    check(isinstance(options, dict), f"options of {method!r} must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"method {method!r} has no option(s) {unknown}; its options are "
                          f"{known or 'none'}")


def _lookup(method: str):
    if not isinstance(method, str) or method not in _REGISTRY:
        raise ConfigError(f"unknown method {method!r}; available: {', '.join(available_methods())}")
    return _REGISTRY[method]


def hypergrad(problem: BilevelProblem | BlackBoxProblem, alpha: dict, method: str = "rmd", *,
              track_memory: bool | None = None, validate: bool = True, **options) -> Result:
    """The hypergradient ``dF/dα`` of ``problem`` at ``alpha`` by ``method``.

    Args:
        problem: a :class:`~metagrad.problem.BilevelProblem` (or a :class:`~metagrad.problem.BlackBoxProblem`
            for ``fg2u-zo`` / ``fo``).
        alpha: hyperparameters, a dict of floating-point tensors (device and dtype are followed).
        method: one of :func:`available_methods`.
        track_memory: record peak memory (default: on CUDA only; on CPU it adds overhead).
        validate: check the inputs (structure, scalar losses) before computing.
        **options: the method's keyword options (see :func:`options_of`).
    """
    fn, black_box = _lookup(method)
    known = options_of(method)
    check_options(method, options)
    options = normalise_options(options, known)
    if isinstance(problem, BlackBoxProblem) and not black_box:
        raise ConfigError(f"method {method!r} needs a differentiable BilevelProblem; for a black-box "
                          f"solver use one of {available_methods(black_box=True)}")
    if validate:
        problem.validate(alpha)
    if method in GUARDS:
        GUARDS[method](problem, alpha, options)
    warn_structural_zeros(problem, alpha, method, options)
    cost = Cost()
    device = tree_leaves(alpha)[0].device
    with measure(cost, device, track_memory):
        try:
            out = fn(problem, alpha, cost, **options)
        except RuntimeError as e:
            if "mutate a captured" not in str(e):
                raise
            raise ConfigError(
                "a loss mutated a tensor in place inside the differentiated inner loop (typically "
                "an nn.Module called directly: BatchNorm updates its running statistics in place). "
                "Use net = mg.from_module(model), call net(w, x) in the losses and pass "
                "init=net.params, buffers=net.buffers") from e
    grad, loss, state_T = out[0], out[1], (tree_detach(out[2]) if len(out) > 2 else None)
    if not same_structure(grad, alpha):
        raise ConfigError(f"alpha and hypergradient structure mismatch: alpha is {describe(alpha)}, "
                          f"method {method!r} returned {describe(grad)}")
    grad = tree_map(lambda g: g.detach(), grad)
    if not all(bool(torch.isfinite(g).all()) for g in tree_leaves(grad)) or not torch.isfinite(loss):
        if isinstance(problem, BilevelProblem):
            unroll.run(problem, alpha)  # raises InnerDivergenceError at the first bad step
        raise MetagradError(
            f"method {method!r} produced a non-finite hypergradient or outer loss ({float(loss)}) "
            f"although the inner losses stayed finite: check outer_loss for overflow, or reduce "
            f"the inner learning rate / horizon T")
    return Result(grad, loss.detach(), cost, method, dict(options),
                  w_T=None if state_T is None else state_T[0], state_T=state_T)
