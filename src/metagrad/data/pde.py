"""Reference solutions of three 1-D PDEs (Raissi's PINNs data) and a sparse observation grid.

* ``burgers`` (``burgers_shock.mat``): u_t + u u_x − ν u_xx = 0, ν = 0.01/π,
  u(0, x) = −sin(πx), u(t, ±1) = 0.
* ``allen_cahn`` (``AC.mat``): u_t − ν u_xx + 5u³ − 5u = 0, ν = 0.0001, u(0, x) = x² cos(πx),
  periodic.
* ``kdv`` (``KdV.mat``): u_t + u u_x + ν u_xxx = 0, ν = 0.0025, u(0, x) = cos(πx), periodic.

All on x ∈ [−1, 1], t ∈ [0, 1].

The coefficients are those of the equations the files were generated with (Raissi, Perdikaris &
Karniadakis 2019, and the generating Chebfun scripts); a least-squares fit of the equation to
finite differences of each file gives 0.00321 (Burgers, away from the shock), 0.000108
(Allen–Cahn) and 0.00251 (KdV, with the u·u_x coefficient fitted as 1.0003), confirming them.
Note that the Allen–Cahn file was made with 0.0001, not 0.001.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..errors import ConfigError
from .paths import DataCorruptError, find_file

__all__ = ["PDESolution", "PDE_SPECS", "load_pde", "observation_grid", "Observations"]

#: name → (file, x key, t key, u key, ν, equation, initial condition, boundary condition).
PDE_SPECS = {
    "burgers": ("burgers_shock.mat", "x", "t", "usol", 0.01 / math.pi,
                "u_t + u u_x - nu u_xx = 0", "u(0, x) = -sin(pi x)", "u(t, -1) = u(t, 1) = 0"),
    "allen_cahn": ("AC.mat", "x", "tt", "uu", 0.0001,
                   "u_t - nu u_xx + 5 u^3 - 5 u = 0", "u(0, x) = x^2 cos(pi x)", "periodic"),
    "kdv": ("KdV.mat", "x", "tt", "uu", 0.0025,
            "u_t + u u_x + nu u_xxx = 0", "u(0, x) = cos(pi x)", "periodic"),
}
_ALIASES = {"burgers_shock": "burgers", "ac": "allen_cahn", "allen-cahn": "allen_cahn",
            "allencahn": "allen_cahn", "korteweg-de vries": "kdv"}


@dataclass(frozen=True)
class PDESolution:
    """A reference solution ``u[i, j] = u(x[i], t[j])`` on a tensor grid, with its equation."""

    name: str
    x: torch.Tensor  # (Nx,)
    t: torch.Tensor  # (Nt,)
    u: torch.Tensor  # (Nx, Nt)
    nu: float  # the true coefficient, see the module table
    equation: str
    initial_condition: str
    boundary_condition: str


def load_pde(name: str, root: str | os.PathLike | None = None, *,
             device: torch.device | str | None = None,
             dtype: torch.dtype = torch.float64) -> PDESolution:
    """Load ``"burgers"``, ``"allen_cahn"`` or ``"kdv"`` from ``<root>/pde/``.

    Returned as float64 by default (the files' precision). Grids: Burgers 256 x × 100 t
    (t = 0…0.99); Allen–Cahn and KdV 512 x × 201 t (t = 0…1; x excludes the periodic endpoint 1).
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PDE_SPECS:
        raise ConfigError(f"load_pde: unknown PDE {name!r}; pass one of {', '.join(PDE_SPECS)}")
    fname, kx, kt, ku, nu, eq, ic, bc = PDE_SPECS[key]
    from scipy.io import loadmat  # heavy import, only when used

    path = find_file(root, "pde", fname, dataset="pde")
    try:
        mat = loadmat(path)
        x = np.asarray(mat[kx], dtype=np.float64).ravel()
        t = np.asarray(mat[kt], dtype=np.float64).ravel()
        u = np.real(np.asarray(mat[ku])).astype(np.float64)
    except FileNotFoundError:
        raise
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError, zlib errors, ...
        raise DataCorruptError(path, f"cannot read the MATLAB file ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})", "pde") from None
    if u.shape != (len(x), len(t)):
        raise DataCorruptError(path, f"u has shape {u.shape}, expected ({len(x)}, {len(t)})", "pde")
    if not (np.isfinite(u).all() and np.isfinite(x).all() and np.isfinite(t).all()):
        raise DataCorruptError(path, "it holds NaN/Inf values", "pde")

    def tt(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device=device, dtype=dtype)

    return PDESolution(key, tt(x), tt(t), tt(u), nu, eq, ic, bc)


class Observations(NamedTuple):
    """``n × n`` observations, flattened x-major: ``ix``/``it`` (int64 grid indices, shape n²),
    ``x``/``t`` (their coordinates) and ``u`` (the reference values there)."""

    ix: torch.Tensor
    it: torch.Tensor
    x: torch.Tensor
    t: torch.Tensor
    u: torch.Tensor


def _interior(n_grid: int, n: int) -> torch.Tensor:
    """``n`` evenly spaced indices strictly inside ``0..n_grid-1``: round(linspace(0, N-1, n+2))
    without its two ends."""
    if n + 2 > n_grid:
        raise ConfigError(f"observation_grid: n={n} interior points need a grid of at least "
                          f"{n + 2}, this one has {n_grid}")
    return torch.from_numpy(np.rint(np.linspace(0, n_grid - 1, n + 2))[1:-1].astype(np.int64))


def observation_grid(sol: PDESolution, n: int = 8) -> Observations:
    """The ``n × n`` (64 by default) observations the book fits ν to.

    Indices are evenly spaced *interior* grid indices in both x and t: ``round(linspace(0, N-1,
    n+2))`` without its first and last entries. So no observation lies on the boundary x = ±1
    (given by the boundary condition) or at t = 0 (given by the initial condition): every one
    carries information about ν. The choice is deterministic (no seed). For Burgers (256×100) the
    x indices are 28, 57, 85, 113, 142, 170, 198, 227 and the t indices 11, 22, …, 88.
    """
    ix1, it1 = _interior(len(sol.x), n), _interior(len(sol.t), n)
    ix, it = torch.meshgrid(ix1, it1, indexing="ij")
    ix, it = ix.reshape(-1), it.reshape(-1)
    dev = sol.u.device
    ixd, itd = ix.to(dev), it.to(dev)
    return Observations(ixd, itd, sol.x[ixd], sol.t[itd], sol.u[ixd, itd])
