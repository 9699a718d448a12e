"""Correctness of the estimators against ground truth.

* exact methods (rmd, rmd+checkpoint, fmd, trgu with K = T) vs central finite differences of
  F(α) on three families, and vs the closed form on the quadratic;
* trgu's bias vanishing as K → T;
* greedy: γ → 0 is t1t2, γ = 1 − η is exact on identity-Hessian problems, and the γ → 0
  deviation is linear in γ;
* implicit methods (neumann, cg, hessian-free) vs the exact implicit-function-theorem gradient;
* fg2u-zo → fg2u with the same directions as μ → 0 at the order of its finite-difference scheme,
  also through a numpy black-box solver;
* cost records: operation counts and peak-memory scaling in T.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import metagrad as mg
from metagrad._tree import flatten
from metagrad.tasks import families

from _helpers import fd_hypergrad, rel_err, small_family

FAMILIES = ["quadratic", "hyper_cleaning", "mlp_momentum"]

# (method, options) that are exact hypergradients; "T" is replaced by the horizon.
# Checkpoint values include 1, non-divisors of every small horizon (3 ∤ 20, 8; 7 ∤ 20, 12, 8)
# and T itself (one segment = plain rmd).
EXACT = [
    ("rmd", {}),
    ("rmd", {"checkpoint": 1}),
    ("rmd", {"checkpoint": 3}),
    ("rmd", {"checkpoint": 7}),
    ("rmd", {"checkpoint": "T"}),
    ("fmd", {}),
    ("fmd", {"chunk": 3}),
    ("trgu", {"K": "T"}),
]


def _resolve(options: dict, T: int) -> dict:
    return {k: (T if v == "T" else v) for k, v in options.items()}


def _id(item):
    method, options = item
    return method + "".join(f"-{k}={v}" for k, v in options.items())


_FD_CACHE: dict = {}


def _fd(name: str, device) -> torch.Tensor:
    """Finite-difference hypergradient of the small family, computed once per (family, device)."""
    key = (name, str(device))
    if key not in _FD_CACHE:
        problem, alpha = small_family(name, device)
        _FD_CACHE[key] = fd_hypergrad(problem, alpha)
    return _FD_CACHE[key]


# --------------------------------------------------------------------------------------------
# 1. exact methods
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method_options", EXACT, ids=_id)
@pytest.mark.parametrize("family", FAMILIES)
def test_exact_methods_match_finite_differences(family, method_options, device):
    method, options = method_options
    problem, alpha = small_family(family, device)
    res = mg.hypergrad(problem, alpha, method, **_resolve(options, problem.T))
    assert res.method == method
    for key in alpha:
        assert res.grad[key].shape == alpha[key].shape
        assert res.grad[key].dtype == torch.float64
        assert res.grad[key].device.type == device.type
    assert rel_err(res.grad, _fd(family, device)) <= 1e-6


@pytest.mark.parametrize("method_options", EXACT, ids=_id)
def test_exact_methods_match_quadratic_closed_form(method_options, device):
    method, options = method_options
    problem, alpha = small_family("quadratic", device)
    exact = families.quadratic_exact(problem, alpha)
    res = mg.hypergrad(problem, alpha, method, **_resolve(options, problem.T))
    assert rel_err(res.grad, exact) <= 1e-10


def test_finite_differences_match_quadratic_closed_form():
    """Sanity check of the ground truth itself."""
    problem, alpha = small_family("quadratic")
    assert rel_err(_fd("quadratic", "cpu"), families.quadratic_exact(problem, alpha)) <= 1e-8


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_methods_report_the_outer_loss(family):
    """``Result.loss`` is F(α) = L_val(w_T(α), α) for every method that returns it."""
    from _helpers import outer_value
    problem, alpha = small_family(family)
    value = float(outer_value(problem, alpha))
    for method, options in EXACT + [("greedy", {}), ("t1t2", {}), ("neumann", {}), ("fg2u", {"seed": 0})]:
        res = mg.hypergrad(problem, alpha, method, **_resolve(options, problem.T))
        assert float(res.loss) == pytest.approx(value, rel=1e-12, abs=1e-14), (method, options)


def _minibatch_problem():
    """mlp_momentum with a fresh minibatch schedule (batch size 4 of 10: a new epoch, hence a
    new permutation, every 2 steps). Fresh each call, so no permutation is cached yet."""
    problem, alpha = small_family("mlp_momentum")
    return problem.replace(inner_batches=mg.minibatches(problem.inner_batches, 4, seed=1)), alpha


@pytest.mark.parametrize("method_options", [("rmd", {}), ("rmd", {"checkpoint": 3}), ("fmd", {}),
                                            ("fmd", {"chunk": 5}), ("trgu", {"K": "T"}),
                                            ("fg2u", {"b": 3, "seed": 0})], ids=_id)
def test_exact_methods_with_a_minibatch_schedule(method_options):
    """Each step t must use batch(t) — also when segments are recomputed (checkpointing) and
    when the loop runs under vmap (forward mode), where the schedule draws its permutations."""
    method, options = method_options
    key = ("mlp_momentum-minibatches", "cpu")
    if key not in _FD_CACHE:
        _FD_CACHE[key] = fd_hypergrad(*_minibatch_problem())  # on its own instance
    fd = _FD_CACHE[key]
    problem, alpha = _minibatch_problem()
    res = mg.hypergrad(problem, alpha, method, **_resolve(options, problem.T))
    if method == "fg2u":
        V = mg.fg2u_directions(alpha, 3, seed=0)
        fd = (V @ fd) @ V / 3
    assert rel_err(res.grad, fd) <= 1e-6


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("family", ["quadratic", "mlp_momentum"])
def test_exact_methods_on_the_shortest_horizons(family, T):
    problem, alpha = small_family(family, T=T)
    fd = fd_hypergrad(problem, alpha)
    for method, options in EXACT:
        options = _resolve(options, T)
        if "checkpoint" in options:  # checkpoint must lie in [1, T]
            options["checkpoint"] = min(options["checkpoint"], T)
        res = mg.hypergrad(problem, alpha, method, **options)
        assert rel_err(res.grad, fd) <= 1e-6, (method, options)
    assert rel_err(mg.hypergrad(problem, alpha, "greedy", gamma=1e-12).grad,
                   mg.hypergrad(problem, alpha, "t1t2").grad) <= 1e-10


def test_trgu_bias_vanishes_as_K_reaches_T():
    problem, alpha = small_family("quadratic")
    exact = families.quadratic_exact(problem, alpha)
    errors = [rel_err(mg.hypergrad(problem, alpha, "trgu", K=K).grad, exact)
              for K in range(problem.T + 1)]
    assert errors[-1] <= 1e-10
    assert errors[0] > 0.5  # K = 0 (first-order) is far off on this problem
    # Monotone (this quadratic is symmetric positive definite, so each extra step of the
    # back-propagation adds a same-sign contribution), with a little slack for rounding.
    for K in range(problem.T):
        assert errors[K + 1] <= errors[K] * (1 + 1e-9) + 1e-14, (K, errors)


def test_trgu_K0_is_first_order():
    problem, alpha = small_family("hyper_cleaning")
    a = mg.hypergrad(problem, alpha, "trgu", K=0)
    b = mg.hypergrad(problem, alpha, "fo")
    assert torch.equal(flatten(a.grad), flatten(b.grad))
    assert float(a.loss) == float(b.loss)


# --------------------------------------------------------------------------------------------
# 3. greedy
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["hyper_cleaning", "mlp_momentum"])
def test_greedy_gamma_to_zero_is_t1t2(family, device):
    problem, alpha = small_family(family, device)
    greedy = mg.hypergrad(problem, alpha, "greedy", gamma=1e-12)
    t1t2 = mg.hypergrad(problem, alpha, "t1t2")
    assert rel_err(greedy.grad, t1t2.grad) <= 1e-10
    assert float(greedy.loss) == pytest.approx(float(t1t2.loss), rel=1e-12)


@pytest.mark.parametrize("learned_init", [False, True])
def test_greedy_is_exact_on_identity_hessian(learned_init, device):
    problem, alpha = families.identity_hessian(learned_init=learned_init, device=device)
    eta = problem.optimizer.lr
    greedy = mg.hypergrad(problem, alpha, "greedy", gamma=1 - eta)
    rmd = mg.hypergrad(problem, alpha, "rmd")
    assert rel_err(greedy.grad, rmd.grad) <= 1e-10
    # ...and another γ is not (so the test would catch a γ that is ignored).
    assert rel_err(mg.hypergrad(problem, alpha, "greedy", gamma=0.5).grad, rmd.grad) > 1e-3


@pytest.mark.parametrize("family", ["hyper_cleaning", "mlp_momentum"])
def test_greedy_deviation_from_t1t2_is_linear_in_gamma(family):
    problem, alpha = small_family(family)
    t1t2 = flatten(mg.hypergrad(problem, alpha, "t1t2").grad)
    gammas = np.array([1e-2, 1e-3, 1e-4, 1e-5])
    errs = np.array([float((flatten(mg.hypergrad(problem, alpha, "greedy", gamma=float(g)).grad)
                            - t1t2).norm()) for g in gammas])
    assert (errs > 0).all()
    slope = np.polyfit(np.log(gammas), np.log(errs), 1)[0]
    assert 0.9 <= slope <= 1.1, (slope, errs)


def test_greedy_gamma_one_with_identity_jacobians_sums_all_steps():
    """γ = 1 weights every step's B_t equally. On identity_hessian (Φ(w, α) = w − η(w − Bα),
    L_val = cᵀw, so B_t = ηB and ∇_w L_val = c) that is d(1) = Σ_t ηBᵀc = TηBᵀc."""
    problem, alpha = families.identity_hessian()
    eta, T, d = problem.optimizer.lr, problem.T, problem.outer_batch
    res = mg.hypergrad(problem, alpha, "greedy", gamma=1.0)
    expected = T * eta * d["B"].T @ d["c"]
    assert rel_err(res.grad["a"], expected) <= 1e-12


# --------------------------------------------------------------------------------------------
# 4. implicit methods on a converged, strongly convex inner problem
# --------------------------------------------------------------------------------------------
def _converged_quadratic():
    # η = 0.5 on eigenvalues in [0.5, 1]: contraction 0.75 per step, 0.75^150 ≈ 2e-19.
    problem, alpha = families.quadratic(P=8, N=4, T=150, eta=0.5)
    d = problem.outer_batch
    w_star = torch.linalg.solve(d["A"], d["B"] @ alpha["a"] + d["c"])
    ift = d["lam"] * alpha["a"] + torch.linalg.solve(d["A"], d["B"]).T @ (w_star - d["target"])
    return problem, alpha, w_star, ift


def test_converged_quadratic_is_converged():
    from metagrad import unroll
    problem, alpha, w_star, _ = _converged_quadratic()
    assert float((unroll.run(problem, alpha)[0]["w"] - w_star).norm()) <= 1e-12


def test_neumann_converges_to_ift_gradient():
    problem, alpha, _, ift = _converged_quadratic()
    Ks = [0, 1, 2, 5, 10, 20, 40, 80]
    errors = [rel_err(mg.hypergrad(problem, alpha, "neumann", K=K).grad["a"], ift) for K in Ks]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] <= 1e-6


def test_cg_converges_to_ift_gradient():
    problem, alpha, _, ift = _converged_quadratic()
    P = problem.init["w"].numel()
    errors = [rel_err(mg.hypergrad(problem, alpha, "cg", K=K).grad["a"], ift) for K in range(P + 3)]
    # CG on a P×P SPD system is exact after P iterations (up to rounding).
    assert errors[P] <= 1e-6 and max(errors[P:]) <= 1e-6
    # Decreasing, allowing small non-monotone wiggles (CG minimises the H-norm of the error in
    # x, not the Euclidean error of the hypergradient).
    for k in range(P):
        assert errors[k + 1] <= 1.1 * errors[k], errors
    assert errors[P // 2] < 0.1 * errors[0]


def test_hessian_free_is_neumann_with_K0():
    problem, alpha, _, _ = _converged_quadratic()
    hf = mg.hypergrad(problem, alpha, "hessian-free")
    n0 = mg.hypergrad(problem, alpha, "neumann", K=0)
    assert rel_err(hf.grad, n0.grad) <= 1e-12
    hf = mg.hypergrad(problem, alpha, "hessian-free", eta=0.3)
    n0 = mg.hypergrad(problem, alpha, "neumann", K=0, eta=0.3)
    assert rel_err(hf.grad, n0.grad) <= 1e-12


def test_implicit_on_unconverged_problem_is_biased():
    """Implicit methods assume w_T = w*: on a short horizon they must not agree with rmd."""
    problem, alpha = small_family("quadratic", T=3)
    exact = families.quadratic_exact(problem, alpha)
    assert rel_err(mg.hypergrad(problem, alpha, "cg", K=20).grad, exact) > 1e-2


# --------------------------------------------------------------------------------------------
# 2 (device part). fg2u on every device: same directions give the same estimate as the exact
# gradient projected on them.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_fg2u_equals_projection_of_exact_gradient(family, device):
    problem, alpha = small_family(family, device)
    V = mg.fg2u_directions(alpha, 5, seed=3)
    assert V.device.type == device.type and V.dtype == torch.float64
    res = mg.hypergrad(problem, alpha, "fg2u", directions=V)
    g = _fd(family, device)
    expected = (V @ g) @ V / V.shape[0]
    assert rel_err(res.grad, expected) <= 1e-6
    # seeds are reproducible, and the seed path draws fg2u_directions(alpha, b, seed)
    res2 = mg.hypergrad(problem, alpha, "fg2u", b=5, seed=3)
    assert rel_err(res2.grad, res.grad) <= 1e-12


@pytest.mark.parametrize("chunk,vectorize", [(None, True), (2, True), (None, False)])
def test_fg2u_chunking_and_loop_agree(chunk, vectorize):
    problem, alpha = small_family("mlp_momentum")
    V = mg.fg2u_directions(alpha, 5, seed=1)
    ref = mg.hypergrad(problem, alpha, "fg2u", directions=V)
    res = mg.hypergrad(problem, alpha, "fg2u", directions=V, chunk=chunk, vectorize=vectorize)
    assert rel_err(res.grad, ref.grad) <= 1e-12


def test_fg2u_accepts_directions_as_a_tree():
    problem, alpha = small_family("mlp_momentum")
    V = mg.fg2u_directions(alpha, 3, seed=0)
    from metagrad._tree import unflatten
    tree = unflatten(V, alpha)  # leading batch dimension of 3
    assert rel_err(mg.hypergrad(problem, alpha, "fg2u", directions=tree).grad,
                   mg.hypergrad(problem, alpha, "fg2u", directions=V).grad) <= 1e-12


# --------------------------------------------------------------------------------------------
# 5. fg2u-zo
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme,mus,order", [
    ("forward", [1e-1, 1e-2, 1e-3, 1e-4], 1.0),
    # central: stay above the rounding floor (ε·|F|/μ ≈ 1e-13 at μ = 1e-3, error ≈ 1e-8 there)
    ("central", [1e-1, 3e-2, 1e-2, 3e-3, 1e-3], 2.0),
])
@pytest.mark.parametrize("family", ["hyper_cleaning", "mlp_momentum"])  # F is not quadratic in α
def test_fg2u_zo_converges_to_fg2u_at_scheme_order(family, scheme, mus, order):
    problem, alpha = small_family(family)
    V = mg.fg2u_directions(alpha, 3, seed=0)
    exact = flatten(mg.hypergrad(problem, alpha, "fg2u", directions=V).grad)
    errs = [float((flatten(mg.hypergrad(problem, alpha, "fg2u-zo", directions=V, mu=mu,
                                        scheme=scheme).grad) - exact).norm()) for mu in mus]
    slope = np.polyfit(np.log(mus), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.3, (slope, errs)
    assert all(b < a for a, b in zip(errs, errs[1:])), errs


def test_fg2u_zo_solve_counts_match_scheme():
    problem, alpha = small_family("quadratic", T=5)
    fwd = mg.hypergrad(problem, alpha, "fg2u-zo", b=4, seed=0, scheme="forward")
    cen = mg.hypergrad(problem, alpha, "fg2u-zo", b=4, seed=0, scheme="central")
    assert fwd.cost.inner_steps == (4 + 1) * problem.T  # b + 1 inner runs
    assert cen.cost.inner_steps == (2 * 4 + 1) * problem.T  # 2b runs + F(α) for the loss


def _numpy_quadratic_black_box(problem):
    """The quadratic family's inner SGD loop in numpy: autograd cannot see through it."""
    d = problem.outer_batch
    A, B, c = (d[k].numpy() for k in ("A", "B", "c"))
    eta, T = problem.optimizer.lr, problem.T
    w0 = problem.init["w"].numpy()

    def solve(alpha):
        a = alpha["a"].detach().cpu().numpy()
        w = w0.copy()
        for _ in range(T):
            w = w - eta * (A @ w - (B @ a + c))
        return {"w": torch.from_numpy(w)}

    return mg.BlackBoxProblem(solve=solve, outer_loss=problem.outer_loss, outer_batch=d)


