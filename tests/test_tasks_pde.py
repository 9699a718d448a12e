"""PDE parameter discovery (metagrad.tasks.pde): the two inner solvers and their hypergradients.

* the pseudo-spectral solver against the reference files at the true ν (coarse grids), and
  its own convergence (no data needed);
* the Taylor-mode PINN derivatives against nested autograd;
* fg2u-zo on the black-box solver against a central difference of the same objective;
* fg2u on the unrolled PINN training with the coordinate direction (= exact for N = 1) against rmd;
* a few outer steps move ν toward the truth; an end-to-end tiny run is cached and reloaded.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import grad

import metagrad as mg
from metagrad.data.paths import DataNotFoundError
from metagrad.data.pde import PDE_SPECS, load_pde
from metagrad.loops import OuterConfig, outer_loop
from metagrad.tasks import pde
from metagrad.tasks.pde_solvers import spectral_solve, pinn_init, pinn_fields, pinn_residual


def _have_data() -> bool:
    try:
        load_pde("kdv")
        return True
    except DataNotFoundError:
        return False


needs_data = pytest.mark.skipif(not _have_data(), reason="PDE reference files not found (set METAGRAD_DATA)")


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


# ------------------------------------------------------------------ the numerical solver

@needs_data
@pytest.mark.parametrize("equation, n, tol, away", [
    # KdV is smooth at this resolution: spectral accuracy on the whole grid (measured 1.3e-5).
    ("kdv", 128, 1e-4, 0.0),
    # Allen–Cahn's interfaces (width ~ sqrt(2ν/5) ≈ 0.006) are just resolved by 256 modes
    # (measured 1.4e-4; with the reference's own 512 modes the error drops to ~1e-9).
    ("allen_cahn", 256, 1e-3, 0.0),
    # Burgers forms a shock of width ~ν ≈ 0.003 at x = 0, unresolved by 256 modes (dx = 0.008):
    # the Gibbs error is confined near x = 0; away from it (|x| > 0.2) we measure ~1e-3.
    ("burgers", 256, 1e-2, 0.2),
])
def test_spectral_solver_matches_reference(equation, n, tol, away):
    sol = load_pde(equation)
    x, t, u = sol.x.numpy(), sol.t.numpy(), sol.u.numpy()
    U = spectral_solve(equation, sol.nu, x, t, n=n, dt=5e-3)
    keep = np.abs(x) > away
    assert _rel(U[keep], u[keep]) < tol


def test_spectral_solver_converges_without_data():
    """Doubling the modes and halving dt changes a smooth KdV solution by < 1e-5 (measured
    2.7e-6, the O(dt⁴) time-stepping error; the spatial error is ~1e-12 here)."""
    x, t = np.linspace(-1, 1, 33), np.array([0.0, 0.25, 0.5])
    coarse = spectral_solve("kdv", 0.0025, x, t, n=128, dt=5e-3)
    fine = spectral_solve("kdv", 0.0025, x, t, n=256, dt=2.5e-3)
    assert np.allclose(coarse[:, 0], np.cos(np.pi * x), atol=1e-12)  # the initial condition
    assert _rel(coarse, fine) < 1e-5


def test_reference_fallback_has_the_files_grid():
    sol, source = pde.reference_solution("kdv", "solver", modes=64, dt=5e-3)
    assert source == "solver" and sol.u.shape == (512, 201) and sol.nu == PDE_SPECS["kdv"][4]
    assert pde._obs_batch(sol, "cpu", torch.float64)["u"].shape == (64,)


# ------------------------------------------------------------------ PINN derivatives

@pytest.mark.parametrize("equation", ["burgers", "allen_cahn", "kdv"])
def test_pinn_fields_match_autograd(equation, device):
    w = pinn_init(5, 2, seed=3, device=device)
    x = torch.linspace(-0.9, 0.9, 4, dtype=torch.float64, device=device)
    t = torch.linspace(0.1, 0.8, 4, dtype=torch.float64, device=device)
    F = pinn_fields(w, x, t, order=3)
    u = lambda xi, ti: pinn_fields(w, xi.reshape(1), ti.reshape(1))[0, 0]
    for i in range(4):
        xi, ti = x[i], t[i]
        assert torch.allclose(F[0, i], u(xi, ti), atol=1e-12)
        assert torch.allclose(F[1, i], grad(u, argnums=1)(xi, ti), atol=1e-10)
        assert torch.allclose(F[2, i], grad(u)(xi, ti), atol=1e-10)
        assert torch.allclose(F[3, i], grad(grad(u))(xi, ti), atol=1e-10)
        assert torch.allclose(F[4, i], grad(grad(grad(u)))(xi, ti), atol=1e-9)
    r = pinn_residual(equation, F, torch.tensor(0.01, dtype=torch.float64, device=device))
    assert r.shape == (4,) and torch.isfinite(r).all()


# ------------------------------------------------------------------ hypergradients

def _small_obs(equation: str, device="cpu"):
    sol, _ = pde.reference_solution(equation, "auto", modes=128, dt=5e-3)
    return sol, pde._obs_batch(sol, device, torch.float64)


def test_fg2u_zo_on_black_box_matches_central_difference():
    sol, obs = _small_obs("kdv")
    problem = pde.spectral_problem("kdv", obs, n_modes=64, dt=1e-2)
    a = math.log(1.3 * sol.nu)
    F = lambda la: float(problem.outer_loss(problem.solve(pde._alpha(la, "cpu", torch.float64)), None,
                                            problem.outer_batch))
    h = 1e-3
    fd = (F(a + h) - F(a - h)) / (2 * h)
    alpha = pde._alpha(a, "cpu", torch.float64)
    fwd = mg.hypergrad(problem, alpha, "fg2u-zo", b=1, mu=1e-4, seed=0)
    central = mg.hypergrad(problem, alpha, "fg2u-zo", b=1, mu=1e-4, scheme="central", seed=0)
    flipped = mg.hypergrad(problem, alpha, "fg2u-zo", b=1, mu=1e-4, scheme="central",
                           directions=torch.tensor([[-1.0]], dtype=torch.float64))
    g = lambda r: float(r.grad["log_nu"][0])
    # forward difference: bias μ/2·F'' (relative ~1e-4 here); central: O(μ²) + O(h²) of the reference
    assert abs(g(fwd) - fd) < 2e-3 * abs(fd)
    assert abs(g(central) - fd) < 1e-5 * abs(fd)
    assert abs(g(flipped) - g(central)) < 1e-6 * abs(fd)  # N = 1: (∇F·v) v does not depend on the sign
    # forward: F(α), F(α + μv); central: F(α ± μv) and F(α) for the reported loss
    assert fwd.cost.solver_calls == 2 and central.cost.solver_calls == 3


@pytest.mark.parametrize("equation", ["burgers", "kdv"])
def test_pinn_fg2u_coordinate_direction_equals_rmd(equation, device):
    sol, obs = _small_obs(equation, device)
    cfg = pde.PDEConfig(width=6, depth=2, T=6, n_collocation=24, n_initial=8, n_boundary=4, inner_lr=1e-2)
    problem = pde.pinn_problem(equation, obs, cfg, seed=0)
    alpha = pde._alpha(math.log(2 * sol.nu), device, torch.float64)
    exact = mg.hypergrad(problem, alpha, "rmd").grad["log_nu"]
    est = mg.hypergrad(problem, alpha, "fg2u", b=1, distribution="coordinate", seed=0).grad["log_nu"]
    assert exact.device.type == torch.device(device).type
    assert torch.allclose(est, exact, rtol=1e-8, atol=1e-14), (est, exact)
    assert float(exact.abs()) > 0


def test_a_few_outer_steps_move_nu_toward_the_truth():
    sol, obs = _small_obs("kdv")
    problem = pde.spectral_problem("kdv", obs, n_modes=64, dt=1e-2)
    alpha0 = pde._alpha(math.log(2 * sol.nu), "cpu", torch.float64)
    outer = OuterConfig("fg2u-zo", {"b": 1, "mu": 1e-4}, steps=5, lr=0.1, eval_every=1)
    hist = outer_loop(lambda step: problem, alpha0, outer, progress=False,
                      evaluate=lambda a: {"nu": math.exp(float(a["log_nu"][0]))})
    gaps = [abs(math.log(2.0))] + [abs(math.log(r["nu"] / sol.nu)) for r in hist.records]
    assert all(b < a for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.5 * gaps[0]


def test_tiny_experiment_runs_and_is_cached(tmp_path):
    cfg = pde.PDEConfig(scale="test", equations=("kdv",), seeds=(0,), reference="solver", reference_modes=64,
                        steps_spectral=3, n_modes=64, steps_pinn=2, width=4, T=3, n_collocation=16,
                        n_initial=8, n_boundary=4, results_dir=str(tmp_path / "results"),
                        checkpoint_dir=str(tmp_path / "ckpt"))
    res = pde.run_experiment(cfg)
    again = pde.run_experiment(cfg)
    assert res.runs.drop(columns=["time_inner_solve_s", "time_hypergrad_s", "outer_wall_s"]).equals(
        again.runs.drop(columns=["time_inner_solve_s", "time_hypergrad_s", "outer_wall_s"]))
    assert set(res.table()["solver"]) == {"numerical + (FG)²U-ZO", "PINN + (FG)²U"}
    assert len(list((tmp_path / "results" / "test").glob("*.json"))) == 3
    assert res.trajectories.groupby("solver")["step"].max().to_dict() == {"pinn": 2, "spectral": 3}
    assert set(res.headline()) >= {"eps_nu_num_max", "eps_nu_pinn_min", "solver_error_max"}
