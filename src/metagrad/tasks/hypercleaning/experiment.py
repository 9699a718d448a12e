"""Data hyper-cleaning: one training run (resumable), every run of a configuration, and the measurement checks."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...loops import OuterConfig, outer_loop
from ...report import best_by
from ...results import cached, config_hash, lookup, repo_root
from ..toy import resolve_device

from .setup import HyperCleaningConfig, Instance, build, evaluate, load_dataset, outer_loss

def _options(cfg, method, gamma):
    return {"greedy": {"gamma": gamma}, "neumann": {"K": cfg.neumann_K}, "fg2u": {"b": cfg.fg2u_b}}.get(method, {})


def _tag(method, gamma=None):
    return f"greedy{gamma:g}" if method == "greedy" else method


def label(cfg, method, gamma=None) -> str:
    if method == "neumann":
        return f"IFT({cfg.neumann_K})"
    if method == "fg2u":
        return f"(FG)²U b={cfg.fg2u_b}"
    if method == "greedy":
        return f"greedy γ={gamma:g}"
    return {"none": "no HPO (α = 0)", "t1t2": "T1−T2", "rmd": "full (RMD)"}[method]


def _r(x: float, d: int = 5) -> float:
    return round(float(x), d) if math.isfinite(x) else x


def train(cfg: HyperCleaningConfig, inst: Instance, method: str, seed: int, *, gamma: float | None = None,
          checkpoint: str | Path | None = None, progress: bool = False, run_config: dict | None = None) -> dict:
    """Optimise α by ``method`` (``"none"``: keep α = 0) and evaluate it. JSON-ready: the final
    metrics, the products per hypergradient from the cost records, the outer loss at every step
    and the metrics every ``eval_every`` steps."""
    records, alpha, wall = [], inst.alpha0, 0.0
    if method != "none":
        ocfg = OuterConfig(method=method, options=_options(cfg, method, gamma), steps=cfg.steps,
                           optimizer="adam", lr=cfg.outer_lr, seed=seed, eval_every=cfg.eval_every,
                           checkpoint_every=cfg.checkpoint_every)
        hist = outer_loop(lambda step: inst.problem, inst.alpha0, ocfg, evaluate=lambda a: evaluate(inst, a),
                          checkpoint=checkpoint, progress=progress, run_config=run_config)
        records, alpha, wall = hist.records, hist.alpha, hist.records[-1]["wall_time_s"]
    final = records[-1] if records else evaluate(inst, alpha)
    first = records[0] if records else {}
    return {**{k: _r(final[k]) for k in ("val_loss", "val_acc", "test_acc", "auroc")},
            **{k: int(first.get(k, 0)) for k in ("jvps", "vjps", "hvps", "inner_steps")},
            "steps": len(records), "outer_wall_time_s": round(wall, 3),
            "corrupted_fraction": _r(float(inst.corrupted.float().mean())),
            "outer_loss": [_r(r["outer_loss"]) for r in records],
            "curve": [{"step": r["step"], **{k: _r(r[k]) for k in ("val_acc", "test_acc", "auroc")}}
                      for r in records if "val_acc" in r]}


# ------------------------------------------------------------------------------ the experiment
@dataclass
class HyperCleaningResult:
    """``runs``: one row per (dataset, p_noise, method, γ, seed); ``curves``: the metrics along
    the outer loop; ``chosen_gamma``: {(dataset, p_noise): γ with the best mean validation
    accuracy}. The paper's claims are judged from the result files by :mod:`metagrad.claims`."""
    runs: pd.DataFrame
    curves: pd.DataFrame
    chosen_gamma: dict
    wall_time_s: float
    config: HyperCleaningConfig = field(repr=False, default=None)
    fallback: str | None = None   # a sentence for the page's banner when a data set was skipped


def _run_cfg(cfg, dataset, p, method, gamma, seed) -> dict:
    return {"model": cfg.model_key(), "dataset": dataset, "sizes": list(cfg.sizes[dataset]),
            "p_noise": p, "method": method, "options": _options(cfg, method, gamma), "seed": seed}


def _unavailable(cfg: HyperCleaningConfig, out_dir) -> dict:
    """``{dataset: reason}`` for the data sets that some run still needs but the data root lacks
    (the result files are consulted first: cached runs need no data)."""
    from ...data import DataNotFoundError
    out = {}
    for dataset in cfg.datasets:
        dcfg = cfg.for_dataset(dataset)
        if dataset == "digits" or all(
                lookup(out_dir / f"{dataset}_p{p:g}_{_tag(m, g)}_s{s}.json", _run_cfg(dcfg, dataset, p, m, g, s))
                for p in dcfg.p_noise for m in dcfg.methods
                for g in (dcfg.gammas if m == "greedy" else (None,)) for s in cfg.seeds):
            continue
        try:
            load_dataset(dataset, cfg.data_root)
        except DataNotFoundError as err:
            out[dataset] = " ".join(str(err).split())
    return out


