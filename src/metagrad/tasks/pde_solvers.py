r"""The two inner solvers of the PDE parameter-discovery experiment (:mod:`metagrad.tasks.pde`).

1. :func:`spectral_solve` — a Fourier pseudo-spectral solver with ETDRK4 time stepping
   (Cox & Matthews 2002, with the contour-integral coefficients of Kassam & Trefethen 2005),
   written in numpy. Periodic domain :math:`x \in [-1, 1)`, ``n`` Fourier modes, the stiff
   linear part :math:`\hat L(k)` integrated exactly, the nonlinear part explicitly::

       burgers     u_t = ν u_xx − (u²/2)_x        L = −ν k²,   u0 = −sin πx
       allen_cahn  u_t = ν u_xx + 5u − 5u³        L = −ν k²,   u0 = x² cos πx
       kdv         u_t = −ν u_xxx − (u²/2)_x      L = i ν k³,  u0 = cos πx

   (Burgers' Dirichlet condition u(±1) = 0 holds on the periodic domain because the solution
   stays odd about x = 0 and about x = ±1.) The number of time steps between two output times
   never depends on ν, so the map ν ↦ u is smooth — what a finite-difference (zeroth-order)
   hypergradient needs. It is a black box to autograd.

2. :func:`pinn_fields` — a tanh MLP :math:`u_w(x, t)` together with its derivatives
   ``u_t, u_x, u_xx, u_xxx`` propagated through the layers in closed form (Taylor mode), so
   that the PDE residual is made of plain tensor ops that :mod:`torch.func` differentiates in
   any mode (the (FG)²U JVP through the unrolled inner training runs over them). Device and
   dtype follow the weights.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import check

__all__ = ["EQUATIONS", "initial_condition", "spectral_solve", "pinn_init", "pinn_fields",
           "pinn_residual"]

#: The three equations: name → (initial condition u0(x), highest x-derivative in the residual).
EQUATIONS = {"burgers": 2, "allen_cahn": 2, "kdv": 3}


def initial_condition(equation: str, x):
    """u(x, 0) for ``equation`` (numpy array or torch tensor in, same kind out)."""
    lib = torch if isinstance(x, torch.Tensor) else np
    if equation == "burgers":
        return -lib.sin(math.pi * x)
    if equation == "allen_cahn":
        return x ** 2 * lib.cos(math.pi * x)
    if equation == "kdv":
        return lib.cos(math.pi * x)
    raise ValueError(f"unknown equation {equation!r}; pass one of {', '.join(EQUATIONS)}")


# ------------------------------------------------------------------------ spectral (numpy)

def _etdrk4_coefficients(L: np.ndarray, h: float, contour: int = 32):
    """ETDRK4 coefficients for the diagonal linear operator ``L`` and step ``h``: the φ-functions
    evaluated by the mean over ``contour`` points on a unit circle around each ``hL``
    (Kassam & Trefethen 2005, eq. 2.5 and §5), complex so that imaginary ``L`` (KdV) works."""
    r = np.exp(2j * np.pi * (np.arange(contour) + 0.5) / contour)
    LR = h * L[:, None] + r[None, :]
    eLR = np.exp(LR)
    Q = h * np.mean((np.exp(LR / 2) - 1) / LR, axis=1)
    f1 = h * np.mean((-4 - LR + eLR * (4 - 3 * LR + LR ** 2)) / LR ** 3, axis=1)
    f2 = h * np.mean((2 + LR + eLR * (-2 + LR)) / LR ** 3, axis=1)
    f3 = h * np.mean((-4 - 3 * LR - LR ** 2 + eLR * (4 - LR)) / LR ** 3, axis=1)
    return np.exp(h * L), np.exp(h * L / 2), Q, f1, f2, f3


def spectral_solve(equation: str, nu: float, x_out, t_out, *, n: int = 512, dt: float = 1e-3,
                   dealias: bool = False) -> np.ndarray:
    """Solve ``equation`` with coefficient ``nu`` and return ``u[len(x_out), len(t_out)]``.

    Args:
        equation: ``"burgers"``, ``"allen_cahn"`` or ``"kdv"``.
        nu: the coefficient ν (a Python float; the solver is a black box to autograd).
        x_out: points in [−1, 1] (evaluated by exact trigonometric interpolation).
        t_out: non-decreasing times ≥ 0. Between consecutive output times the solver takes
            ``ceil(Δt / dt)`` equal steps (independent of ν).
        n: number of Fourier modes (even).
        dt: largest time step.
        dealias: zero the top third of the modes of the nonlinear term (2/3 rule). Off by
            default: the reference files were made without it (with n = 512 and no dealiasing
            this solver reproduces ``AC.mat`` to ~1e-11 and ``burgers_shock.mat`` to ~5e-5;
            dealiased, to ~1e-5 and ~4e-4).
    """
    check(equation in EQUATIONS, f"unknown equation {equation!r}; pass one of {', '.join(EQUATIONS)}")
    check(isinstance(n, int) and n >= 8 and n % 2 == 0,
          f"n (Fourier modes) must be an even integer >= 8, got {n!r}")
    check(dt > 0, f"dt must be > 0, got {dt!r}")
    check(math.isfinite(nu) and nu > 0, f"nu must be a positive finite number, got {nu!r}")
    x_out = np.asarray(x_out, dtype=np.float64)
    t_out = np.asarray(t_out, dtype=np.float64)
    check(bool(np.all(np.diff(t_out) >= 0)) and t_out.min() >= 0, "t_out must be non-decreasing and >= 0")

    m = np.arange(n // 2 + 1)
    k = np.pi * m  # wavenumbers of the period-2 domain
    ik = 1j * k
    ik[-1] = 0.0  # odd derivatives of the Nyquist mode are set to zero
    keep = (m <= n // 3) if dealias else np.ones_like(m, dtype=bool)
    if equation == "kdv":
        L = 1j * nu * k ** 3
    else:
        L = -nu * k ** 2

    def nonlinear(v):
        u = np.fft.irfft(v, n)
        if equation == "allen_cahn":
            out = np.fft.rfft(5 * u - 5 * u ** 3)
        else:
            out = -0.5 * ik * np.fft.rfft(u * u)
        return out * keep

    x_grid = -1 + 2 * np.arange(n) / n
    v = np.fft.rfft(initial_condition(equation, x_grid))
    with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported below
        V = _march(v, t_out, L, dt, nonlinear)
    if not np.all(np.isfinite(V)):
        raise FloatingPointError(f"spectral_solve({equation!r}, nu={nu:g}) blew up; use a smaller dt "
                                 f"(now {dt:g}) or more modes (now n={n})")
    # trigonometric interpolation: u(x) = (1/n) Σ_m w_m Re(v_m e^{iπm(x+1)}), w = 1, 2, …, 2, 1
    weight = np.full(n // 2 + 1, 2.0)
    weight[0] = weight[-1] = 1.0
    basis = np.exp(1j * np.pi * np.outer(x_out + 1, m)) * (weight / n)
    return np.real(basis @ V)


def _march(v, t_out, L, dt, nonlinear):
    """ETDRK4 from t = 0 through every time in ``t_out``; returns the spectra, one column each."""
    coefficients: dict[int, tuple] = {}
    frames, t_now = [], 0.0
    for t_next in t_out:
        steps = math.ceil((t_next - t_now) / dt - 1e-9)
        if steps > 0:
            h = (t_next - t_now) / steps
            key = round(h * 1e12)
            if key not in coefficients:
                coefficients[key] = _etdrk4_coefficients(L, h)
            E, E2, Q, f1, f2, f3 = coefficients[key]
            for _ in range(steps):
                Nv = nonlinear(v)
                a = E2 * v + Q * Nv
                Na = nonlinear(a)
                b = E2 * v + Q * Na
                Nb = nonlinear(b)
                c = E2 * a + Q * (2 * Nb - Nv)
                Nc = nonlinear(c)
                v = E * v + Nv * f1 + 2 * (Na + Nb) * f2 + Nc * f3
            t_now = t_next
        frames.append(v)
    return np.stack(frames, axis=1)  # (n/2+1, len(t_out))


# ------------------------------------------------------------------------ PINN (torch)

def pinn_init(width: int, depth: int, *, seed: int, dtype=torch.float64, device="cpu") -> dict:
    """Xavier-normal weights and zero biases of a tanh MLP 2 → width (× depth) → 1."""
    check(width >= 1 and depth >= 1, f"PINN width and depth must be >= 1, got {width}, {depth}")
    g = torch.Generator().manual_seed(int(seed))
    sizes = [2] + [width] * depth + [1]
    w = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = torch.randn(b, a, generator=g, dtype=torch.float64) * math.sqrt(2 / (a + b))
        w[f"W{i}"] = W.to(dtype=dtype, device=device)
        w[f"b{i}"] = torch.zeros(b, dtype=dtype, device=device)
    return w


def pinn_fields(w: dict, x: torch.Tensor, t: torch.Tensor, order: int = 0) -> torch.Tensor:
    """``[u, u_t, u_x, u_xx, u_xxx][: 2 + order]`` (``order=0``: ``u`` only) at points ``(x, t)``.

    Input scaling: the network sees ``(x, 2t − 1)``. The derivatives are pushed through each
    layer ``a = W h + b``, ``h' = tanh(a)`` with the chain rule (Faà di Bruno up to third order):
    ``h_x = s1 a_x``, ``h_xx = s2 a_x² + s1 a_xx``, ``h_xxx = s3 a_x³ + 3 s2 a_x a_xx + s1 a_xxx``,
    ``h_t = s1 a_t``, where ``s1, s2, s3`` are the derivatives of tanh. Returns shape
    ``[channels, len(x)]``.
    """
    n_layers = len(w) // 2
    h = torch.stack([x, 2 * t - 1], dim=-1)  # (n, 2)
    if order == 0:
        for i in range(n_layers):
            h = h @ w[f"W{i}"].T + w[f"b{i}"]
            if i < n_layers - 1:
                h = torch.tanh(h)
        return h[..., 0][None]
    one, nil = torch.ones_like(x), torch.zeros_like(x)
    zero, dx, dt = torch.zeros_like(h), torch.stack([one, nil], -1), torch.stack([nil, 2 * one], -1)
    # channels: value, d/dt, d/dx, d2/dx2, d3/dx3
    H = torch.stack([h, dt, dx, zero, zero][: 2 + order])
    for i in range(n_layers):
        A = H @ w[f"W{i}"].T
        A = torch.cat([A[:1] + w[f"b{i}"], A[1:]])
        if i == n_layers - 1:
            H = A
            break
        s = torch.tanh(A[0])
        s1 = 1 - s * s
        s2 = -2 * s * s1
        chans = [s, s1 * A[1], s1 * A[2]]
        if order >= 2:
            chans.append(s2 * A[2] ** 2 + s1 * A[3])
        if order >= 3:
            s3 = -2 * (s1 * s1 + s * s2)
            chans.append(s3 * A[2] ** 3 + 3 * s2 * A[2] * A[3] + s1 * A[4])
        H = torch.stack(chans)
    return H[..., 0]


def pinn_residual(equation: str, F: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """The PDE residual from the fields ``F = pinn_fields(w, x, t, order=EQUATIONS[equation])``."""
    u, u_t, u_x, u_xx = F[0], F[1], F[2], F[3]
    if equation == "burgers":
        return u_t + u * u_x - nu * u_xx
    if equation == "allen_cahn":
        return u_t - nu * u_xx + 5 * u ** 3 - 5 * u
    return u_t + u * u_x + nu * F[4]
