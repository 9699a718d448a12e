"""The runs: one cached JSON per (method, depth, seed), the memory sweep, resumable.

Arms: ``uniform`` (plain fine-tuning, α = 0: every token weight 1; the un-meta-learned
baseline), ``rmd`` (RGU, the exact hypergradient through the unrolled stream) at each depth of
``rmd_depths`` and ``fg2u`` ((FG)²U with ``fg2u_b`` Rademacher directions) at each depth of
``fg2u_depths``, with the largest b (at most ``fg2u_b``) whose directions fit under the memory
budget at once, RGU's measured peak at ``memory_budget_depth`` (the paper: "the largest b that
fits in memory"; :func:`metagrad.estimators.forward.chunk_for_budget`). Every trained arm takes ``steps`` outer Adam steps from α = 0 and is scored by
:func:`~.setup.evaluate` on the seed's held-out streams (the same for every arm: runs are
paired by seed).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pathlib import Path

from ... import hypergrad
from ...errors import MetagradError
from ...estimators.forward import chunk_for_budget
from ...loops import OuterConfig, outer_loop
from ...results import cached, config_hash, repo_root
from . import setup as S

__all__ = ["LMResult", "memory_sweep", "train", "run", "SMOOTH"]

#: outer losses are averaged over windows of SMOOTH steps for the divergence rule (each step
#: draws new documents, so a single step's loss is noisy)
SMOOTH = 5


def _r(x, d=5):
    x = float(x)
    return round(x, d) if math.isfinite(x) else x


def memory_sweep(cfg: S.LMConfig, base: S.Base, *, progress: bool = True) -> dict:
    """Peak memory of one hypergradient (live tensor bytes on CPU, the CUDA allocator on a GPU)
    of RGU at ``memory_rmd_depths`` and of (FG)²U at ``memory_fg2u_depths`` with the chunk the
    runs use: the most directions at once that fit under the budget, RGU's peak at
    ``memory_budget_depth`` (rows ``as_run``); deterministic, measured once (seed 0, step 0)."""
    out = repo_root() / cfg.results_dir / cfg.scale / "memory.json"
    key = {"run": cfg.run_key(), "rmd": list(cfg.memory_rmd_depths), "fg2u": list(cfg.memory_fg2u_depths),
           "budget_depth": cfg.memory_budget_depth}

    def compute():
        wnet = S.weighter(cfg, base)
        rows = []
        todo = [("rmd", d, {}) for d in cfg.memory_rmd_depths]
        for method, depth, opts in todo:  # grows: the runs' fg2u rows join once the budget is measured
            inst = S.problem_at(cfg, base, wnet, depth, 0, 0)
            opts = dict(opts)
            as_run = opts.pop("run", False)
            r = hypergrad(inst.problem, wnet.params, method, track_memory=True, **opts)
            rows.append({"method": method, "depth": depth, "chunk": opts.get("chunk"), "as_run": as_run,
                         "peak_MiB": r.cost.peak_memory_bytes / 2**20, "memory_method": r.cost.memory_method})
            if progress:
                print(f"memory {method} depth {depth} chunk {opts.get('chunk')}: {rows[-1]['peak_MiB']:.2f} MiB", flush=True)
            if method == "rmd" and depth == cfg.memory_budget_depth:  # the budget is known: the runs' chunk
                budget = r.cost.peak_memory_bytes
                probe = S.problem_at(cfg, base, wnet, max(cfg.memory_fg2u_depths), 0, 0).problem
                chunk = chunk_for_budget(probe, wnet.params, cfg.fg2u_b, budget)
                todo += [("fg2u", d, {"b": chunk, "seed": 0, "chunk": chunk, "run": True})
                         for d in cfg.memory_fg2u_depths]
        return rows
    return cached(out, key, compute, device=str(base.device))


def budget_bytes(cfg: S.LMConfig, mem: dict) -> int:
    """The memory budget: RGU's measured peak at ``memory_budget_depth``."""
    row = [r for r in mem["result"] if r["method"] == "rmd" and r["depth"] == cfg.memory_budget_depth]
    return int(row[0]["peak_MiB"] * 2**20)


def run_chunk(mem: dict) -> int:
    """(FG)²U's number of directions b in the runs: the most (at most ``fg2u_b``) that fit
    under the budget at once, the paper's practice ("the largest b that fits in memory")."""
    return int(next(r["chunk"] for r in mem["result"] if r.get("as_run")))


