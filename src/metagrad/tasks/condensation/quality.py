"""Data condensation: the gradient-quality and two-phase experiments."""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ..._tree import flatten, tree_numel
from ...errors import check
from ...estimators import hypergrad
from ...estimators.forward import directional_derivatives, fg2u_directions
from ...cost import Cost
from ...results import cached

from .setup import Phase, Setup, load_data
from .run import _checkpoint_dir, _history, _run_phases, _slug, condense
from .model import _mix, evaluate, initial_images, make_problem

# ------------------------------------------------------------------------------ gradient quality
def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v / (u.norm() * v.norm()).clamp_min(1e-30))


def fg2u_expected_cosine(N: int, b: int) -> float:
    r"""Expected cosine of (FG)²U (Rademacher, b directions) with the true gradient in N dimensions.

    Write each direction as :math:`v_i = z_i u + v_i^\perp` with :math:`u = \nabla F/\|\nabla F\|`.
    Then :math:`\hat g = \|\nabla F\| (A u + \frac1b\sum_i z_i v_i^\perp)` with
    :math:`A = \frac1b\sum_i z_i^2`, and for N ≫ b the noise has squared norm
    :math:`\frac{N-1}{b} A` (Lemma 3.1 in expectation), so
    :math:`\cos = (1 + \frac{N-1}{bA})^{-1/2}`. With :math:`z_i` ≈ standard normal (the
    Rademacher sum :math:`u\cdot v_i` of many small terms), :math:`bA \sim \chi^2_b`; the mean is
    computed by quadrature. To first order (A = 1): :math:`(1 + \frac{N-1}{b})^{-1/2}`."""
    from scipy import stats
    return float(stats.chi2(b).expect(lambda x: 1.0 / math.sqrt(1.0 + (N - 1) / max(x, 1e-300))))


def _measure(problem, alpha, method, options, repeats):
    """Cost counts, best-of-``repeats`` wall time and (separately) peak memory of one call."""
    times, res = [], None
    for _ in range(repeats):
        res = hypergrad(problem, alpha, method, **options)
        times.append(res.cost.wall_time_s)
    mem = hypergrad(problem, alpha, method, track_memory=True, **options).cost
    c = res.cost
    return {"jvps": c.jvps, "vjps": c.vjps, "hvps": c.hvps, "inner_steps": c.inner_steps,
            "products": c.jvps + c.vjps + c.hvps, "wall_time_s": min(times),
            "peak_memory_bytes": mem.peak_memory_bytes, "memory_method": mem.memory_method}


