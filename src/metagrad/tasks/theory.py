r"""Numerical checks of the theory of the two papers (the book's *theory* chapter).

Every claim has three pieces, used by ``notebooks/theory_<claim>.ipynb`` and by
``tests/test_theory.py``:

* an *experiment* ``<claim>(**config) -> dict`` that makes the library calls and returns
  pandas DataFrames (and a few scalars);
* a *check* ``check_<claim>(result, ...) -> DataFrame`` — one row per inequality the claim
  implies, with columns ``check, measured, bound, holds``; the notebook asserts
  ``verdict.holds.all()`` and the tests feed it false claims to show that it can fail;
* a *figure* ``plot_<claim>(result) -> Figure`` (never shown here).

Claims — Shen et al. 2024 ((FG)²U, NeurIPS) and Yakovlev 2024 (generalized greedy):

* ``exactness`` — RMD = FMD = central differences (= the quadratic's closed form);
  TRGU → RMD as K → T, within the Shaban et al. bound (FG2U §2, A.2);
* ``fg2u_variance`` — Lemma 3.1: ĝ unbiased, E‖ĝ − ∇F‖² = (N ∓ 1)/b ‖∇F‖² (FG2U A.2);
* ``fg2u_convergence`` — Theorem 3.4: (1/K) Σ E‖∇F(α_k)‖² ≤ 4 L_h (F(α₀) − min F)/(ρK);
* ``greedy_limit`` — d̂(γ) → d_T1T2 as γ → 0, linearly (greedy B.2);
* ``greedy_descent`` — ⟨d, d̂(1 − η)⟩ ≥ c‖d‖² for large T under assumptions (1)–(8) (greedy B.2);
* ``cost_scaling`` — documented JVP/VJP/HVP counts, peak memory against T, and the greedy
  slides' feature table.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.autograd.functional import jacobian
from torch.func import hessian, jacrev

from .. import unroll
from .._tree import flatten, tree_numel, unflatten
from ..cost import Cost
from ..estimators import hypergrad, available_methods, fg2u_directions
from ..estimators.forward import directional_derivatives
from ..optim import SGD
from ..problem import BilevelProblem
from . import families

__all__ = [
    "sig", "fmt", "objective", "central_differences", "z_bonferroni",
    "exactness", "check_exactness", "plot_exactness",
    "lemma31_factor", "fg2u_variance", "unbiasedness_table", "check_fg2u_variance",
    "plot_fg2u_variance",
    "quadratic_landscape", "fg2u_convergence", "check_fg2u_convergence", "plot_fg2u_convergence",
    "greedy_limit", "check_greedy_limit", "plot_greedy_limit",
    "VARIANTS", "TRUNCATION_PARTS", "descent_problem", "descent_assumptions", "greedy_descent",
    "check_greedy_descent", "plot_greedy_descent",
    "EXPECTED_COUNTS", "EXPECTED_FORMULAS", "FEATURES_CLAIMED", "cost_scaling", "feature_matrix",
    "formulas_table", "check_cost_scaling", "plot_cost_scaling",
]

_BUILDERS = {"quadratic": families.quadratic, "hyper_cleaning": families.hyper_cleaning,
             "mlp_momentum": families.mlp_momentum}


# ----------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------
def objective(problem: BilevelProblem, alpha: dict) -> float:
    """``F(α) = L_val(w_T(α), α)`` by a plain inner run (no derivatives)."""
    with torch.no_grad():
        w = unroll.run(problem, alpha)[0]
        return float(problem.outer_loss(w, alpha, problem.outer_batch))


def central_differences(problem: BilevelProblem, alpha: dict, h: float) -> torch.Tensor:
    r""":math:`(F(\alpha + h e_i) - F(\alpha - h e_i)) / 2h` for every coordinate (flattened)."""
    x = flatten(alpha).detach()
    out = torch.empty_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = h
        out[i] = (objective(problem, unflatten(x + e, alpha))
                  - objective(problem, unflatten(x - e, alpha))) / (2 * h)
    return out


def z_bonferroni(n_checks: int, p_fail: float) -> float:
    """Two-sided normal quantile so that ``n_checks`` tests together fail by chance with
    probability at most ``p_fail`` (Bonferroni)."""
    return NormalDist().inv_cdf(1 - p_fail / (2 * max(n_checks, 1)))


def sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (for glued numbers that must be stable)."""
    x = float(x)
    return x if not math.isfinite(x) or x == 0 else float(f"{x:.{digits}g}")