@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_fg2u_zo_black_box_matches_bilevel_problem(scheme):
    problem, alpha = small_family("quadratic")
    black_box = _numpy_quadratic_black_box(problem)
    V = mg.fg2u_directions(alpha, 6, seed=2)
    mu = 1e-4
    bb = mg.hypergrad(black_box, alpha, "fg2u-zo", directions=V, mu=mu, scheme=scheme)
    ref = mg.hypergrad(problem, alpha, "fg2u-zo", directions=V, mu=mu, scheme=scheme)
    # Same finite differences of the same F, up to rounding in the two loops (÷ μ).
    assert rel_err(bb.grad, ref.grad) <= 1e-8
    assert float(bb.loss) == pytest.approx(float(ref.loss), rel=1e-12)
    assert bb.cost.solver_calls == (V.shape[0] + 1 if scheme == "forward" else 2 * V.shape[0] + 1)
    assert bb.cost.inner_steps == 0
    # And both are close to the exact fg2u estimate with these directions (F is quadratic in α,
    # so the central scheme is exact up to rounding and the forward one is off by O(μ)).
    exact = mg.hypergrad(problem, alpha, "fg2u", directions=V)
    assert rel_err(bb.grad, exact.grad) <= (1e-8 if scheme == "central" else 1e-3)


