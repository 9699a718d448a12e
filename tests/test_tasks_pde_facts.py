"""The PDE page's computed prose (ours against the paper's, the drift of ν) follows the numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metagrad.tasks import pde_facts as F
from metagrad.tasks.pde import PAPER_TABLE


def _summary(scale_pinn: dict, scale_num: dict) -> pd.DataFrame:
    """Our errors as multiples of the paper's, per (equation, solver)."""
    p = PAPER_TABLE.set_index(["equation", "solver"])
    rows = []
    for solver, scale in (("pinn", scale_pinn), ("spectral", scale_num)):
        for eq, (f_nu, f_u) in scale.items():
            rows.append({"equation": eq, "solver": solver, "n": 5,
                         "eps_nu": f_nu * p.loc[(eq, solver), "eps_nu_e2"] / 100, "eps_nu_ci": 0.0,
                         "eps_u": f_u * p.loc[(eq, solver), "eps_u_e3"] / 1000, "eps_u_ci": 0.0})
    return pd.DataFrame(rows)


def test_paper_ratios_are_ours_over_the_papers_in_its_units():
    r = F.paper_ratios(_summary({"kdv": (2.0, 0.5)}, {"kdv": (0.1, 0.2)})).set_index(["equation", "solver"])
    assert r.loc[("kdv", "pinn"), "ratio_nu"] == pytest.approx(2.0)
    assert r.loc[("kdv", "spectral"), "ratio_u"] == pytest.approx(0.2)


def test_pinn_sentence_words_each_ratio():
    s = _summary({"burgers": (0.5, 2.0), "allen_cahn": (1.0, 30.0)}, {"burgers": (0.1, 0.1)})
    text = F.pinn_vs_paper_md(F.paper_ratios(s))
    assert "Burgers: ε_ν 0.5× the paper's (of the same order), ε_u 2× the paper's (of the same order)" in text
    assert "Allen–Cahn: ε_ν 1× the paper's (of the same order), ε_u 30× the paper's (larger)" in text


def test_numerical_sentence_finds_the_largest_ratio_and_the_worst_equation():
    s = _summary({}, {"burgers": (0.5, 0.2), "kdv": (0.1, 0.9)})
    text = F.numerical_vs_paper_md(F.paper_ratios(s), s, n_modes=512)
    assert "*smaller* than the paper's on every equation" in text and "0.9× the paper's (KdV, ε_u)" in text
    assert "Burgers keeps our largest ε_ν" in text and "512 Fourier modes" in text
    s = _summary({}, {"burgers": (0.01, 0.2), "kdv": (1.5, 0.9)})
    text = F.numerical_vs_paper_md(F.paper_ratios(s), s, n_modes=512)
    assert "not all smaller" in text and "KdV's ε_ν is 1.5× the paper's" in text
    assert "KdV keeps our largest ε_ν" in text and "shock" not in text


def _traj(nus_by_seed: dict, nu_true: float = 1.0) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"equation": "kdv", "solver": "pinn", "seed": seed, "step": np.arange(len(nus)),
                                    "nu": nus, "nu_ratio": np.asarray(nus) / nu_true})
                      for seed, nus in nus_by_seed.items()], ignore_index=True)


def test_drift_measures_the_last_tenth_and_the_direction():
    moving = _traj({0: list(np.linspace(1.0, 2.0, 11)), 1: list(np.linspace(3.0, 1.5, 11))})
    d = F.drift(moving).set_index("seed")
    assert d.loc[0, "change"] == pytest.approx(2.0 / 1.9 - 1) and d.loc[0, "away"]
    assert d.loc[1, "change"] == pytest.approx(abs(1.5 / 1.65 - 1)) and not d.loc[1, "away"]
    text = F.drift_md(F.drift(moving))
    assert "KdV" in text and "(1 of 2 runs moving away from the truth)" in text and "has not settled" in text
    flat = _traj({0: [2.0] * 11, 1: [0.5] * 11})
    assert "has settled (less than 1 %) on every equation" in F.drift_md(F.drift(flat))


def test_pinn_vs_numerical_takes_the_smallest_ratio_and_the_papers():
    # PINN errors equal to the paper's, numerical errors 10× smaller than the paper's
    s = _summary({"kdv": (1.0, 1.0), "burgers": (1.0, 1.0)}, {"kdv": (0.1, 0.1), "burgers": (0.1, 0.1)})
    text = F.pinn_vs_numerical_md(s)
    # paper's smallest PINN / numerical ratios over Burgers and KdV: ε_ν 94.40/0.72 (KdV), ε_u 832.81/2.72 (KdV)
    assert f"at least {94.40 / 0.72:,.0f}× and {832.81 / 2.72:,.0f}×" in text
    assert text.startswith("orders of magnitude worse than") and f"at least {10 * 94.40 / 0.72:,.0f}× its ε_ν" in text
    close = _summary({"kdv": (0.001, 0.001)}, {"kdv": (1.0, 1.0)})
    assert F.pinn_vs_numerical_md(close).startswith("not worse everywhere than")