def run(cfg: HyperCleaningConfig, *, progress: bool = False, force: bool = False) -> HyperCleaningResult:
    """Every (dataset, p_noise, method, γ, seed) run, each a cached JSON file under
    ``results_dir/<scale>/`` (its outer-loop checkpoint under ``checkpoint_dir``, resumable,
    removed once the result is saved). Finished runs are loaded, never recomputed; data are
    loaded only when some run must be computed."""
    start = time.perf_counter()
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    ck_dir = repo_root() / cfg.checkpoint_dir / cfg.scale
    device = resolve_device(cfg.device)
    data, rows, curves = {}, [], []
    missing = {} if force else _unavailable(cfg, out_dir)
    fallback = None
    if missing:
        fallback = ("Skipped for want of data (their results are not all computed and the data root "
                    "lacks them): " + "; ".join(f"{d} ({why})" for d, why in missing.items())
                    + ". `metagrad fetch mnist` (or fashion-mnist) gets them.")
    for dataset in (d for d in cfg.datasets if d not in missing):
        dcfg = cfg.for_dataset(dataset)
        for p in dcfg.p_noise:
            for method in dcfg.methods:
                for gamma in (dcfg.gammas if method == "greedy" else (None,)):
                    for seed in cfg.seeds:
                        name = f"{dataset}_p{p:g}_{_tag(method, gamma)}_s{seed}"
                        run_cfg = _run_cfg(dcfg, dataset, p, method, gamma, seed)

                        def compute():
                            if dataset not in data:
                                data[dataset] = load_dataset(dataset, cfg.data_root)
                            inst = build(dcfg, dataset, p, seed, data=data[dataset], device=device)
                            # named by config hash; cached() deletes it once the result is saved
                            return train(dcfg, inst, method, seed, gamma=gamma,
                                         checkpoint=ck_dir / f"{name}_{config_hash(run_cfg)}.pt",
                                         progress=progress, run_config=run_cfg)
                        payload = cached(out_dir / f"{name}.json", run_cfg, compute, force=force, device=str(device))
                        r = payload["result"]
                        key = dict(dataset=dataset, p_noise=p, method=method, gamma=gamma, seed=seed,
                                   label=label(cfg, method, gamma))
                        rows.append({**key, **{k: v for k, v in r.items() if k not in ("outer_loss", "curve")},
                                     "#JVPs": r["jvps"] + r["vjps"] + r["hvps"],
                                     "run_wall_time_s": payload["provenance"]["wall_time_s"]})
                        curves += [{**key, **c} for c in r["curve"]]
    runs = pd.DataFrame(rows)
    chosen = _choose_gamma(runs)
    return HyperCleaningResult(runs, pd.DataFrame(curves), chosen, time.perf_counter() - start, cfg, fallback)


def _choose_gamma(runs: pd.DataFrame) -> dict:
    """γ of greedy chosen on validation accuracy, per (dataset, p_noise)."""
    if runs.empty:   # every dataset skipped for want of data
        return {}
    return best_by(runs[runs.method == "greedy"], ["dataset", "p_noise"], "gamma", "val_acc")


def _reported(runs: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    keep = [(m != "greedy") or (chosen.get((d, float(p))) == g)
            for d, p, m, g in zip(runs.dataset, runs.p_noise, runs.method, runs.gamma)]
    return runs[keep]


def expected_cost(cfg: HyperCleaningConfig, method: str) -> int:
    """Products per hypergradient by definition: none 0, T1−T2 1 VJP, IFT(K) K+1 HVPs,
    greedy T VJPs, full RMD T VJPs, (FG)²U T·b JVPs."""
    return {"none": 0, "t1t2": 1, "neumann": cfg.neumann_K + 1, "greedy": cfg.T, "rmd": cfg.T,
            "fg2u": cfg.T * cfg.fg2u_b}[method]


def cost_check(result: HyperCleaningResult) -> pd.DataFrame:
    """Measured products per hypergradient (library cost records) against :func:`expected_cost`."""
    r = result.runs.drop_duplicates(["method", "gamma"])
    exp = [expected_cost(result.config, m) for m in r.method]
    return pd.DataFrame({"method": r.label, "#JVPs measured": r["#JVPs"], "#JVPs by definition": exp,
                         "ok": r["#JVPs"].to_numpy() == np.array(exp)}).reset_index(drop=True)


def noise_check(result: HyperCleaningResult, z: float = 4.0) -> pd.DataFrame:
    """Fraction of corrupted training labels per (dataset, p_noise), pooled over seeds, against
    ``p_noise``: ``ok`` when within ``z`` binomial standard errors."""
    r = result.runs.drop_duplicates(["dataset", "p_noise", "seed"])
    rows = []
    for (d, p), g in r.groupby(["dataset", "p_noise"], sort=False):
        n = result.config.sizes[d][0] * len(g)
        frac = float(g.corrupted_fraction.mean())
        rows.append({"dataset": d, "p_noise": p, "corrupted fraction": round(frac, 4), "labels": n,
                     "ok": abs(frac - p) < z * math.sqrt(p * (1 - p) / n)})
    return pd.DataFrame(rows)
