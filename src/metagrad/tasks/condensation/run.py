"""Data condensation: one condensation run (resumable) and the Table 1 experiment."""
from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import field, asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...errors import check
from ...loops import OuterConfig, outer_loop
from ...results import cached, config_hash, repo_root

from .setup import CondensationData, PAPER_NAMES, Phase, Setup, _check_available, load_data
from .model import _mix, clip, evaluate, initial_images, make_problem, whole_data_accuracy

# ------------------------------------------------------------------------------ one run
def _checkpoint_dir(out_dir: Path) -> Path:
    """``results/<exp>/<scale>`` → ``checkpoints/<exp>/<scale>`` (git-ignored); any other
    folder keeps its checkpoints in its own ``checkpoints/`` subfolder (never in the repository)."""
    out_dir = Path(out_dir).resolve()
    root = repo_root()
    try:
        rel = out_dir.relative_to(root / "results")
    except ValueError:
        return out_dir / "checkpoints"
    return root / "checkpoints" / rel


def _run_phases(setup, data, phases, seed, *, evaluate_fn=None, eval_every=0, checkpoint_dir=None,
                progress=False):
    """Run ``phases`` one after the other from α₀ with :func:`~metagrad.loops.outer_loop`.

    Each phase is its own outer loop (fresh Adam state) with its own checkpoint, keyed on the
    setup, the seed and all phases up to it, so that a shared prefix (e.g. the Hessian-free warm
    start) is computed once. ``evaluate_fn(alpha) -> dict`` runs every ``eval_every`` steps of a
    phase and at the end of each phase. Returns ``(records, alpha)``: ``step`` and
    ``wall_time_s`` run on across phases, and ``wall_time_s`` excludes evaluation time."""
    alpha = initial_images(setup, data, seed)
    records, offset, wall = [], 0, 0.0
    ev = None
    if evaluate_fn is not None:
        def ev(a):
            t = time.perf_counter()
            out = evaluate_fn(a)
            return {**out, "eval_time_s": time.perf_counter() - t}
    for i, ph in enumerate(phases):
        check(isinstance(ph, Phase), f"phases must be Phase objects, got {type(ph).__name__}")
        run_key = {"setup": asdict(setup), "seed": seed, "phases": [asdict(p) for p in phases[:i + 1]]}
        cfg = OuterConfig(method=ph.method, options=dict(ph.options), steps=ph.steps, lr=ph.lr,
                          seed=_mix(seed, i), eval_every=eval_every, checkpoint_every=10)
        ck = None
        if checkpoint_dir is not None:
            ck = Path(checkpoint_dir) / (f"{setup.dataset}_ipc{setup.ipc}_seed{seed}_phase{i}_"
                                         f"{ph.method}_{config_hash(run_key)}.pt")

        def at(step, _offset=offset):
            return make_problem(setup, data, seed, _offset + step)
        hist = outer_loop(at, alpha, cfg, evaluate=ev, project=clip, checkpoint=ck,
                          progress=progress, run_config=run_key)
        evaluated = 0.0
        for r in hist.records:
            r = dict(r, step=r["step"] + offset, phase=i, method=ph.method)
            r["wall_time_s"] = wall + r["wall_time_s"] - evaluated
            evaluated += r.pop("eval_time_s", 0.0)
            records.append(r)
        alpha, offset = hist.alpha, offset + ph.steps
        wall = records[-1]["wall_time_s"] if records else wall
    return records, alpha


def _history(records: list[dict]) -> dict:
    """Compact per-step history (rounded) and the evaluation points of a run."""
    keys = ("step", "outer_loss", "wall_time_s")
    hist = {k: [round(float(r[k]), 5) for r in records] for k in keys}
    evals = [{"step": r["step"], "wall_time_s": round(r["wall_time_s"], 4), "phase": r["phase"],
              "test_acc": round(r["test_acc"], 6), "test_acc_T": round(r["test_acc_T"], 6)}
             for r in records if "test_acc" in r]
    return {"history": hist, "evals": evals}


