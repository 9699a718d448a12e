"""Few-shot meta-learning: one meta-training run (resumable) and every run of a configuration (cache first, data only when needed)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import check
from ...loops import OuterConfig, outer_loop
from ...report import best_by, mean_ci
from ...results import cached, config_hash, lookup, repo_root

from .setup import FewShotConfig, FewShotData, METHODS, PAPER_10SHOT, PAPER_1SHOT, _LABELS, load_data
from .model import episode_accuracy, held_out_episodes, init_params, make_problem, oneshot_accuracy, stack_tasks, training_tasks

# ------------------------------------------------------------------------------ one run
def _options(cfg, method, gamma):
    return {"greedy": {"gamma": gamma}, "neumann": {"K": cfg.neumann_K}, "fg2u": {"b": cfg.fg2u_b}}.get(method, {})


def _tag(method, gamma):
    return f"greedy-{gamma:g}" if method == "greedy" else method


def train(cfg: FewShotConfig, data: FewShotData, shot: int, way: int, method: str, seed: int, *,
          gamma: float | None = None, checkpoint: str | Path | None = None, progress: bool = False) -> dict:
    """Meta-train α by ``method`` for one (setting, seed) and evaluate it. Returns a JSON-ready
    dict: ``select_acc``, ``test_acc``, ``oneshot_acc`` (fractions; NaN without runs), the cost
    of one hypergradient (``jvps``, ``vjps``, ``hvps``, ``inner_steps``, ``outer_grads``), the
    outer wall time, and the outer loss averaged over ten equal blocks of steps (``curve``)."""
    w0, alpha0 = init_params(cfg, seed, way)
    options = _options(cfg, method, gamma)
    records, alpha, wall = [], alpha0, 0.0
    if method != "init":
        def problem_at(step):
            return make_problem(cfg, w0, *stack_tasks(training_tasks(cfg, data, shot, way, seed, step)))
        ocfg = OuterConfig(method=method, options=options, steps=cfg.outer_steps, optimizer="adam",
                           lr=cfg.outer_lr, seed=seed, checkpoint_every=cfg.checkpoint_every)
        key = {"model": cfg.model_key(), "data": data.name, "shot": shot, "way": way, "seed": seed}
        hist = outer_loop(problem_at, alpha0, ocfg, checkpoint=checkpoint, progress=progress, run_config=key)
        records, alpha, wall = hist.records, hist.alpha, hist.records[-1]["wall_time_s"]
    out = {"select_acc": episode_accuracy(cfg, alpha, w0, held_out_episodes(cfg, data, shot, way, cfg.n_select, "select")),
           "test_acc": episode_accuracy(cfg, alpha, w0, held_out_episodes(cfg, data, shot, way, cfg.n_test, "test")),
           "oneshot_acc": (oneshot_accuracy(cfg, alpha, seed, data.runs) if data.runs else math.nan),
           "outer_wall_time_s": wall, "steps": len(records)}
    first = records[0] if records else {}
    out.update({k: int(first.get(k, 0)) for k in ("jvps", "vjps", "hvps", "inner_steps")})
    losses = np.array([r["outer_loss"] for r in records])
    out["curve"] = [round(float(b.mean()), 5) for b in np.array_split(losses, min(10, len(losses)))] if len(losses) else []
    return out


# ------------------------------------------------------------------------------ the experiment
@dataclass
class FewShotResult:
    """``runs``: one row per (shot, way, method, γ, seed); ``chosen_gamma``: {(shot, way): γ};
    ``table``: ours (γ chosen) beside the paper; ``data_note``; ``wall_time_s`` of this call.
    The paper's claims are judged from the result files by :mod:`metagrad.claims`."""
    runs: pd.DataFrame
    chosen_gamma: dict
    table: pd.DataFrame
    data_note: str
    wall_time_s: float
    config: FewShotConfig = field(repr=False, default=None)
    fallback: str | None = None     # a sentence for the page's banner when fallback data was used
    configs: dict = field(repr=False, default_factory=dict)   # {(shot, way, cell): its configuration}