def test_black_box_problem_rejects_methods_that_need_autograd():
    problem, alpha = small_family("quadratic")
    black_box = _numpy_quadratic_black_box(problem)
    assert "fg2u-zo" in mg.available_methods(black_box=True)
    assert "rmd" not in mg.available_methods(black_box=True)
    with pytest.raises(mg.ConfigError, match=r"needs a differentiable BilevelProblem.*fg2u-zo"):
        mg.hypergrad(black_box, alpha, "rmd")


# --------------------------------------------------------------------------------------------
# 8. cost records
# --------------------------------------------------------------------------------------------
def test_cost_counts_are_as_documented():
    problem, alpha = small_family("hyper_cleaning")  # no learned initialisation
    T, N = problem.T, flatten(alpha).numel()

    c = mg.hypergrad(problem, alpha, "rmd").cost
    assert (c.vjps, c.inner_steps, c.jvps, c.outer_grads) == (T, T, 0, 1)
    c = mg.hypergrad(problem, alpha, "rmd", checkpoint=5).cost  # segments 0-5, 5-10, 10-12
    assert c.vjps == T
    assert c.inner_steps == T + 10  # forward to the last segment start, then every step taped
    c = mg.hypergrad(problem, alpha, "trgu", K=4).cost
    assert (c.vjps, c.inner_steps) == (4, T)
    c = mg.hypergrad(problem, alpha, "greedy", gamma=0.5).cost
    assert (c.vjps, c.inner_steps, c.outer_grads) == (T, T, T)  # the last one also gives F, ∇_α
    c = mg.hypergrad(problem, alpha, "t1t2").cost
    assert (c.vjps, c.inner_steps) == (1, T)
    c = mg.hypergrad(problem, alpha, "fg2u", b=3, seed=0).cost
    assert (c.jvps, c.vjps, c.inner_steps) == (T * 3, 0, T)
    c = mg.hypergrad(problem, alpha, "fmd").cost
    assert c.jvps == T * N
    c = mg.hypergrad(problem, alpha, "fmd", chunk=4).cost  # 3 passes of 4, 4, 2 directions
    assert (c.jvps, c.inner_steps) == (T * N, 3 * T)
    for K in (0, 3, 7):
        c = mg.hypergrad(problem, alpha, "neumann", K=K).cost
        assert (c.hvps, c.inner_steps, c.vjps) == (K + 1, T, 0)
    c = mg.hypergrad(problem, alpha, "hessian-free").cost
    assert c.hvps == 1
    c = mg.hypergrad(problem, alpha, "cg", K=3).cost
    assert c.hvps == 4
    c = mg.hypergrad(problem, alpha, "fo").cost
    assert (c.inner_steps, c.outer_grads, c.vjps) == (T, 1, 0)
    assert c.wall_time_s > 0
    assert c.peak_memory_bytes is None and c.memory_method is None  # not tracked by default on CPU


def test_cost_as_dict_round_trips():
    c = mg.hypergrad(*small_family("quadratic"), "rmd").cost
    d = c.as_dict()
    assert d["vjps"] == c.vjps and set(d) >= {"inner_steps", "jvps", "vjps", "hvps", "wall_time_s"}


@pytest.mark.slow
def test_peak_memory_grows_with_T_for_rmd_but_not_fg2u():
    """rmd stores the trajectory (O(T·P)); fg2u carries tangents only (O(b·P), flat in T)."""
    peaks = {}
    for T in (10, 150):
        problem, alpha = families.hyper_cleaning(n_train=40, n_val=20, d=50, C=10, T=T)
        for method, options in (("rmd", {}), ("fg2u", {"b": 2, "seed": 0})):
            cost = mg.hypergrad(problem, alpha, method, track_memory=True, **options).cost
            assert cost.memory_method == "live-tensors"
            assert cost.peak_memory_bytes > 0
            peaks[method, T] = cost.peak_memory_bytes
    assert peaks["rmd", 150] / peaks["rmd", 10] > 5, peaks
    assert peaks["fg2u", 150] / peaks["fg2u", 10] < 1.5, peaks