def gradient_quality(setup: Setup, estimators: dict, *, seed: int = 0, steps: int = 40, lr: float = 1e-2,
                     checkpoints=(0, 20, 40), problems: int = 2, fg2u_b=(1, 4, 16, 64),
                     directions: int = 64, chunk: int = 16, timing_repeats: int = 2,
                     out_dir: str | Path = "results/fg2u_gradient_quality/smoke",
                     progress: bool = False) -> dict:
    """How close each estimator is to the exact hypergradient, and what it costs.

    A condensation run with the exact gradient (``rmd``, ``steps`` outer steps, Adam ``lr``)
    gives α at the outer steps ``checkpoints``. At each, for ``problems`` freshly drawn inner
    problems (net init and real batch of the next outer steps), the exact gradient g (``rmd``)
    is compared with every estimator in ``estimators`` (label → ``{"method", "options"}``) by
    the cosine similarity. (FG)²U: ``directions`` Rademacher directions are pushed through the
    loop once (:func:`~metagrad.estimators.forward.directional_derivatives`); for each b in
    ``fg2u_b`` the directions are cut into ``directions // b`` disjoint groups, each an
    independent (FG)²U estimate with b directions. Costs (counts, best-of-``timing_repeats``
    wall time, peak memory with ``track_memory=True``) are measured at the first checkpoint,
    (FG)²U with ``chunk=min(b, chunk)`` directions vectorised at once.

    Cached in ``out_dir/quality.json``; returns DataFrames ``cosines`` (one row per estimate:
    checkpoint, problem, estimator, b, cos, and the relative error of the forward-mode
    directional derivatives against ``V @ g``), ``costs`` and ``trajectory``, and ``N``, ``P``.
    """
    check(all(0 <= c <= steps for c in checkpoints),
          f"checkpoints {checkpoints} must lie in [0, steps={steps}]")
    check(max(fg2u_b) <= directions, f"directions ({directions}) must be >= max(fg2u_b) ({max(fg2u_b)})")
    config = {"setup": asdict(setup), "estimators": estimators, "seed": seed, "steps": steps, "lr": lr,
              "checkpoints": list(checkpoints), "problems": problems, "fg2u_b": list(fg2u_b),
              "directions": directions, "chunk": chunk, "timing_repeats": timing_repeats}
    out_dir = Path(out_dir)

    def compute():
        data = load_data(setup)
        snap_every = math.gcd(*[c for c in checkpoints if c > 0] or [steps])
        records, _ = _run_phases(setup, data, [Phase("rmd", steps, {}, lr)], seed,
                                 evaluate_fn=lambda a: {"snapshot": a["images"].clone()},
                                 eval_every=snap_every, checkpoint_dir=_checkpoint_dir(out_dir),
                                 progress=progress)
        snaps = {0: initial_images(setup, data, seed)}
        snaps.update({r["step"]: {"images": r["snapshot"]} for r in records if "snapshot" in r})
        cos_rows, cost_rows = [], []
        for c in checkpoints:
            alpha = snaps[c]
            for p in range(problems):
                problem = make_problem(setup, data, seed, c + p)
                exact = hypergrad(problem, alpha, "rmd")
                g = flatten(exact.grad)
                V = fg2u_directions(alpha, directions, seed=_mix(seed, c, p, 5))
                _, s = directional_derivatives(problem, alpha, V, Cost(), chunk=chunk)
                where = {"checkpoint": c, "problem": p,
                         "jvp_rel_err": float((s - V @ g).abs().max() / (V @ g).abs().max())}
                for label, est in estimators.items():
                    r = hypergrad(problem, alpha, est["method"], **est.get("options", {}))
                    cos_rows.append({**where, "estimator": label, "b": 0,
                                     "cos": [round(_cos(flatten(r.grad), g), 6)]})
                for b in fg2u_b:  # directions // b independent estimates with b directions each
                    cos_rows.append({**where, "estimator": "(FG)²U", "b": b, "cos": [
                        round(_cos(s[j * b:(j + 1) * b] @ V[j * b:(j + 1) * b] / b, g), 6)
                        for j in range(directions // b)]})
                if c == checkpoints[0] and p == 0:
                    cost_rows.append({"estimator": "RGU (full)", "b": 0,
                                      **_measure(problem, alpha, "rmd", {}, timing_repeats)})
                    for label, est in estimators.items():
                        cost_rows.append({"estimator": label, "b": 0, **_measure(
                            problem, alpha, est["method"], est.get("options", {}), timing_repeats)})
                    for b in fg2u_b:
                        cost_rows.append({"estimator": "(FG)²U", "b": b, **_measure(
                            problem, alpha, "fg2u", {"b": b, "chunk": min(b, chunk), "seed": 0},
                            timing_repeats)})
        alpha0 = snaps[checkpoints[0]]
        return {"cosines": cos_rows, "costs": cost_rows, "N": tree_numel(alpha0),
                "P": tree_numel(make_problem(setup, data, seed, 0).init),
                "trajectory": _history(records)["history"]}
    payload = cached(out_dir / "quality.json", config, compute)
    res = payload["result"]
    cosines = pd.DataFrame(res["cosines"]).explode("cos", ignore_index=True).astype({"cos": float})
    return {"cosines": cosines, "costs": pd.DataFrame(res["costs"]),
            "trajectory": pd.DataFrame(res["trajectory"]), "N": res["N"], "P": res["P"],
            "provenance": payload["provenance"]}


# ------------------------------------------------------------------------------ two-phase
def two_phase_schedules(cheap: dict, fg2u: dict, *, fg2u_steps: int, cheap_per_fg2u: float,
                        switch: float, lr: float) -> dict[str, list[Phase]]:
    """The three schedules at one budget B = the wall-clock of ``fg2u_steps`` (FG)²U steps,
    given that one (FG)²U step costs as much as ``cheap_per_fg2u`` cheap steps:
    cheap alone (B in cheap steps), (FG)²U alone, and cheap for a fraction ``switch`` of B
    followed by (FG)²U for the rest."""
    check(0 < switch < 1, f"switch must be in (0, 1), got {switch!r}")
    check(cheap_per_fg2u > 0, f"cheap_per_fg2u must be > 0, got {cheap_per_fg2u!r}")
    c = (cheap["method"], dict(cheap.get("options", {})))
    f = (fg2u["method"], dict(fg2u.get("options", {})))
    n_cheap = max(1, round(switch * cheap_per_fg2u * fg2u_steps))
    n_fg2u = max(1, fg2u_steps - round(switch * fg2u_steps))
    name = cheap.get("label", cheap["method"])
    return {f"{name} alone": [Phase(c[0], max(1, round(cheap_per_fg2u * fg2u_steps)), c[1], lr)],
            "(FG)²U alone": [Phase(f[0], fg2u_steps, f[1], lr)],
            f"{name} → (FG)²U": [Phase(c[0], n_cheap, c[1], lr), Phase(f[0], n_fg2u, f[1], lr)]}


def schedule_table(schedules: dict[str, list[Phase]]) -> pd.DataFrame:
    """One row per schedule: its phases in words and its number of outer steps."""
    return pd.DataFrame([{"schedule": name,
                          "phases": " + ".join(f"{p.steps} × {p.method}" for p in phases),
                          "outer steps": sum(p.steps for p in phases)}
                         for name, phases in schedules.items()])


def two_phase(setup: Setup, cheap: dict, fg2u: dict, *, fg2u_steps: int = 20,
              cheap_per_fg2u: float = 4.0, switch: float = 0.5, lr: float = 1e-2, seeds=(0, 1),
              eval_every: int = 10,
              out_dir: str | Path = "results/fg2u_two_phase/smoke", progress: bool = False) -> dict:
    """Quality against wall-clock for the schedules of :func:`two_phase_schedules`.

    Every (schedule, seed) is a cached :func:`condense` run with test accuracy every
    ``eval_every`` outer steps of a phase and at the end of each phase. Returns DataFrames
    ``runs`` (one row per run: final accuracies, measured wall time, steps), ``evals`` (the
    evaluation points with their wall-clock, α₀ at step 0) and ``losses`` (the per-step outer
    loss), and the ``schedules``."""
    schedules = two_phase_schedules(cheap, fg2u, fg2u_steps=fg2u_steps, cheap_per_fg2u=cheap_per_fg2u,
                                    switch=switch, lr=lr)
    out_dir, data = Path(out_dir), None
    runs, evals, losses = [], [], []

    def loaded():
        nonlocal data
        data = load_data(setup) if data is None else data
        return data
    start = {seed: cached(out_dir / f"{setup.dataset}_ipc{setup.ipc}_alpha0_seed{seed}.json",
                          {"setup": asdict(setup), "seed": seed, "what": "alpha0"},
                          lambda: evaluate(setup, loaded(), initial_images(setup, loaded(), seed),
                                           seed))["result"]
             for seed in seeds}
    for label, phases in schedules.items():
        for seed in seeds:
            cfg = {"setup": asdict(setup), "seed": seed, "phases": [asdict(p) for p in phases],
                   "eval_every": eval_every}

            def compute(phases=phases, seed=seed):
                return condense(setup, phases, seed, data=loaded(), eval_every=eval_every,
                                checkpoint_dir=_checkpoint_dir(out_dir), progress=progress)
            r = cached(out_dir / f"{setup.dataset}_ipc{setup.ipc}_{_slug(label)}_seed{seed}.json", cfg,
                       compute)["result"]
            runs.append({"schedule": label, "seed": seed, "test_acc": 100 * r["test_acc"],
                         "test_acc_T": 100 * r["test_acc_T"], "outer_loss": r["outer_loss"],
                         "wall_time_s": r["wall_time_s"], "steps": r["steps"],
                         "phases": schedule_table({label: phases}).phases.iloc[0]})
            evals += [{"schedule": label, "seed": seed, "step": 0, "wall_time_s": 0.0, "phase": 0,
                       **start[seed]}] + [{"schedule": label, "seed": seed, **e} for e in r["evals"]]
            h = r["history"]
            losses += [{"schedule": label, "seed": seed, "step": s, "outer_loss": v, "wall_time_s": t}
                       for s, v, t in zip(h["step"], h["outer_loss"], h["wall_time_s"])]
    evals = pd.DataFrame(evals)
    for k in ("test_acc", "test_acc_T"):
        evals[k] = 100 * evals[k]
    return {"runs": pd.DataFrame(runs), "evals": evals, "losses": pd.DataFrame(losses),
            "schedules": {k: [asdict(p) for p in v] for k, v in schedules.items()}}