def _label(cfg, method, gamma=None):
    if method == "neumann":
        return f"IFT({cfg.neumann_K})"
    if method == "fg2u":
        return f"(FG)²U b={cfg.fg2u_b}"
    if method == "greedy":
        return f"greedy γ={gamma:g}"
    return _LABELS[method]


def _run_keys(cfg: FewShotConfig, data_name: str, oneshot: bool):
    """``(shot, way, cell, cell config, method, γ, seed, file name, run config)`` of every run;
    needs no data. Runs of the base cell keep the names and keys they had before cells existed."""
    for shot, way, cell, ccfg in cfg.cell_configs():
        suffix = "" if cell == "base" else f"-{cell}"
        for method in ccfg.methods:
            for gamma in (ccfg.gammas if method == "greedy" else (None,)):
                for seed in cfg.seeds:
                    name = f"{data_name}_{shot}shot-{way}way{suffix}__{_tag(method, gamma)}__seed{seed}"
                    run_cfg = {"model": ccfg.model_key(), "data": data_name, "shot": shot, "way": way,
                               "method": method, "options": _options(ccfg, method, gamma), "seed": seed,
                               "oneshot_runs": oneshot, **({} if cell == "base" else {"cell": cell})}
                    yield shot, way, cell, ccfg, method, gamma, seed, name, run_cfg


def cached_data(cfg: FewShotConfig) -> tuple[str, bool] | None:
    """``(data name, one-shot runs)`` under which every run of ``cfg`` is already cached, else
    ``None``. The result files are consulted before any data is read, so a page whose results
    are committed renders on a machine without the data."""
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    for name in (("omniglot", "digits") if cfg.data == "auto" else (cfg.data,)):
        for oneshot in ((True, False) if name == "omniglot" and cfg.oneshot_runs else (False,)):
            if all(lookup(out_dir / f"{n}.json", rc) is not None
                   for *_, n, rc in _run_keys(cfg, name, oneshot)):
                return name, oneshot
    return None


def run(cfg: FewShotConfig, *, progress: bool = False, force: bool = False) -> FewShotResult:
    """Every (setting, method, γ, seed) run, each a cached JSON file under
    ``results_dir/<scale>/`` with its outer-loop checkpoint under ``checkpoints/`` (resumable),
    then the tables. Finished runs are loaded, never recomputed; when every run is cached the
    data is not read at all. Settings the fallback data (digits) cannot hold are skipped and
    named in ``fallback``."""
    start = time.perf_counter()
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    ck_dir = repo_root() / cfg.checkpoint_dir / cfg.scale
    hit = None if force else cached_data(cfg)
    fallback = None
    if hit is not None and hit[0] == "omniglot":
        data, (data_name, oneshot) = None, hit
        note = (f"Omniglot: every run read from its result file under {cfg.results_dir}/{cfg.scale}/ "
                "(the data itself is not needed to show them)")
    else:  # the digits are embedded: loading them is cheap and gives the same note either way
        data = load_data(cfg)
        data_name, oneshot, note = data.name, data.runs is not None, data.note
        too_wide = lambda way: way > len(data.held_out) or way > len(data.train)  # noqa: E731
        skipped = [(s, w) for s, w, _, _ in cfg.cell_configs() if too_wide(w)]
        if data.name == "digits" and cfg.data == "auto":
            fallback = ("Omniglot is not under the data root and not every run of this page is "
                        "computed on it: the runs below use scikit-learn's 8×8 digits (10 classes) instead. "
                        "They do not test the paper's Omniglot claims; `metagrad fetch omniglot` "
                        "gets the real data.")
            if skipped:
                fallback += (" Settings skipped (more ways than the 10 digit classes allow): "
                             + ", ".join(f"{s}-shot {w}-way" for s, w in skipped) + ".")
        else:
            for shot, way in skipped:
                check(False, f"{way}-way needs {way} held-out and meta-train classes; {data.name} "
                      f"has {len(data.held_out)} / {len(data.train)} (use fewer ways or Omniglot)")
        cfg_run = replace(cfg, settings=tuple(sw for sw in cfg.settings if not too_wide(sw[1])),
                          cells=tuple(c for c in cfg.cells if not too_wide(c["way"])))
    rows, configs = [], {}
    for shot, way, cell, ccfg, method, gamma, seed, name, run_cfg in _run_keys(
            cfg if data is None else cfg_run, data_name, oneshot):
        configs[(shot, way, cell)] = ccfg
        payload = cached(out_dir / f"{name}.json", run_cfg, force=force, compute=lambda: train(
            ccfg, data, shot, way, method, seed, gamma=gamma,
            checkpoint=ck_dir / f"{name}_{config_hash(run_cfg)}.pt", progress=progress))  # removed once saved
        r = payload["result"]
        rows.append({"shot": shot, "way": way, "cell": cell, "method": method, "gamma": gamma, "seed": seed,
                     "label": _label(ccfg, method, gamma), **r,
                     "#JVPs (ours)": r["jvps"] + r["vjps"] + r["hvps"],
                     "run_wall_time_s": payload["provenance"]["wall_time_s"]})
    runs = pd.DataFrame(rows)
    chosen = _choose_gamma(runs)
    table = _table(cfg, runs, chosen)
    return FewShotResult(runs, chosen, table, note, time.perf_counter() - start, cfg, fallback, configs)