def train(cfg: S.LMConfig, base: S.Base, method: str, depth: int, seed: int, *, chunk: int | None = None,
          checkpoint=None, progress: bool = False, run_config: dict | None = None) -> dict:
    """One run: ``steps`` outer steps of ``method`` at ``depth`` (``uniform``: none), then the
    held-out EM / F1. JSON-ready, with the outer losses, the learned α and the cost per step."""
    wnet = S.weighter(cfg, base)
    alpha, records, options, nonfinite = wnet.params, [], {}, None
    if method != "uniform":
        if method == "fg2u":
            b = chunk or cfg.fg2u_b
            options = {"b": b, "chunk": b}
        # a checkpoint every step: a run whose hypergradient overflows stops there, and the
        # weights it reached are what it is scored on (a diverged run is data)
        ocfg = OuterConfig(method=method, options=options, steps=cfg.steps, optimizer="adam", lr=cfg.outer_lr,
                           seed=seed, eval_every=0, checkpoint_every=1)
        try:
            hist = outer_loop(lambda step: S.problem_at(cfg, base, wnet, depth, seed, step).problem, alpha, ocfg,
                              checkpoint=checkpoint, progress=progress, run_config=run_config)
            records, alpha = hist.records, hist.alpha
        except MetagradError as err:
            if "non-finite hypergradient" not in str(err) or checkpoint is None:
                raise
            saved = torch.load(checkpoint, weights_only=True) if Path(checkpoint).is_file() else None
            records = saved["records"] if saved else []
            alpha = saved["alpha"] if saved else alpha
            nonfinite = len(records) + 1
    scores = S.evaluate(cfg, base, wnet, alpha, seed)
    loss = [r["outer_loss"] for r in records]
    smooth = [float(np.mean(loss[i:i + SMOOTH])) for i in range(0, len(loss), SMOOTH)]
    first = records[0] if records else {}
    return {**{k: _r(v) for k, v in scores.items()}, "steps": len(records), "options": options,
            "nonfinite_hypergradient_at": nonfinite,
            **{k: int(first.get(k, 0)) for k in ("jvps", "vjps", "inner_steps")},
            "outer_wall_time_s": _r(records[-1]["wall_time_s"], 3) if records else 0.0,
            "outer_loss": [_r(x) for x in loss], "outer_loss_smoothed": [_r(x) for x in smooth],
            "alpha": {k: [_r(x, 6) for x in v.detach().cpu().reshape(-1).tolist()] for k, v in alpha.items()}}


@dataclass
class LMResult:
    """``runs``: one row per (method, depth, seed); ``memory``: the sweep; ``base``: the base model."""
    runs: pd.DataFrame
    memory: pd.DataFrame
    base: S.Base = field(repr=False)
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    budget_MiB: float = 0.0
    config: S.LMConfig = field(repr=False, default=None)
    gradient_check: dict = field(repr=False, default=None)
    compute_s: float = 0.0  # wall time the result files took to compute (sum of their provenance)


def units(cfg: S.LMConfig) -> list[tuple[str, int]]:
    return ([("uniform", 0)] + [("rmd", d) for d in (*cfg.rmd_depths, *cfg.rmd_extra_depths)]
            + [("fg2u", d) for d in cfg.fg2u_depths])


def run(cfg: S.LMConfig, *, progress: bool = True, force: bool = False) -> LMResult:
    """Pretrain (or load) the base model, measure the memory sweep, then every (method, depth,
    seed) run, each cached under ``results_dir/<scale>/`` (resumable: an interrupted run
    restarts from its outer-loop checkpoint)."""
    start, cpu0 = time.perf_counter(), time.process_time()
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    ck_dir = repo_root() / cfg.checkpoint_dir / cfg.scale
    base = S.base_model(cfg, progress=progress)
    mem = memory_sweep(cfg, base, progress=progress)
    budget, chunk = budget_bytes(cfg, mem), run_chunk(mem)
    rows = []
    compute_s = sum(float(p["provenance"].get("wall_time_s") or 0) for p in (base.pretrain, mem) if p)
    for method, depth in units(cfg):
        for seed in cfg.seeds:
            name = f"{method}_d{depth}_s{seed}" if method != "uniform" else f"uniform_s{seed}"
            run_cfg = {"run": cfg.run_key(), "method": method, "depth": depth, "seed": seed,
                       "chunk": chunk if method == "fg2u" else None}

            def compute():
                if progress:
                    print(f"run {name}: {cfg.steps if method != 'uniform' else 0} outer steps", flush=True)
                return train(cfg, base, method, depth, seed, chunk=chunk,
                             checkpoint=ck_dir / f"{name}_{config_hash(run_cfg)}.pt", run_config=run_cfg)
            payload = cached(out_dir / f"{name}.json", run_cfg, compute, force=force, device=str(base.device))
            r = payload["result"]
            compute_s += float(payload["provenance"].get("wall_time_s") or 0)
            rows.append({"method": method, "depth": depth, "seed": seed,
                         **{k: r[k] for k in ("em", "f1", "answer_nll", "steps", "jvps", "vjps", "outer_wall_time_s")},
                         "chunk": (r.get("options") or {}).get("chunk"),
                         "alpha_max": max(abs(x) for v in r["alpha"].values() for x in v),
                         "stopped_at": r.get("nonfinite_hypergradient_at"),
                         "run_wall_time_s": payload["provenance"]["wall_time_s"]})
    from .diagnostics import gradient_check
    grad = gradient_check(cfg, base, chunk, depths=(cfg.memory_budget_depth, *cfg.fg2u_depths), progress=progress)
    compute_s += float(grad["provenance"].get("wall_time_s") or 0)
    return LMResult(pd.DataFrame(rows), pd.DataFrame(mem["result"]), base, time.perf_counter() - start,
                    time.process_time() - cpu0, budget / 2**20, cfg, grad, compute_s)
