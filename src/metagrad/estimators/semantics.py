r"""What each method can see: structural zeros, and what ``K`` means per method.

Some estimators cannot, by construction, send any gradient to some hyperparameters. They return
exact zeros there, which an outer optimiser would silently read as "no effect". metagrad warns
(:class:`StructuralZeroWarning`) when it can see that this happens:

* a **learned initialisation** :math:`w_0(\alpha)` (MAML) gets zero from ``fo``, ``t1t2``,
  ``trgu`` with K < T and the implicit methods (``cg``, ``neumann``, ``hessian-free``): none
  of them follows :math:`\partial w_T/\partial w_0`. Use ``fomaml`` (first-order MAML:
  :math:`\partial w_T/\partial w_0 \approx I`), ``greedy``, ``rmd``, ``fg2u`` or ``fmd``.
* **learned optimiser hyperparameters** (a learning rate, momentum, a schedule or Meta-SGD's
  per-parameter rates that depend on α) get zero from the implicit methods (the minimiser of
  the inner loss does not depend on how it was reached), from ``fo`` and from ``fomaml``.

What ``K`` means, per method:

=================  ==========================================================================
method             ``K``
=================  ==========================================================================
``trgu``           number of *last inner steps* back-propagated through (K = T is ``rmd``)
``neumann``        number of Neumann-series terms for :math:`H^{-1}` (K Hessian-vector products)
``cg``             maximum number of conjugate-gradient iterations (stops earlier at ``tol``)
``mg.implicit``    as ``cg`` / ``neumann`` above, at a solution from any solver
``rmd``            no K; ``checkpoint=k`` is the number of steps per recomputed segment
``fg2u``           no K; ``b`` is the number of random directions
``greedy``         no K; ``gamma`` weights step t's term by :math:`\gamma^{T-t}`
=================  ==========================================================================
"""
from __future__ import annotations

import warnings
from typing import Any

import torch

from .._tree import tree_leaves, tree_map

__all__ = ["StructuralZeroWarning", "warn_structural_zeros", "INIT_BLIND", "OPTIMIZER_BLIND"]

INIT_BLIND = {"fo", "t1t2", "cg", "neumann", "hessian-free"}
OPTIMIZER_BLIND = {"fo", "fomaml", "cg", "neumann", "hessian-free"}


class StructuralZeroWarning(UserWarning):
    """A method returns exact zeros for some hyperparameters by construction."""


def _learned_optimizer(problem, alpha) -> bool:
    """True when the optimiser's hyperparameters depend on α (probed with autograd)."""
    probe = tree_map(lambda x: x.detach().requires_grad_(True)
                     if isinstance(x, torch.Tensor) and x.is_floating_point() else x, alpha)
    try:
        with torch.enable_grad():
            hp = problem.optimizer.hyper(probe)
            values = []
            for v in tree_leaves(hp if isinstance(hp, dict) else {"h": hp}):
                values.append(v(1) if callable(v) and not isinstance(v, torch.Tensor) else v)
            return any(isinstance(x, torch.Tensor) and x.requires_grad for x in tree_leaves(values))
    except Exception:  # a probe that fails says nothing; the estimator will report real errors
        return False


def warn_structural_zeros(problem: Any, alpha: Any, method: str, options: dict) -> None:
    """Warn when ``method`` is structurally blind to part of ``problem``'s hyperparameters."""
    if not hasattr(problem, "optimizer"):  # a black-box problem: nothing to inspect
        return
    truncated = method == "trgu" and options.get("K", 1) < problem.T
    if problem.learned_init and (method in INIT_BLIND or truncated):
        warnings.warn(
            f"method {method!r} gives exactly zero hypergradient through the learned "
            f"initialisation w_0(alpha): it ignores dw_T/dw_0. Use 'fomaml' (first-order MAML), "
            f"'greedy', 'rmd' or 'fg2u' for a learned initialisation.",
            StructuralZeroWarning, stacklevel=3)
    if method in OPTIMIZER_BLIND and _learned_optimizer(problem, alpha):
        warnings.warn(
            f"method {method!r} gives exactly zero hypergradient for the inner optimiser's "
            f"hyperparameters that depend on alpha (learning rate, momentum, schedule): "
            f"{'the inner minimiser does not depend on them' if method not in ('fo', 'fomaml') else 'it ignores how w_T depends on the inner steps'}. "
            f"Use 'rmd', 'fg2u', 'greedy' or 'trgu' for them.",
            StructuralZeroWarning, stacklevel=3)