def condense(setup: Setup, phases: list[Phase], seed: int, *, data: CondensationData | None = None,
             checkpoint_dir: str | Path | None = None, eval_every: int = 0, keep_images: bool = False,
             progress: bool = False) -> dict:
    """One condensation run: ``phases`` of outer steps from α₀, then evaluation.

    Returns a JSON-ready dict: final ``test_acc`` / ``test_acc_T`` (fractions), ``outer_loss``
    (mean over the last 10 % of steps), outer ``wall_time_s`` (evaluation excluded), the
    summed cost counts, the per-step ``history``, the evaluation points ``evals`` and, with
    ``keep_images``, the condensed images (rounded to 1e-3)."""
    data = load_data(setup) if data is None else data
    records, alpha = _run_phases(setup, data, phases, seed,
                                 evaluate_fn=lambda a: evaluate(setup, data, a, seed),
                                 eval_every=eval_every, checkpoint_dir=checkpoint_dir,
                                 progress=progress)
    tail = records[-max(1, len(records) // 10):]
    out = {"test_acc": records[-1]["test_acc"], "test_acc_T": records[-1]["test_acc_T"],
           "outer_loss": float(np.mean([r["outer_loss"] for r in tail])),
           "wall_time_s": records[-1]["wall_time_s"], "steps": len(records),
           **{k: int(sum(r[k] for r in records)) for k in ("jvps", "vjps", "hvps", "inner_steps")},
           **_history(records)}
    if keep_images:
        out["images"] = torch.round(alpha["images"].detach().cpu().double() * 1000).div(1000).tolist()
    return out


# ------------------------------------------------------------------------------ Table 1
def _setup_for(base: Setup, dataset: str, ipc: int, per_dataset: dict, per_ipc: dict,
               overrides: list) -> tuple[Setup, dict]:
    """The setup of one (dataset, IPC) cell and its schedule (steps, lr, warm_start, eval_every;
    ``methods``: the cell's method labels when an override names them, else None)."""
    sched = {"steps": 100, "lr": 1e-2, "warm_start": 0, "eval_every": 0, "methods": None}
    fields_ = set(Setup.__dataclass_fields__)
    changes = {k: v for k, v in per_dataset.get(dataset, {}).items() if k not in ("ipcs", "methods")}
    changes.update(dataset=real_dataset(dataset, per_dataset), ipc=ipc)
    for k, v in per_ipc.get(ipc, {}).items():
        (sched if k in sched else changes)[k] = v
    for o in overrides:
        if o.get("dataset") == dataset and o.get("ipc") == ipc:
            for k, v in o.items():
                if k not in ("dataset", "ipc"):
                    (sched if k in sched else changes)[k] = v
    unknown = set(changes) - fields_
    check(not unknown, f"unknown setting(s) {sorted(unknown)}; known: {sorted(fields_ | set(sched))}")
    return replace(base, **changes), sched


def real_dataset(name: str, per_dataset: dict) -> str:
    """The data set of the page's row ``name``: ``name`` itself (``digits``, ``mnist``, …), or,
    for a further row of one data set at other settings (e.g. ``mnist16``: MNIST at 16×16), the
    ``dataset`` its ``per_dataset`` entry names."""
    real = (per_dataset.get(name) or {}).get("dataset", name)
    check(real in PAPER_NAMES,
          f"datasets entry {name!r} is not a data set ({sorted(PAPER_NAMES)}); for a further row of "
          f"one data set, give per_dataset[{name!r}] a 'dataset' naming it, e.g. {{dataset: mnist, "
          f"image_size: 16}}")
    return real


def row_label(name: str, setup: Setup) -> str:
    """How tables name the row ``name``: the paper's name of its data set, plus the image size
    when the row is a further row of that data set (``MNIST 16×16``)."""
    return PAPER_NAMES[name] if name in PAPER_NAMES else f"{PAPER_NAMES[setup.dataset]} {setup.size}×{setup.size}"


def row_labels(base: Setup, datasets, ipcs, per_dataset: dict, per_ipc: dict, overrides: list) -> dict:
    """{row name: how tables name it} for the page's rows (``mnist16`` -> ``MNIST 16×16``)."""
    per_ipc = {int(k): v for k, v in (per_ipc or {}).items()}
    first = {d: int(per_dataset.get(d, {}).get("ipcs", ipcs)[0]) for d in datasets}
    return {d: row_label(d, _setup_for(base, d, first[d], per_dataset, per_ipc, overrides or [])[0])
            for d in datasets}


def _phases_for(method: dict, sched: dict) -> list[Phase]:
    m, opts = method["method"], dict(method.get("options", {}))
    warm, steps, lr = int(sched["warm_start"]), int(sched["steps"]), float(sched["lr"])
    check(0 <= warm < steps, f"warm_start ({warm}) must be in [0, steps={steps})")
    head = [Phase("hessian-free", warm, {}, lr)] if warm else []
    return head + [Phase(m, steps - warm, opts, lr)]


def _slug(label: str) -> str:
    """An ASCII file-name part: ``"(FG)²U"`` → ``fg2u``, ``"RGU (full)"`` → ``rgu-full``."""
    ascii_ = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.replace("(", "").replace(")", "")).strip("-")


def run_table1(base: Setup, methods: dict, *, datasets=("digits",), ipcs=(1,), seeds=(0, 1, 2),
               per_dataset: dict | None = None, per_ipc: dict | None = None,
               overrides: list | None = None, out_dir: str | Path = "results/fg2u_condensation/smoke",
               keep_images_seed: int | None = 0, progress: bool = False) -> pd.DataFrame:
    """Table 1: every (dataset, IPC, method, seed) run, plus "random real (α₀)" and "whole data".

    ``methods``: label → ``{"method": name, "options": {...}}``. ``per_dataset[name]`` may
    restrict the IPCs (``ipcs``) and the methods (``methods``: labels) of one data set. An entry
    of ``datasets`` may also be a further row of one data set at other settings: a new name
    (e.g. ``mnist16``) whose ``per_dataset`` entry names the ``dataset`` (``{dataset: mnist,
    image_size: 16}``); its files, its ``overrides`` and the claims' ``where`` use the name.
    ``per_dataset[name]`` and
    ``per_ipc[ipc]`` override :class:`Setup` fields; ``per_ipc[ipc]`` also sets the schedule
    ``steps`` (outer steps, warm start included), outer Adam ``lr``, ``warm_start`` (that many
    Hessian-free steps first, the paper's two-phase warm start) and ``eval_every`` (> 0: test
    accuracy every that many outer steps too, kept in the result as ``evals`` with the
    wall-clock). ``overrides``: a list of ``{"dataset": ..., "ipc": ..., field: value}`` (Setup
    fields, schedule keys, or ``methods``: the labels of that cell, replacing the row's) for one
    cell. Each run is a cached JSON file under
    ``out_dir``; returns one row per run (accuracies in %). The condensed images of seed
    ``keep_images_seed`` at the smallest IPC are kept in the result files (for a figure)."""
    per_dataset, overrides = per_dataset or {}, overrides or []
    per_ipc = {int(k): v for k, v in (per_ipc or {}).items()}  # papermill passes keys as strings
    for d in datasets:  # fail before any computation
        _check_available(real_dataset(d, per_dataset))
    out_dir, rows, loaded = Path(out_dir), [], {}
    ck = _checkpoint_dir(out_dir)

    def data_for(s: Setup) -> CondensationData:  # one copy of the real images per split
        key = (s.dataset, s.image_size, s.pool_size, s.test_size, s.official_split, s.split_seed,
               s.device, s.dtype)
        if key not in loaded:
            loaded[key] = load_data(s)
        return loaded[key]

    for d in datasets:
        d_ipcs = [int(i) for i in per_dataset.get(d, {}).get("ipcs", ipcs)]
        d_methods = per_dataset.get(d, {}).get("methods")
        check(d_methods is None or set(d_methods) <= set(methods),
              f"per_dataset[{d!r}]['methods'] names {sorted(set(d_methods or []) - set(methods))}, "
              f"which are not among the methods {list(methods)}")
        for ipc in d_ipcs:
            setup, sched = _setup_for(base, d, ipc, per_dataset, per_ipc, overrides)
            cell = {"data": row_label(d, setup), "ipc": ipc}
            c_methods = d_methods if sched["methods"] is None else list(sched["methods"])
            check(c_methods is None or set(c_methods) <= set(methods),
                  f"the override of ({d!r}, IPC {ipc}) names methods {sorted(set(c_methods or []) - set(methods))}, "
                  f"which are not among the methods {list(methods)}")
            for seed in seeds:
                name = f"{d}_ipc{ipc}_seed{seed}"
                res = cached(out_dir / f"{name}_random-real.json",
                             {"setup": asdict(setup), "seed": seed, "what": "alpha0"},
                             lambda: evaluate(setup, data_for(setup),
                                              initial_images(setup, data_for(setup), seed), seed))
                rows.append({**cell, "method": "random real (α₀)", "seed": seed, **res["result"],
                             "wall_time_s": 0.0})
                if ipc == min(d_ipcs):  # independent of the IPC: shown once, as in the paper
                    res = cached(out_dir / f"{d}_whole-data_seed{seed}.json",
                                 {"setup": asdict(replace(setup, ipc=1)), "seed": seed, "what": "whole data"},
                                 lambda: {"test_acc": whole_data_accuracy(setup, data_for(setup), seed)})
                    rows.append({**cell, "method": "whole data", "seed": seed, **res["result"],
                                 "wall_time_s": res["provenance"]["wall_time_s"]})
                for label, method in methods.items():
                    if c_methods is not None and label not in c_methods:
                        continue
                    phases = _phases_for(method, sched)
                    keep = keep_images_seed == seed and ipc == min(d_ipcs)
                    every = int(sched["eval_every"])
                    cfg = {"setup": asdict(setup), "seed": seed, "phases": [asdict(p) for p in phases],
                           "keep_images": keep, **({"eval_every": every} if every else {})}
                    r = cached(out_dir / f"{name}_{_slug(label)}.json", cfg,
                               lambda: condense(setup, phases, seed, data=data_for(setup), checkpoint_dir=ck,
                                                eval_every=every, keep_images=keep,
                                                progress=progress))["result"]
                    rows.append({**cell, "method": label, "seed": seed,
                                 **{k: r[k] for k in ("test_acc", "test_acc_T", "outer_loss", "wall_time_s",
                                                      "steps", "jvps", "vjps", "hvps", "inner_steps")},
                                 "warm_start": sched["warm_start"], "history": r["history"],
                                 "evals": r.get("evals") if every else None, "images": r.get("images")})
    df = pd.DataFrame(rows)
    df[["test_acc", "test_acc_T"]] *= 100
    return df