def _choose_gamma(runs: pd.DataFrame) -> dict:
    """γ of greedy chosen on the selection episodes, per (shot, way, cell)."""
    return best_by(runs[runs.method == "greedy"], ["shot", "way", "cell"], "gamma", "select_acc")


def reported(runs: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """The runs that are reported: every non-greedy method, and greedy at its chosen γ."""
    keep = runs.method != "greedy"
    for (shot, way, cell), gamma in chosen.items():
        keep |= ((runs.method == "greedy") & (runs.shot == shot) & (runs.way == way) & (runs.cell == cell)
                 & (runs.gamma == gamma))
    return runs[keep]


def _table(cfg, runs, chosen) -> pd.DataFrame:
    rows = []
    for (shot, way, cell, method), g in reported(runs, chosen).groupby(["shot", "way", "cell", "method"], sort=False):
        m, h = mean_ci(100 * g.test_acc)
        mo, ho = mean_ci(100 * g.oneshot_acc)
        rows.append({"shot": shot, "way": way, "cell": cell, "method": method, "ours": g.label.iloc[0],
                     "#JVPs (ours)": int(g["#JVPs (ours)"].iloc[0]), "acc (ours)": m, "ci (ours)": h,
                     "n seeds": len(g), "20-way runs (ours)": mo, "ci runs": ho,
                     "s per outer step": float((g.outer_wall_time_s / g.steps.clip(lower=1)).mean())})
    ours = pd.DataFrame(rows)
    paper = pd.concat([PAPER_1SHOT, PAPER_10SHOT], ignore_index=True)  # all of both tables
    if ours.empty:
        ours = pd.DataFrame(columns=["shot", "way", "cell", "method", "ours", "#JVPs (ours)", "acc (ours)", "ci (ours)",
                                     "n seeds", "20-way runs (ours)", "ci runs", "s per outer step"])
    order = {"method": {m: i for i, m in enumerate(METHODS)},
             "cell": {c: i for i, c in enumerate(dict.fromkeys(["base", *(c for _, _, c, _ in cfg.cell_configs())]))}}
    out = ours.merge(paper, on=["shot", "way", "method"], how="outer")
    out["cell"] = out["cell"].fillna("base")  # the paper's rows of settings we did not run
    return out.sort_values(["shot", "way", "cell", "method"],
                           key=lambda s: s.map(order[s.name]) if s.name in order else s, ignore_index=True)