def fmt(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A display copy of ``df``: floats as strings with ``digits`` significant digits, so that
    printed tables are stable (nbval compares them) and tiny round-off errors stay readable."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]) or out[col].dtype == object:
            out[col] = [("—" if math.isnan(v) else f"{v:.{digits}g}") if isinstance(v, float) else v
                        for v in out[col]]
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _verdict(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["check", "measured", "bound", "holds"])
    df["holds"] = df["holds"].astype(bool)
    return df


def _build(family: str, kwargs: dict):
    if family not in _BUILDERS:
        raise ValueError(f"unknown problem family {family!r}; use one of {sorted(_BUILDERS)}")
    return _BUILDERS[family](**kwargs)


def _int_ticks(ax, values) -> None:
    """Label a log x-axis at ``values`` with plain integers."""
    values = sorted({int(v) for v in values})
    if len(values) > 10:
        values = values[::math.ceil(len(values) / 10)]
    ax.set_xticks(values)
    ax.set_xticks([], minor=True)
    ax.set_xticklabels([str(v) for v in values])


def _fig(ncols: int = 1, nrows: int = 1, size=(5.2, 3.6)):
    from metagrad.figures import subplots
    return subplots(ncols, nrows, panel=size)


def _legend(fig, where: str = "below", ncols: int | None = None):
    from metagrad.figures import legend_outside
    return legend_outside(fig, where=where, ncols=ncols)


# ----------------------------------------------------------------------------------------
# 1. exactness: rmd = fmd = finite differences (= closed form); trgu -> rmd as K -> T
# ----------------------------------------------------------------------------------------
def exactness(problems: dict, *, methods: dict | None = None, fd_step: float = 1e-5,
              truncation: tuple = ("quadratic", "mlp_momentum")) -> dict:
    """Relative errors of the exact estimators against central differences (and the closed
    form of the quadratic family), and of ``trgu(K)`` against ``rmd`` for K = 0..T.

    Args:
        problems: ``{family: builder kwargs}`` for families in ``quadratic``,
            ``hyper_cleaning``, ``mlp_momentum``.
        methods: ``{label: (method, options)}``; default ``rmd`` and ``fmd``.
        fd_step: the central-difference step h. The error of the central differences
            themselves is estimated as truncation + rounding: ``‖FD(h) − FD(2h)‖ / 3`` (the
            O(h²) term of 2h is four times that of h) plus ``ε·|F|·√N / h`` (ε = machine
            epsilon), relative to ``‖FD(h)‖``.
        truncation: the families on which the ``trgu`` sweep runs. The error is reported
            for all of α and, where α mixes kinds of hyperparameters, per part
            (``TRUNCATION_PARTS``).
    """
    methods = {"rmd": ("rmd", {}), "fmd": ("fmd", {})} if methods is None else methods
    rows, trunc = [], []
    for family, kwargs in problems.items():
        problem, alpha = _build(family, kwargs)
        fd = central_differences(problem, alpha, fd_step)
        fd2 = central_differences(problem, alpha, 2 * fd_step)
        eps = torch.finfo(fd.dtype).eps
        rounding = eps * abs(objective(problem, alpha)) * math.sqrt(fd.numel()) / fd_step
        fd_err = (float((fd - fd2).norm()) / 3 + rounding) / float(fd.norm())
        closed = flatten(families.quadratic_exact(problem, alpha)) if family == "quadratic" else None
        for label, (method, opts) in methods.items():
            g = flatten(hypergrad(problem, alpha, method, **opts).grad)
            rows.append(dict(problem=family, method=label, N=fd.numel(), T=problem.T,
                             rel_err_fd=_rel(g, fd), fd_error_estimate=fd_err,
                             rel_err_closed_form=_rel(g, closed) if closed is not None else np.nan))
        if closed is not None:
            rows.append(dict(problem=family, method="central FD", N=fd.numel(), T=problem.T,
                             rel_err_fd=0.0, fd_error_estimate=fd_err,
                             rel_err_closed_form=_rel(fd, closed)))
        if family in truncation:
            ref = hypergrad(problem, alpha, "rmd").grad
            bound = _shaban_bound(problem, alpha) if family == "quadratic" else None
            parts = {"all of α": list(ref), **TRUNCATION_PARTS.get(family, {})}
            for K in range(problem.T + 1):
                g = hypergrad(problem, alpha, "trgu", K=K).grad
                for part, keys in parts.items():
                    sub = lambda tree: flatten({k: tree[k] for k in keys})  # noqa: E731
                    trunc.append(dict(problem=family, part=part, T=problem.T, K=K,
                                      rel_err=_rel(sub(g), sub(ref)),
                                      bound=(bound(K) / float(flatten(ref).norm()) if bound
                                             else np.nan)))
    return {"table": pd.DataFrame(rows), "truncation": pd.DataFrame(trunc)}


# Parts of α reported separately in the truncation sweep (besides all of α).
TRUNCATION_PARTS = {
    "mlp_momentum": {"optimiser hyperparameters (log_lr, log_wd)": ["log_lr", "log_wd"]},
}


def _shaban_bound(problem, alpha) -> Callable[[int], float]:
    r"""TRGU bias bound of Shaban et al. for the quadratic family (PAPERS.md A.2):
    :math:`\|\text{trgu}_K - \nabla F\| \le (1-\eta a)^K/(\eta a)\,\|d_T\|\,\max_t\|B_t\|`,
    a = λ_min(A), :math:`B_t = \eta B`, :math:`d_T = w_T - w^\dagger`."""
    d = problem.outer_batch
    eta = problem.optimizer.lr
    a = float(torch.linalg.eigvalsh(d["A"]).min())
    w_T = unroll.run(problem, alpha)[0]["w"]
    d_T = float((w_T - d["target"]).norm())
    B_norm = eta * float(torch.linalg.matrix_norm(d["B"], ord=2))
    return lambda K: (1 - eta * a) ** K / (eta * a) * d_T * B_norm


def check_exactness(res: dict, *, fd_safety: float = 10.0, tol_exact: float = 1e-12) -> pd.DataFrame:
    """Exact estimators agree with central differences to within ``fd_safety`` times the
    FD error estimate and with the closed form to ``tol_exact``; ``trgu(K=T)`` equals ``rmd``
    to ``tol_exact``, ``trgu(0)`` does not, and on the quadratic the TRGU error is below the
    Shaban et al. bound for every K."""
    rows = []
    for r in res["table"].itertuples():
        if r.method == "central FD":
            continue
        tol = fd_safety * r.fd_error_estimate
        rows.append((f"{r.problem}: {r.method} vs central FD", r.rel_err_fd, tol, r.rel_err_fd <= tol))
        if not math.isnan(r.rel_err_closed_form):
            rows.append((f"{r.problem}: {r.method} vs closed form", r.rel_err_closed_form, tol_exact,
                         r.rel_err_closed_form <= tol_exact))
    trunc = res["truncation"]
    for (family, part), df in (trunc.groupby(["problem", "part"], sort=False) if len(trunc) else []):
        T = int(df["T"].iloc[0])
        at_T = float(df.loc[df.K == T, "rel_err"].iloc[0])
        at_0 = float(df.loc[df.K == 0, "rel_err"].iloc[0])
        rows.append((f"{family}, {part}: trgu(K=T) vs rmd", at_T, tol_exact, at_T <= tol_exact))
        rows.append((f"{family}, {part}: trgu(K=0) is biased", at_0, 1e3 * tol_exact, at_0 > 1e3 * tol_exact))
        if df["bound"].notna().all():
            worst = float((df["rel_err"] / df["bound"]).max())
            rows.append((f"{family}: trgu error / Shaban et al. bound (max over K)", worst, 1.0, worst <= 1))
    return _verdict(rows)


def plot_exactness(res: dict):
    """TRGU relative error against K (log y), with the Shaban et al. bound where known."""
    fig, axes = _fig(size=(6.4, 4.2))
    ax = axes[0, 0]
    for i, ((family, part), df) in enumerate(res["truncation"].groupby(["problem", "part"], sort=False)):
        y = df["rel_err"].clip(lower=1e-17)
        ax.semilogy(df["K"], y, "o-", ms=3, color=f"C{i}",
                    label=f"{family}, {part} (T={int(df['T'].iloc[0])})")
        if df["bound"].notna().all():
            ax.semilogy(df["K"], df["bound"], "--", color=f"C{i}", label=f"{family}: Shaban et al. bound")
    ax.set_xlabel("truncation length K (steps back-propagated)")
    ax.set_ylabel(r"relative error $\|\mathrm{trgu}_K - \mathrm{rmd}\| / \|\mathrm{rmd}\|$")
    ax.set_title("TRGU → RMD as K → T (errors below 1e-17 drawn at 1e-17)")
    _legend(fig, ncols=2)
    return fig


# ----------------------------------------------------------------------------------------
# 2. (FG)²U Lemma 3.1: unbiased, E‖ĝ − ∇F‖² = (N ∓ 1)/b ‖∇F‖²
# ----------------------------------------------------------------------------------------
def lemma31_factor(N: int, b: int, distribution: str) -> float:
    """``E‖ĝ − ∇F‖² / ‖∇F‖²`` by Lemma 3.1: (N−1)/b (Rademacher), (N+1)/b (Gaussian)."""
    return {"rademacher": (N - 1) / b, "gaussian": (N + 1) / b}[distribution]


def _fg2u_samples(problem, alpha, M: int, b: int, distribution: str, seed: int, chunk: int = 2048):
    """``M`` independent (FG)²U estimates with ``b`` directions each, as an [M, N] tensor:
    the directions of :func:`fg2u_directions`, their directional derivatives by forward-mode
    unrolling (one vmapped pass), aggregated as the library's ``fg2u`` does."""
    N = tree_numel(alpha)
    V = fg2u_directions(alpha, M * b, seed=seed, distribution=distribution)
    _, s = directional_derivatives(problem, alpha, V, Cost(), chunk=chunk)
    G = (s[:, None] * V).reshape(M, b, N).mean(1)
    lib = flatten(hypergrad(problem, alpha, "fg2u", directions=V[:b]).grad)
    return G, float((lib - G[0]).abs().max())


def fg2u_variance(*, P: int = 8, T: int = 5, eta: float = 0.3, N: int = 16,
                  bs: tuple = (1, 2, 4, 8, 16), Ns: tuple = (2, 4, 8, 16, 32), b_for_N: int = 4,
                  M: int = 400, M_mean: int = 2000, distributions=("rademacher", "gaussian"),
                  seed: int = 0, theory: Callable = lemma31_factor) -> dict:
    """Lemma 3.1 on the quadratic family (``families.quadratic(P, N, T, eta)``).

    ``vs_b``/``vs_N``: the normalised mean squared error ``E‖ĝ − g‖²/‖g‖²`` over ``M``
    independent estimates, its standard error, and ``theory(N, b, distribution)``.
    ``running``: the running mean of ``M_mean`` single-direction estimates, its error and
    the expected RMS error ``sqrt(theory(N, 1)/m)``. ``unbiased``: per-coordinate z-scores
    of the mean of those ``M_mean`` estimates. ``library_gap``: the largest difference
    between the aggregation here and ``hypergrad(..., "fg2u", directions=...)``.
    """
    rows, gaps, running, unb, traces = [], [], [], [], {}
    seeds = iter(range(seed * 1_000, seed * 1_000 + 1_000))

    def sweep(problem, alpha, n, b, dist, label):
        g = flatten(families.quadratic_exact(problem, alpha))
        G, gap = _fg2u_samples(problem, alpha, M, b, dist, next(seeds))
        gaps.append(gap / float(g.norm()))
        e = ((G - g) ** 2).sum(1) / (g @ g)
        rows.append(dict(sweep=label, distribution=dist, N=n, b=b, M=M,
                         mse_normalised=float(e.mean()), se=float(e.std() / math.sqrt(M)),
                         theory=theory(n, b, dist)))

    base = families.quadratic(P=P, N=N, T=T, eta=eta, seed=seed)
    for dist in distributions:
        for b in bs:
            sweep(*base, N, b, dist, "b")
        for n in Ns:
            sweep(*families.quadratic(P=P, N=n, T=T, eta=eta, seed=seed), n, b_for_N, dist, "N")
        problem, alpha = base
        g = flatten(families.quadratic_exact(problem, alpha))
        G, gap = _fg2u_samples(problem, alpha, M_mean, 1, dist, next(seeds))
        gaps.append(gap / float(g.norm()))
        m = torch.arange(1, M_mean + 1, dtype=G.dtype)
        mean = G.cumsum(0) / m[:, None]
        err = (mean - g).norm(dim=1) / g.norm()
        keep = np.unique(np.geomspace(1, M_mean, 60).astype(int)) - 1
        for i in keep:
            running.append(dict(distribution=dist, m=int(i + 1), rel_err=float(err[i]),
                                expected_rms=math.sqrt(theory(N, 1, dist) / (i + 1))))
        traces[dist] = (mean[:, :3].numpy(), g[:3].numpy())
        tab = unbiasedness_table(G, g)
        tab.insert(0, "distribution", dist)
        unb.append(tab)
    df = pd.DataFrame(rows)
    df["ratio"] = df["mse_normalised"] / df["theory"]
    df["ratio_se"] = df["se"] / df["theory"]
    return {"vs_b": df[df.sweep == "b"].drop(columns="sweep").reset_index(drop=True),
            "vs_N": df[df.sweep == "N"].drop(columns="sweep").reset_index(drop=True),
            "running": pd.DataFrame(running), "unbiased": pd.concat(unb, ignore_index=True),
            "traces": traces, "library_gap": max(gaps), "N": N, "M_mean": M_mean}


def unbiasedness_table(samples: torch.Tensor, g: torch.Tensor) -> pd.DataFrame:
    """Per coordinate i: the mean of the estimates, the exact ``g_i`` and the z-score
    ``(mean_i − g_i) / (sd_i / √M)`` (≈ N(0, 1) for an unbiased estimator)."""
    M = samples.shape[0]
    mean, sd = samples.mean(0), samples.std(0)
    z = (mean - g) / (sd / math.sqrt(M))
    return pd.DataFrame(dict(coordinate=np.arange(g.numel()), mean=mean.numpy(), exact=g.numpy(),
                             z=z.numpy()))


def check_fg2u_variance(res: dict, *, p_fail: float = 1e-3, tol_library: float = 1e-12) -> pd.DataFrame:
    """Every measured ``E‖ĝ−g‖²/‖g‖²`` within ``z·se`` of the theory, every coordinate mean
    within ``z`` standard errors of ``g`` (z Bonferroni-corrected so that all checks together
    fail by chance with probability ≤ ``p_fail``), and the aggregation used here equal to
    the library's ``fg2u``."""
    var = pd.concat([res["vs_b"], res["vs_N"]], ignore_index=True)
    n = len(var) + len(res["unbiased"])
    z = z_bonferroni(n, p_fail)
    rows = [(f"{r.distribution}, N={r.N}, b={r.b}: |measured/theory − 1|", abs(r.ratio - 1),
             z * r.ratio_se, abs(r.ratio - 1) <= z * r.ratio_se) for r in var.itertuples()]
    for dist, df in res["unbiased"].groupby("distribution", sort=False):
        worst = float(df["z"].abs().max())
        rows.append((f"{dist}: unbiased, max |z| over {len(df)} coordinates", worst, z, worst <= z))
    rows.append(("aggregation = library fg2u (relative)", res["library_gap"], tol_library,
                 res["library_gap"] <= tol_library))
    return _verdict(rows)


def plot_fg2u_variance(res: dict):
    """(a) running means of three coordinates, (b) their error against m with the 1/√m
    line, (c) normalised MSE against b, (d) against N, with Lemma 3.1's lines."""
    fig, axes = _fig(2, 2, size=(3.6, 2.9))
    (a, b), (c, d) = axes
    dist0 = next(iter(res["traces"]))
    mean, g = res["traces"][dist0]
    m = np.arange(1, mean.shape[0] + 1)
    for i in range(mean.shape[1]):
        a.plot(m, mean[:, i], color=f"C{i}", lw=1, label=f"coordinate {i}")
        a.axhline(g[i], color=f"C{i}", ls="--", lw=1)
    a.set_xscale("log")
    a.set(xlabel="number of estimates m (b = 1)", ylabel=r"running mean of $\hat g_i$",
          title=f"(a) running means → exact (dashed)\n{dist0}")
    for i, (dist, df) in enumerate(res["running"].groupby("distribution", sort=False)):
        b.loglog(df["m"], df["rel_err"], color=f"C{i}", label=f"{dist}: measured")
        sign = "-" if dist == "rademacher" else "+"
        b.loglog(df["m"], df["expected_rms"], "--", color=f"C{i}", label=rf"{dist}: $\sqrt{{(N{sign}1)/m}}$")
    b.set(xlabel="number of estimates m (b = 1)", ylabel=r"$\|\bar g_m - \nabla F\| / \|\nabla F\|$",
          title="(b) error of the running mean\n∝ 1/√m")
    for ax, key, x, label in ((c, "vs_b", "b", "number of directions b"),
                              (d, "vs_N", "N", "number of hyperparameters N")):
        for i, (dist, df) in enumerate(res[key].groupby("distribution", sort=False)):
            ax.errorbar(df[x], df["mse_normalised"], yerr=2 * df["se"], fmt="o", ms=4,
                        color=f"C{i}", label=f"{dist}: measured (±2 se)")
            ax.loglog(df[x], df["theory"], "-", color=f"C{i}", lw=1,
                      label=f"{dist}: theory {'(N−1)/b' if dist == 'rademacher' else '(N+1)/b'}")
        ax.set(xlabel=label, ylabel=r"$E\|\hat g - \nabla F\|^2 / \|\nabla F\|^2$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _int_ticks(ax, res[key][x].unique())
        fixed = (f"N = {int(res['vs_b']['N'].iloc[0])}" if key == "vs_b"
                 else f"b = {int(res['vs_N']['b'].iloc[0])}")
        ax.set_title(f"({'c' if key == 'vs_b' else 'd'}) variance against {x}\n{fixed}")
    _legend(fig, ncols=3)
    return fig


# ----------------------------------------------------------------------------------------
# 3. (FG)²U Theorem 3.4: convergence of gradient descent with fg2u
# ----------------------------------------------------------------------------------------
def quadratic_landscape(problem, alpha) -> dict:
    r"""F of the quadratic family is quadratic in α: :math:`\nabla F(\alpha) = H\alpha + r`,
    :math:`H = M^\top M + \lambda I`. Returns ``H`` (Jacobian of the closed-form gradient),
    ``L_h = λ_max(H)``, the minimiser ``α* = −H⁻¹ r``, ``F(α₀)`` and ``min F = F(α*)``."""
    grad_F = lambda x: families.quadratic_exact(problem, {"a": x})["a"]  # noqa: E731
    a0 = alpha["a"].detach()
    H = jacobian(grad_F, a0)
    H = 0.5 * (H + H.T)
    eig = torch.linalg.eigvalsh(H)
    a_star = torch.linalg.solve(H, -grad_F(torch.zeros_like(a0)))
    return dict(H=H, L_h=float(eig.max()), mu_h=float(eig.min()), grad_F=grad_F, a_star=a_star,
                F0=objective(problem, alpha), F_min=objective(problem, {"a": a_star}))


def fg2u_convergence(*, P: int = 8, N: int = 8, T: int = 5, eta: float = 0.3, bs: tuple = (1, 3, 7),
                     K: int = 30, seeds: int = 3, seed: int = 0, method: str = "fg2u",
                     step_scale: float = 1.0, bound_scale: float = 1.0) -> dict:
    r"""Gradient descent :math:`\alpha_{k+1} = \alpha_k - \beta\hat g_k` on the quadratic family
    with :math:`\beta = \rho/((\rho+1)L_h)`, :math:`\rho = b/(N-1)` (times ``step_scale``),
    ``seeds`` independent runs per b. ``curves``: for every k ≤ K the seed mean (and standard
    error) of :math:`\frac1k\sum_{j<k}\|\nabla F(\alpha_j)\|^2` (exact gradients, closed form)
    and the bound :math:`4L_h(F(\alpha_0)-\min F)/(\rho k)` (times ``bound_scale``)."""
    problem, alpha = families.quadratic(P=P, N=N, T=T, eta=eta, seed=seed)
    land = quadratic_landscape(problem, alpha)
    L_h, gap = land["L_h"], land["F0"] - land["F_min"]
    curves, summary = [], []
    ks = np.arange(1, K + 1)
    for b in bs:
        rho = b / (N - 1)
        beta = step_scale * rho / ((rho + 1) * L_h)
        sq = np.full((seeds, K), np.inf)
        for s in range(seeds):
            x = alpha["a"].detach().clone()
            for k in range(K):
                sq[s, k] = float(land["grad_F"](x).pow(2).sum())
                if not np.isfinite(sq[s, k]) or sq[s, k] > 1e100:
                    sq[s, k:] = np.inf
                    break
                opts = dict(b=b, seed=10_000_019 * (seed + 1) + 1_000 * s + k) if method == "fg2u" else {}
                x = x - beta * hypergrad(problem, {"a": x}, method, validate=False, **opts).grad["a"]
        avg = np.cumsum(sq, 1) / ks
        se = avg.std(0, ddof=1) / math.sqrt(seeds) if seeds > 1 else np.zeros(K)
        bound = bound_scale * 4 * L_h * gap / (rho * ks)
        for k in range(K):
            curves.append(dict(b=b, rho=rho, k=k + 1, mean_sq_grad=avg[:, k].mean(), se=se[k],
                               bound=bound[k]))
        ratio = avg.mean(0) / bound
        summary.append(dict(b=b, rho=rho, beta=beta, final_mean_sq_grad=avg[:, -1].mean(),
                            final_bound=bound[-1], final_ratio=ratio[-1], max_ratio=np.max(ratio)))
    return {"curves": pd.DataFrame(curves), "summary": pd.DataFrame(summary), "L_h": L_h,
            "mu_h": land["mu_h"], "F0": land["F0"], "F_min": land["F_min"], "N": N, "K": K,
            "seeds": seeds}


def check_fg2u_convergence(res: dict, *, p_fail: float = 1e-3, checkpoints: int = 5) -> pd.DataFrame:
    """For every b, at ``checkpoints`` log-spaced K (the last one included): the seed mean of
    the averaged squared gradient norm is not significantly above the bound,
    ``mean ≤ bound + t·se``, t the one-sided Student quantile with ``seeds − 1`` degrees of
    freedom, Bonferroni-corrected over all (b, K) tested, so that a true claim fails by chance
    with probability ≤ ``p_fail``. Reported: the largest ratio over the checkpoints and the
    allowance ``1 + t·se/bound`` at that K (every checkpoint must pass)."""
    from scipy.stats import t as student
    curves = res["curves"]
    K = int(curves["k"].max())
    ks = np.unique(np.geomspace(1, K, checkpoints).round().astype(int))
    n = curves["b"].nunique() * len(ks)
    t = float(student.ppf(1 - p_fail / n, df=max(res["seeds"] - 1, 1)))
    rows = []
    for b, df in curves.groupby("b", sort=False):
        df = df[df["k"].isin(ks)]
        ratio = (df["mean_sq_grad"] / df["bound"]).to_numpy()
        allow = (1 + t * df["se"] / df["bound"]).to_numpy()
        finite = bool(np.isfinite(ratio).all())
        i = int(np.argmax(ratio)) if finite else int(np.argmax(~np.isfinite(ratio)))
        rows.append((f"b={b}: max over K of mean/bound (at K={int(df['k'].iloc[i])})",
                     float(ratio[i]), float(allow[i]), finite and bool((ratio <= allow).all())))
    return _verdict(rows)


def plot_fg2u_convergence(res: dict):
    """Averaged squared gradient norm against K, one colour per b, with the bound (dashed)."""
    fig, axes = _fig(size=(6, 4))
    ax = axes[0, 0]
    for i, (b, df) in enumerate(res["curves"].groupby("b", sort=False)):
        rho = df["rho"].iloc[0]
        ax.loglog(df["k"], df["mean_sq_grad"], color=f"C{i}", label=f"b={b} (ρ={rho:.2f}): measured")
        ax.fill_between(df["k"], (df["mean_sq_grad"] - 2 * df["se"]).clip(lower=1e-300),
                        df["mean_sq_grad"] + 2 * df["se"], color=f"C{i}", alpha=0.2, lw=0)
        ax.loglog(df["k"], df["bound"], "--", color=f"C{i}", label=f"b={b}: bound 4L_h ΔF/(ρK)")
    ax.set(xlabel="outer iterations K",
           ylabel="$\\frac{1}{K}\\sum_{k<K} \\|\\nabla F(\\alpha_k)\\|^2$\n(mean over seeds)",
           title="Theorem 3.4: (FG)²U gradient descent against its bound")
    _legend(fig, ncols=2)
    return fig


# ----------------------------------------------------------------------------------------
# 4. greedy: d̂(γ) → d_T1T2 as γ → 0
# ----------------------------------------------------------------------------------------
def greedy_limit(problems: dict, *, gamma_exps: tuple = (-6.0, -1.0), n_gamma: int = 11,
                 reference: str = "t1t2") -> dict:
    r"""``‖d̂(γ) − d_ref‖`` for γ on a log grid, per problem (``reference`` = ``t1t2`` is the
    claim). The first-order term is predicted: :math:`\hat d(\gamma) - d_{T1T2} = \gamma\,
    \nabla_{w_{T-1}}L_{val}(w_{T-1})B_{T-1} + O(\gamma^2)`, i.e. γ times the T1−T2 gradient
    of the same problem with horizon T−1 minus its :math:`\nabla_\alpha L_{val}` term."""
    gammas = np.logspace(gamma_exps[0], gamma_exps[1], n_gamma)
    rows, fits = [], []
    for family, kwargs in problems.items():
        problem, alpha = _build(family, kwargs)
        ref = flatten(hypergrad(problem, alpha, reference).grad)
        prev = problem.replace(T=problem.T - 1)
        c1 = flatten(hypergrad(prev, alpha, "t1t2").grad) - flatten(hypergrad(prev, alpha, "fo").grad)
        t1t2 = flatten(hypergrad(problem, alpha, "t1t2").grad)
        dist = []
        for gam in gammas:
            g = flatten(hypergrad(problem, alpha, "greedy", gamma=float(gam)).grad)
            dist.append(float((g - ref).norm()))
            rows.append(dict(problem=family, gamma=gam, distance=dist[-1],
                             predicted=gam * float(c1.norm()), rel_distance=dist[-1] / float(t1t2.norm())))
        slope = float(np.polyfit(np.log(gammas), np.log(np.maximum(dist, 1e-300)), 1)[0])
        fits.append(dict(problem=family, T=problem.T, N=tree_numel(alpha), slope=slope,
                         ratio_minus_1_at_min_gamma=dist[0] / (gammas[0] * float(c1.norm())) - 1,
                         rel_distance_at_min_gamma=dist[0] / float(t1t2.norm())))
    return {"table": pd.DataFrame(rows), "fits": pd.DataFrame(fits), "reference": reference}


def check_greedy_limit(res: dict, *, slope_tol: float = 0.05, ratio_tol: float = 1e-3) -> pd.DataFrame:
    """The log-log slope of ``‖d̂(γ) − d_ref‖`` against γ is 1 ± ``slope_tol`` (a linear
    approach to the limit) and at the smallest γ the distance is the predicted first-order
    term to within ``ratio_tol`` (so it tends to 0 at the predicted rate)."""
    rows = []
    for r in res["fits"].itertuples():
        rows.append((f"{r.problem}: log-log slope", r.slope, f"1 ± {slope_tol}", abs(r.slope - 1) <= slope_tol))
        dev = abs(r.ratio_minus_1_at_min_gamma)
        rows.append((f"{r.problem}: |distance/(γ‖c₁‖) − 1| at min γ", dev, ratio_tol, dev <= ratio_tol))
    return _verdict(rows)


def plot_greedy_limit(res: dict):
    """``‖d̂(γ) − d_T1T2‖`` against γ (log-log) with the predicted line γ‖c₁‖."""
    fig, axes = _fig(size=(5.6, 4))
    ax = axes[0, 0]
    for i, (family, df) in enumerate(res["table"].groupby("problem", sort=False)):
        ax.loglog(df["gamma"], df["distance"], "o", color=f"C{i}", label=f"{family}: measured")
        ax.loglog(df["gamma"], df["predicted"], "-", color=f"C{i}", lw=1,
                  label=rf"{family}: $\gamma\,\|\nabla_{{w_{{T-1}}}} L_{{val}}\, B_{{T-1}}\|$")
    ax.set(xlabel="greedy discount γ", ylabel=rf"distance $\|\hat d(\gamma) - d_{{\mathrm{{{res['reference']}}}}}\|$",
           title="Greedy → T1−T2 as γ → 0 (slope 1)")
    _legend(fig, "right")
    return fig


# ----------------------------------------------------------------------------------------
# 5. greedy: sufficient descent under assumptions (1)-(8)
# ----------------------------------------------------------------------------------------
VARIANTS = {
    "all assumptions": "—",
    "ill-conditioned Hessian": "(6) ∇²_w L_train = I",
    "γ ≠ 1 − η": "theorem's γ = 1 − η",
    "non-convex L_val": "(1) L_val strongly convex",
}


def descent_problem(variant: str = "all assumptions", *, P: int = 2, N: int = 4, T: int = 10,
                    eta: float = 0.3, rho: float = 0.8, q_cond: float = 2.0, D: float = 4.0,
                    star_frac: float = 0.25, hessian_cond: float = 10.0, gamma_alt: float = 0.9,
                    nonconvex_amp: float = 1.0, seed: int = 0):
    r"""A problem built to satisfy assumptions (1)–(8) of the sufficient-descent theorem,
    or to break one of them (``variant``, a key of ``VARIANTS``).

    :math:`L_{train} = \tfrac12 (w - B\alpha)^\top H (w - B\alpha)` with H = I (so Φ is
    gradient descent with step η, :math:`A_t = (1-\eta)I`, :math:`B_t = \eta B`);
    :math:`B = L Z`, Z with orthonormal rows (P ≤ N), :math:`BB^\top = (1-\rho)I + \rho\mathbf 1
    \mathbf 1^\top` so :math:`B_tB_t^\top \succeq \eta^2(1-\rho) I`;
    :math:`L_{val} = \tfrac12 (w - w_2^*)^\top Q (w - w_2^*)`, eigenvalues of Q in
    [1/q_cond, 1], independent of α. :math:`w_0 = w_\infty + D u`, and
    :math:`w_2^* = w_\infty + \text{star\_frac}\cdot D u` + a small orthogonal offset lies
    between :math:`w_0` and :math:`w_\infty = B\alpha`, so the validation gradient turns
    round along the trajectory. Variants: H with condition number ``hessian_cond`` and
    :math:`w_2^*` placed where the T → ∞ limit of the ratio is most negative;
    γ = ``gamma_alt``; :math:`L_{val}` plus ``nonconvex_amp``·Σ(1 − cos 2(w − w_2^*)_i)·… (non-convex).

    Returns ``(problem, alpha, info)``; ``info`` holds B, H, Q, w₀, w₂*, w_∞, γ and η.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {list(VARIANTS)}")
    if P > N:
        raise ValueError(f"assumption (7) needs P <= N (B_t B_t^T full rank), got P={P}, N={N}")
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    Z, _ = torch.linalg.qr(torch.randn(N, P, generator=g, dtype=dt))
    gram = (1 - rho) * torch.eye(P, dtype=dt) + rho * torch.ones(P, P, dtype=dt)
    B = torch.linalg.cholesky(gram) @ Z.T
    R, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=dt))
    Q = (R * torch.linspace(1 / q_cond, 1.0, P, dtype=dt)) @ R.T
    alpha = torch.randn(N, generator=g, dtype=dt)
    w_inf = B @ alpha
    u = torch.randn(P, generator=g, dtype=dt)
    u = u / u.norm()
    side = torch.randn(P, generator=g, dtype=dt)
    side = side - (side @ u) * u
    side = side / side.norm() if side.norm() > 0 else side
    w0 = w_inf + D * u
    w_star = w_inf + star_frac * D * u + 0.1 * star_frac * D * side
    H = torch.eye(P, dtype=dt)
    gamma = 1 - eta
    if variant == "ill-conditioned Hessian":
        H = torch.diag(torch.logspace(0, -math.log10(hessian_cond), P, dtype=dt))
        S = B @ B.T @ H
        ev, evec = torch.linalg.eigh(0.5 * (S + S.T))
        # g_inf = Q (w_inf - w*) along the eigenvector of the most negative eigenvalue
        w_star = w_inf - star_frac * D * torch.linalg.solve(Q, evec[:, 0]) / float(
            torch.linalg.solve(Q, evec[:, 0]).norm())
    elif variant == "γ ≠ 1 − η":
        gamma = gamma_alt
    amp = nonconvex_amp if variant == "non-convex L_val" else 0.0
    data = {"B": B, "H": H, "Q": Q, "w_star": w_star, "amp": amp}

    def inner(w, a, d):
        r = w["w"] - d["B"] @ a["a"]
        return 0.5 * r @ d["H"] @ r

    def outer(w, a, d):
        r = w["w"] - d["w_star"]
        return 0.5 * r @ d["Q"] @ r + d["amp"] * (1 - torch.cos(2 * r)).sum()

    problem = BilevelProblem(inner, outer, init={"w": w0}, optimizer=SGD(lr=eta), T=T,
                             inner_batches=data, outer_batch=data)
    info = dict(B=B, H=H, Q=Q, w0=w0, w_star=w_star, w_inf=w_inf, gamma=gamma, eta=eta)
    return problem, {"a": alpha}, info


def _trajectory(problem, alpha):
    state = unroll.initial_state(problem, alpha)
    ws = [state[0]["w"]]
    for t in range(problem.T):
        state, _ = unroll.transition(problem, state, alpha, t)
        ws.append(state[0]["w"])
    return ws


def descent_assumptions(problem, alpha, info, *, points: int = 21) -> pd.DataFrame:
    """Measure each assumption of the sufficient-descent theorem along the trajectory
    ``w_0 .. w_T`` of ``problem`` (its T is the horizon used for (8)). D uses every point;
    the derivative-based quantities use ``points`` evenly spaced ones."""
    eta, T = info["eta"], problem.T
    d = problem.outer_batch
    traj = _trajectory(problem, alpha)
    W = torch.stack(traj)
    D = float(torch.cdist(W, W).max())
    ws = [traj[i] for i in np.unique(np.linspace(0, T, min(T + 1, points)).round().astype(int))]
    a = alpha["a"]

    def phi(w, aa):  # the transition Φ(w, α)
        return unroll.transition(problem, ({"w": w}, {}), {"a": aa}, 0)[0][0]["w"]

    def l_train(w):
        return problem.inner_loss({"w": w}, alpha, d)

    def l_val(w, aa=a):
        return problem.outer_loss({"w": w}, {"a": aa}, d)

    def spectral(m):
        return float(torch.linalg.matrix_norm(m, ord=2))

    J = [jacrev(phi, argnums=1)(w, a) for w in ws]  # ∂Φ/∂α along the trajectory
    eig_val = torch.stack([torch.linalg.eigvalsh(hessian(l_val)(w)) for w in ws + [info["w_star"]]])
    mu, L = float(eig_val.min()), float(eig_val.max())
    C_B = max((spectral(J[i] - J[j]) / float((ws[i] - ws[j]).norm())
               for i in range(len(ws)) for j in range(i) if float((ws[i] - ws[j]).norm()) > 1e-9),
              default=0.0)
    B_bound = max(spectral(j) for j in J)
    gd_gap = max(float((phi(w, a) - (w - eta * torch.func.grad(l_train)(w))).norm()) for w in ws)
    eye = torch.eye(ws[0].numel(), dtype=ws[0].dtype)
    hess_tr = max(spectral(hessian(l_train)(w) - eye) for w in ws)
    grad_a = max(float(torch.func.grad(lambda aa, w=w: l_val(w, aa))(a).norm()) for w in ws)
    kappa = min(float(torch.linalg.eigvalsh(j @ j.T).min()) for j in J)
    sep = float((info["w_inf"] - info["w_star"]).norm())  # w_inf = Bα minimises L_train
    margin = sep - 2 * D * math.exp(-mu * eta * T) if mu > 0 else -math.inf
    grad_star = float(torch.func.grad(l_val)(info["w_star"]).norm())
    T0 = max(1, math.floor(math.log(2 * D / sep) / (mu * eta)) + 1) if mu > 0 and sep > 0 else None
    gamma_gap = abs(info["gamma"] - (1 - eta))
    tiny = 1e-12
    zero = f"= 0 (≤ {tiny:g})"
    fin = math.isfinite
    rows = [
        ("(1) L_val μ-strongly convex", "μ = min eigenvalue of ∇²L_val", mu, "> 0", mu > 0),
        ("(1) L_val L-smooth", "L = max eigenvalue of ∇²L_val", L, "finite", fin(L)),
        ("(2) ∂Φ/∂α C_B-Lipschitz", "C_B (max over trajectory pairs)", C_B, "finite", fin(C_B)),
        ("(3) ‖∂Φ/∂α‖ ≤ B", "max ‖∂Φ/∂α‖₂", B_bound, "finite", fin(B_bound)),
        ("(4) w in a convex set of diameter D", "D = max ‖w_t − w_s‖", D, "finite", fin(D)),
        ("(5) Φ is gradient descent, step η", "max ‖Φ(w) − (w − η∇L_train)‖", gd_gap, zero,
         gd_gap <= tiny),
        ("(6) ∇²_w L_train = I", "max ‖∇²L_train − I‖₂", hess_tr, zero, hess_tr <= tiny),
        ("(6) ∇_α L_val = 0", "max ‖∇_α L_val‖", grad_a, zero, grad_a <= tiny),
        ("(7) B_t B_tᵀ ⪰ κI", "κ = min λ_min(B_t B_tᵀ)", kappa, "> 0", kappa > tiny),
        ("(8) ‖w_∞ − w₂*‖ ≥ 2D·exp(−μηT) + δ", f"δ at T = {T}", margin, "> 0", margin > 0),
        ("(8) ∇L_val(w₂*) = 0", "‖∇L_val(w₂*)‖", grad_star, zero, grad_star <= tiny),
        ("(8) T large enough", "T₀ = smallest T with δ > 0", float(T0) if T0 else math.nan,
         f"≤ T = {T}", T0 is not None and T >= T0),
        ("theorem: γ = 1 − η", "|γ − (1 − η)|", gamma_gap, zero, gamma_gap <= tiny),
    ]
    return pd.DataFrame(rows, columns=["assumption", "quantity", "measured", "requirement", "holds"])


def _limit_ratio(info, problem, alpha) -> float:
    r"""T → ∞ limit of ⟨d, d̂⟩/‖d‖² on these problems: with :math:`g = \nabla L_{val}(w_\infty)`,
    :math:`d \to gB`, :math:`\hat d \to \frac{\eta}{1-\gamma}\, gHB`, so the ratio tends to
    :math:`\frac{\eta}{1-\gamma}\, gBB^\top Hg / gBB^\top g`."""
    g = torch.func.grad(lambda w: problem.outer_loss({"w": w}, alpha, problem.outer_batch))(info["w_inf"])
    BBt = info["B"] @ info["B"].T
    return float(info["eta"] / (1 - info["gamma"]) * (g @ BBt @ info["H"] @ g) / (g @ BBt @ g))


def greedy_descent(*, Ts: tuple = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 64, 80, 100, 128),
                   variants: tuple = tuple(VARIANTS), **problem_kwargs) -> dict:
    """The ratio ``⟨d, d̂(γ)⟩/‖d‖²`` (d by ``rmd``, d̂ by ``greedy``) against the horizon T for
    each variant of :func:`descent_problem`, the assumption table at the largest T, and a
    per-variant summary (broken assumptions, T₀, the smallest ratio for T ≥ T₀, the T → ∞
    limit)."""
    ratios, tables, summary = [], [], []
    T_max = max(Ts)
    for v in variants:
        problem, alpha, info = descent_problem(v, T=T_max, **problem_kwargs)
        tab = descent_assumptions(problem, alpha, info)
        tab.insert(0, "variant", v)
        tables.append(tab)
        limit = _limit_ratio(info, problem, alpha)
        for T in Ts:
            p = problem.replace(T=int(T))
            d = flatten(hypergrad(p, alpha, "rmd").grad)
            dh = flatten(hypergrad(p, alpha, "greedy", gamma=float(info["gamma"])).grad)
            ratios.append(dict(variant=v, T=int(T), ratio=float(d @ dh / (d @ d)),
                               d_norm=float(d.norm()), limit=limit))
        t0 = tab.loc[tab.quantity.str.startswith("T₀"), "measured"].iloc[0]
        r = pd.DataFrame([x for x in ratios if x["variant"] == v])
        after = r[r["T"] >= (t0 if np.isfinite(t0) else T_max // 2)]
        summary.append(dict(variant=v, broken=VARIANTS[v],
                            assumptions_failing=", ".join(tab.loc[~tab.holds, "assumption"]) or "none",
                            T0=t0, min_ratio_all_T=float(r["ratio"].min()),
                            c_min_ratio_T_ge_T0=float(after["ratio"].min()),
                            ratio_at_T_max=float(r["ratio"].iloc[-1]), limit_T_inf=limit))
    return {"ratios": pd.DataFrame(ratios), "assumptions": pd.concat(tables, ignore_index=True),
            "summary": pd.DataFrame(summary), "eta": problem_kwargs.get("eta", 0.3)}


def check_greedy_descent(res: dict, *, variant: str = "all assumptions") -> pd.DataFrame:
    """For ``variant``: every assumption holds (at the largest T), and the ratio
    ``⟨d, d̂⟩/‖d‖²`` is ≥ c > 0 for every T ≥ T₀ on the grid (c = the smallest such ratio)."""
    tab = res["assumptions"][res["assumptions"].variant == variant]
    rows = [(f"{r.assumption}: {r.quantity}", r.measured, r.requirement, r.holds) for r in tab.itertuples()]
    s = res["summary"][res["summary"].variant == variant].iloc[0]
    rows.append(("c = min ratio ⟨d, d̂⟩/‖d‖² over T ≥ T₀", s.c_min_ratio_T_ge_T0, "> 0",
                 s.c_min_ratio_T_ge_T0 > 0))
    return _verdict(rows)


def plot_greedy_descent(res: dict):
    """⟨d, d̂⟩/‖d‖² against T per variant, with the T → ∞ limits (dotted) and T₀ (grey)."""
    fig, axes = _fig(size=(6.4, 4.2))
    ax = axes[0, 0]
    for i, (v, df) in enumerate(res["ratios"].groupby("variant", sort=False)):
        ax.plot(df["T"], df["ratio"], "o-", ms=3, color=f"C{i}", label=v)
        ax.axhline(df["limit"].iloc[0], color=f"C{i}", ls=":", lw=1)
    base = res["summary"].iloc[0]
    if np.isfinite(base.T0):
        ax.axvline(base.T0, color="grey", lw=1, ls="--", label=f"T₀ = {int(base.T0)} (assumption 8)")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="horizon T (inner steps)", ylabel=r"ratio $\langle d, \hat d(\gamma)\rangle / \|d\|^2$",
           title="Sufficient descent of greedy (dotted: T → ∞ limits)")
    _legend(fig, "right")
    return fig


# ----------------------------------------------------------------------------------------
# 6. cost: products and peak memory against T; the greedy paper's feature table
# ----------------------------------------------------------------------------------------
# What the docstrings promise, per call: (inner_steps, jvps, vjps, hvps) as functions of
# (T, N, options, learned_init).
EXPECTED_COUNTS: dict[str, Callable] = {
    "rmd": lambda T, N, o, li: (T, 0, T + li, 0),
    "trgu": lambda T, N, o, li: (T, 0, o["K"] + (li if o["K"] == T else 0), 0),
    "fmd": lambda T, N, o, li: (T, N * T, 0, 0),
    "fg2u": lambda T, N, o, li: (T, o["b"] * T, 0, 0),
    "fg2u-zo": lambda T, N, o, li: ((o["b"] + 1) * T, 0, 0, 0),
    "greedy": lambda T, N, o, li: (T, 0, T + li, 0),
    "t1t2": lambda T, N, o, li: (T, 0, 1, 0),
    "fo": lambda T, N, o, li: (T, 0, 0, 0),
    "neumann": lambda T, N, o, li: (T, 0, 0, o["K"] + 1),
    "cg": lambda T, N, o, li: (T, 0, 0, o["K"] + 1),
    "hessian-free": lambda T, N, o, li: (T, 0, 0, 1),
    "fomaml": lambda T, N, o, li: (T, 0, li, 0),
}

# The same, as formulas for display (b directions, K truncation/solver length, +1 with a learned w₀).
EXPECTED_FORMULAS = {
    "rmd": ("T", "0", "T (+1)", "0"), "trgu": ("T", "0", "K", "0"), "fmd": ("T", "N·T", "0", "0"),
    "fg2u": ("T", "b·T", "0", "0"), "fg2u-zo": ("(b+1)·T", "0", "0", "0"), "greedy": ("T", "0", "T (+1)", "0"),
    "t1t2": ("T", "0", "1", "0"), "fo": ("T", "0", "0", "0"), "neumann": ("T", "0", "0", "K+1"),
    "cg": ("T", "0", "0", "K+1"), "hessian-free": ("T", "0", "0", "1"), "fomaml": ("T", "0", "(+1)", "0"),
}

# The feature table of the greedy paper's slides (PAPERS.md B.3); None = not implemented.
FEATURES_CLAIMED = {
    "IFT": ("neumann", {"online optimisation": False, "long horizon": True, "linear complexity": True}),
    "RMD": ("rmd", {"online optimisation": True, "long horizon": True, "linear complexity": False}),
    "DrMAD": (None, {"online optimisation": False, "long horizon": True, "linear complexity": True}),
    "T1−T2": ("t1t2", {"online optimisation": True, "long horizon": False, "linear complexity": True}),
    "greedy": ("greedy", {"online optimisation": True, "long horizon": True, "linear complexity": True}),
}

DEFAULT_OPTIONS = {"fg2u": {"b": 4, "seed": 0}, "fg2u-zo": {"b": 4, "seed": 0}, "trgu": {"K": 4},
                   "greedy": {"gamma": 0.9}, "neumann": {"K": 5}, "cg": {"K": 5}}


def cost_scaling(*, family: str = "hyper_cleaning", family_kwargs: dict | None = None,
                 Ts: tuple = (4, 8, 16, 32), methods: tuple | None = None, options: dict | None = None,
                 expected: dict | None = None, flat_exponent: float = 0.25,
                 long_horizon_cos: float = 0.9) -> dict:
    """Every estimator on one problem at several horizons T: its cost counters, its peak
    memory (``track_memory=True``: the live-tensor tracker on CPU, the allocator on CUDA),
    and its cosine / relative error against ``rmd``.

    ``exponents``: the log-log slope of peak memory and of the number of products
    (JVPs + VJPs + HVPs) between the two largest T. ``features``: the slides' feature table
    beside what was measured — linear complexity ⇔ memory exponent < ``flat_exponent``;
    long horizon ⇔ cosine with RMD at the largest T ≥ ``long_horizon_cos``; online
    optimisation is a structural property, not measured here.
    """
    methods = tuple(methods or available_methods())
    options = {**DEFAULT_OPTIONS, **(options or {})}
    expected = {**EXPECTED_COUNTS, **(expected or {})}
    rows = []
    for T in Ts:
        problem, alpha = _build(family, {**(family_kwargs or {}), "T": int(T)})
        N, li = tree_numel(alpha), int(problem.learned_init)
        ref = flatten(hypergrad(problem, alpha, "rmd").grad)
        for m in methods:
            o = dict(options.get(m, {}))
            res = hypergrad(problem, alpha, m, track_memory=True, **o)
            c = res.cost
            g = flatten(res.grad)
            exp = expected[m](int(T), N, o, li)
            rows.append(dict(method=m, T=int(T), N=N, inner_steps=c.inner_steps, jvps=c.jvps,
                             vjps=c.vjps, hvps=c.hvps, products=c.jvps + c.vjps + c.hvps,
                             expected=exp, counts_match=(c.inner_steps, c.jvps, c.vjps, c.hvps) == tuple(exp),
                             peak_kib=c.peak_memory_bytes / 1024,
                             cos_rmd=float(g @ ref / (g.norm() * ref.norm())) if g.norm() > 0 else 0.0,
                             rel_err_rmd=_rel(g, ref)))
    table = pd.DataFrame(rows)
    ex = []
    for m, df in table.groupby("method", sort=False):
        df = df.sort_values("T")
        lt = np.log(df["T"].to_numpy()[-2:])
        mem = float(np.diff(np.log(df["peak_kib"].to_numpy()[-2:]))[0] / np.diff(lt)[0])
        prod = df["products"].to_numpy()[-2:]
        pe = float(np.diff(np.log(prod))[0] / np.diff(lt)[0]) if (prod > 0).all() else 0.0
        ex.append(dict(method=m, memory_exponent=mem, products_exponent=pe,
                       peak_kib_at_T_max=float(df["peak_kib"].iloc[-1]),
                       cos_rmd_at_T_max=float(df["cos_rmd"].iloc[-1]),
                       rel_err_rmd_at_T_max=float(df["rel_err_rmd"].iloc[-1])))
    exponents = pd.DataFrame(ex)
    feats = []
    for name, (m, claims) in FEATURES_CLAIMED.items():
        e = exponents[exponents.method == m].iloc[0] if m in methods else None
        for prop, claimed in claims.items():
            if e is None:
                measured, value = "not implemented", ""
            elif prop == "linear complexity":
                measured = bool(e.memory_exponent < flat_exponent)
                value = f"peak memory ∝ T^{e.memory_exponent:.2f}"
            elif prop == "long horizon":
                measured = bool(e.cos_rmd_at_T_max >= long_horizon_cos)
                value = f"cos(·, RMD) = {e.cos_rmd_at_T_max:.3f} at T = {int(max(Ts))}"
            else:
                measured, value = "not measured", "a property of the algorithm, not of a run"
            agrees = (measured == claimed) if isinstance(measured, bool) else None
            feats.append(dict(property=prop, method=name, estimator=m or "—",
                              claimed="✓" if claimed else "✗",
                              measured=("✓" if measured else "✗") if isinstance(measured, bool) else measured,
                              value=value, agrees=agrees))
    return {"table": table, "exponents": exponents, "features": pd.DataFrame(feats),
            "family": family, "T_max": int(max(Ts)), "flat_exponent": flat_exponent}


def feature_matrix(res: dict) -> pd.DataFrame:
    """The feature table as in the slides (properties × methods), each cell
    ``claimed / measured``."""
    f = res["features"].assign(cell=lambda d: d["claimed"] + " / " + d["measured"])
    return f.pivot(index="property", columns="method", values="cell")[list(FEATURES_CLAIMED)]


def formulas_table(res: dict) -> pd.DataFrame:
    """Documented cost per call beside the counts measured at the largest T."""
    t = res["table"][res["table"]["T"] == res["T_max"]]
    rows = []
    for r in t.itertuples():
        f = EXPECTED_FORMULAS.get(r.method, ("?",) * 4)
        rows.append(dict(method=r.method, steps=f[0], JVPs=f[1], VJPs=f[2], HVPs=f[3],
                         measured=f"({r.inner_steps}, {r.jvps}, {r.vjps}, {r.hvps})",
                         expected=str(tuple(r.expected)), match=r.counts_match))
    return pd.DataFrame(rows)


def check_cost_scaling(res: dict, *, linear_memory: tuple = ("rmd",)) -> pd.DataFrame:
    """Every cost counter equals what the estimator's docstring promises, at every T; the
    peak memory of the methods in ``linear_memory`` grows (exponent ≥ 0.5 between the two
    largest T) and that of every other method is flat (exponent < ``flat_exponent``)."""
    rows = []
    for m, df in res["table"].groupby("method", sort=False):
        bad = df[~df["counts_match"]]
        rows.append((f"{m}: (steps, JVPs, VJPs, HVPs) as documented, all T",
                     "ok" if bad.empty else f"T={int(bad['T'].iloc[0])}: measured "
                     f"{tuple(bad[['inner_steps', 'jvps', 'vjps', 'hvps']].iloc[0])}",
                     str(df["expected"].iloc[-1]) + f" at T={int(df['T'].iloc[-1])}", bad.empty))
    flat = res["flat_exponent"]
    for r in res["exponents"].itertuples():
        if r.method in linear_memory:
            rows.append((f"{r.method}: peak memory grows with T", r.memory_exponent, "≥ 0.5",
                         r.memory_exponent >= 0.5))
        else:
            rows.append((f"{r.method}: peak memory flat in T", r.memory_exponent, f"< {flat}",
                         r.memory_exponent < flat))
    return _verdict(rows)


def plot_cost_scaling(res: dict):
    """Products (JVPs + VJPs + HVPs) and peak memory against T, log-log, one line per method."""
    fig, axes = _fig(2, 1, size=(5.0, 4.2))
    a, b = axes[0]
    styles = ["-", "--", ":", "-."]
    markers = "osD^vP*Xh<>"
    for i, (m, df) in enumerate(res["table"].groupby("method", sort=False)):
        kw = dict(color=f"C{i % 10}", ls=styles[i % 4], marker=markers[i % len(markers)], ms=4, label=m)
        if (df["products"] > 0).any():
            a.loglog(df["T"], df["products"].where(df["products"] > 0), **kw)
        b.loglog(df["T"], df["peak_kib"], **kw)
    a.set(xlabel="horizon T (inner steps)", ylabel="JVPs + VJPs + HVPs per call",
          title=f"products per hypergradient\n({res['family']})")
    b.set(xlabel="horizon T (inner steps)", ylabel="peak memory (KiB, live tensors)",
          title="peak memory per\nhypergradient")
    for ax in (a, b):
        _int_ticks(ax, res["table"]["T"].unique())
    _legend(fig, ncols=6)
    return fig
