"""Is a hypergradient computed in float32 still the hypergradient? A long or unstable unroll
amplifies rounding: the float32 hypergradient can lose its magnitude, then its direction, while
looking perfectly finite. :func:`precision_check` recomputes it in float64 and says how far apart
the two are."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._tree import tree_leaves
from .errors import ConfigError, MetagradError
from .problem import BilevelProblem


@dataclass(frozen=True)
class PrecisionReport:
    """``cosine`` and ``rel_err`` (‖g − g₆₄‖ / ‖g₆₄‖) of the hypergradient in the problem's own
    dtype against float64; ``norm`` / ``norm64`` their norms; ``dtype`` the problem's dtype."""
    method: str
    dtype: str
    cosine: float
    rel_err: float
    norm: float
    norm64: float

    @property
    def reliable(self) -> bool:
        """True when the relative error is below 0.5 (within half the float64 norm; the book's rule of thumb)."""
        return self.rel_err < 0.5


def _to64(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.double() if tree.is_floating_point() else tree
    if isinstance(tree, dict):
        return {k: _to64(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to64(v) for v in tree)
    return tree


def in_float64(problem: BilevelProblem) -> BilevelProblem:
    """``problem`` with its initial weights, batches (also those a batch function returns) and
    buffers in float64. Tensors the losses capture in a closure are not reachable: keep them in
    the batch, or build the float64 problem yourself."""
    init = problem.init
    init64 = (lambda alpha: _to64(init(alpha))) if callable(init) else _to64(init)
    batches = problem.inner_batches
    batches64 = (lambda t: _to64(batches(t))) if callable(batches) else _to64(batches)
    return problem.replace(init=init64, inner_batches=batches64, outer_batch=_to64(problem.outer_batch),
                           buffers=_to64(problem.buffers))


def precision_check(problem: BilevelProblem, alpha: Any, method: str = "rmd", *,
                    problem64: BilevelProblem | None = None, **options) -> PrecisionReport:
    """The hypergradient by ``method`` in the problem's dtype against the same in float64.

    ``problem64``: the float64 problem when :func:`in_float64` cannot build it (losses that close
    over float32 tensors). Use a deterministic method (``rmd``, ``fmd``, ``greedy``, …) or fix the
    seed of a stochastic one in ``options``."""
    from .estimators import hypergrad
    leaves = [x for x in tree_leaves(alpha) if x.is_floating_point()]
    dtype = leaves[0].dtype if leaves else torch.float32
    p64 = in_float64(problem) if problem64 is None else problem64
    g = torch.cat([x.reshape(-1).double() for x in tree_leaves(hypergrad(problem, alpha, method, **options).grad)])
    try:
        r64 = hypergrad(p64, _to64(alpha), method, **options)
    except (RuntimeError, MetagradError) as err:   # the problem's validation reports a loss's failure
        if "dtype" not in str(err):
            raise
        raise ConfigError(
            f"precision_check could not run the problem in float64 ({str(err).splitlines()[0][:200]}): the losses "
            f"probably use float32 tensors captured in a closure (a frozen model, constants). Put them in "
            f"the batch, or build the float64 problem yourself and pass it as problem64=") from err
    g64 = torch.cat([x.reshape(-1) for x in tree_leaves(r64.grad)])
    n64 = float(g64.norm())
    return PrecisionReport(method, str(dtype).replace("torch.", ""),
                           float(torch.nn.functional.cosine_similarity(g, g64, dim=0)),
                           float((g - g64).norm() / n64) if n64 > 0 else float("nan"),
                           float(g.norm()), n64)
