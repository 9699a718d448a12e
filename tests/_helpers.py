"""Helpers shared by the test modules (imported as ``from _helpers import ...``)."""
from __future__ import annotations

import torch

from metagrad import unroll
from metagrad._tree import flatten, unflatten
from metagrad.tasks import families

# Small, fast instances of the standard families (float64). N = number of hyperparameters.
SMALL = {
    # P = 8 inner parameters, N = 4 hyperparameters, SGD, closed form available.
    "quadratic": dict(P=8, N=4, T=20),
    # weighted logistic regression: P = d*C + C = 12, N = n_train = 10.
    "hyper_cleaning": dict(n_train=10, n_val=12, d=3, C=3, T=12),
    # momentum SGD, learned lr / weight decays / init: P = 21, N = 1 + 2 + 21 = 24.
    "mlp_momentum": dict(n=10, d=3, hidden=4, T=8),
}


def small_family(name: str, device="cpu", **overrides):
    """``(problem, alpha)`` of family ``name`` at the small test size, on ``device``."""
    kw = dict(SMALL[name])
    kw.update(overrides)
    return getattr(families, name)(device=device, **kw)


def outer_value(problem, alpha) -> torch.Tensor:
    """``F(alpha)`` by a plain (no-grad) inner run."""
    w = unroll.run(problem, alpha)[0]
    with torch.no_grad():
        return problem.outer_loss(w, alpha, problem.outer_batch)


def fd_hypergrad(problem, alpha, h: float = 1e-5) -> torch.Tensor:
    """Central finite differences of ``F`` (flattened, in pytree leaf order).

    On float64 with h = 1e-5 the truncation error is ~h²·|F'''| ≈ 1e-10 and the rounding
    error ~ε·|F|/h ≈ 1e-11, both far below the 1e-6 relative tolerance of the tests.
    """
    x = flatten(alpha)
    g = torch.empty_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = h
        g[i] = (outer_value(problem, unflatten(x + e, alpha))
                - outer_value(problem, unflatten(x - e, alpha))) / (2 * h)
    return g


def rel_err(estimate, reference) -> float:
    """``‖estimate − reference‖ / ‖reference‖`` for trees or flat tensors."""
    a = estimate if isinstance(estimate, torch.Tensor) else flatten(estimate)
    b = reference if isinstance(reference, torch.Tensor) else flatten(reference)
    return float((a - b).norm() / b.norm())


def load_script(name: str):
    """The module of scripts/<name>.py (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
