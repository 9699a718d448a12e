r"""The outer loop: gradient-based hyperparameter optimisation with any estimator.

Reads top to bottom: every outer step builds the step's problem (tasks resample batches or
episodes), asks :func:`metagrad.hypergrad` for the hypergradient by ``method``, updates α with
the outer optimiser (the same pure :mod:`metagrad.optim` steps), optionally projects α (e.g.
clips images to the valid range), evaluates every ``eval_every`` steps, and checkpoints every
``checkpoint_every`` steps. An interrupted run restarts from its last checkpoint and loses no
finished step, bit-identically (the RNG states are checkpointed too); a checkpoint written for
another configuration is ignored with a warning and replaced (the run starts fresh). Under
:func:`metagrad.results.cached` the checkpoint is deleted once the run's result is saved.
Checkpoints hold only tensors and plain containers (see :mod:`metagrad.checkpoints`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from ._tree import same_structure, describe, tree_detach, tree_map
from ._validate import as_int, as_real
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .errors import check, ConfigError
from .estimators import hypergrad
from .estimators._registry import check_options
from .optim import SGD, Adam
from .problem import check_alpha
from .results import config_hash, track_checkpoint

__all__ = ["OuterConfig", "History", "outer_loop"]

STOCHASTIC = {"fg2u", "fg2u-zo"}


@dataclass(frozen=True)
class OuterConfig:
    """Everything that defines an outer run (the checkpoint is keyed on it)."""
    method: str
    options: dict = field(default_factory=dict)
    steps: int = 100
    optimizer: str = "adam"
    lr: float = 1e-2
    seed: int = 0
    eval_every: int = 0
    checkpoint_every: int = 50

    def __post_init__(self):
        check(self.optimizer in ("adam", "sgd"), f"outer optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        check_options(self.method, self.options)  # an unknown method or option is refused now
        for name, minimum, hint in (("steps", 0, ""), ("seed", None, ""),
                                    ("eval_every", 0, " (0 = evaluate only at the end)"),
                                    ("checkpoint_every", 1, " (steps between checkpoints)")):
            object.__setattr__(self, name, as_int(name, getattr(self, name), minimum, hint))
        object.__setattr__(self, "lr", as_real("outer lr", self.lr, low=0, low_open=True,
                                               hint="; pass e.g. lr=1e-2"))


@dataclass
class History:
    """Per-step records (a list of dicts; ``.frame()`` gives a DataFrame) and the final α."""
    records: list = field(default_factory=list)
    alpha: dict | None = None
    wall_time_s: float = 0.0

    def frame(self):
        import pandas as pd
        return pd.DataFrame(self.records)


def _outer_opt(cfg: OuterConfig):
    return Adam(lr=cfg.lr) if cfg.optimizer == "adam" else SGD(lr=cfg.lr)


def outer_loop(problem_at: Callable[[int], Any], alpha0: dict, cfg: OuterConfig, *,
               evaluate: Callable[[dict], dict] | None = None,
               project: Callable[[dict], dict] | None = None,
               checkpoint: str | Path | None = None, progress: bool = True,
               run_config: dict | None = None, optimizer: Any = None, scheduler: Any = None,
               clip_grad_norm: float | None = None) -> History:
    """Optimise α for ``cfg.steps`` outer steps.

    Args:
        problem_at: ``step -> BilevelProblem`` (the same problem every step, or a resampled one).
        alpha0: initial hyperparameters.
        cfg: method, options, optimiser, lr, seed, evaluation and checkpoint cadence.
        evaluate: ``alpha -> {metric: float}``, called every ``cfg.eval_every`` steps and at the end.
        project: ``alpha -> alpha`` applied after each update (e.g. clipping).
        checkpoint: a file path; when given, the run resumes from it and saves to it.
        run_config: extra configuration that identifies the run (mixed into the checkpoint key).
        optimizer: a ``torch.optim`` optimiser built over ``alpha0``'s own tensors; it replaces
            ``cfg.optimizer`` / ``cfg.lr`` (see :class:`~metagrad.interop.TorchOuter`).
        scheduler: a ``torch.optim.lr_scheduler`` of ``optimizer``, stepped after every update.
        clip_grad_norm: clip the hypergradient's global norm before each update.
    """
    check_alpha(alpha0)  # a NaN or an integer alpha is refused before any step runs
    key_parts = {"outer": asdict(cfg), "run": run_config or {}}
    if optimizer is not None:
        from .interop import TorchOuter
        opt = TorchOuter(optimizer, alpha0, scheduler, clip_grad_norm)
        key_parts["torch"] = opt.describe()
    else:
        check(scheduler is None and clip_grad_norm is None,
              "scheduler and clip_grad_norm need a torch.optim optimizer: pass optimizer=...")
        opt = _outer_opt(cfg)
    key = config_hash(key_parts)
    alpha = tree_detach(alpha0)
    state, start, records, elapsed = opt.init(alpha), 0, [], 0.0
    saved = load_checkpoint(checkpoint, key, alpha, cfg.steps) if checkpoint is not None else None
    if saved is not None:
        alpha, state, start = saved["alpha"], saved["opt_state"], saved["step"]
        if hasattr(opt, "load"):
            opt.load(state)
        records, elapsed = saved["records"], saved["wall_time_s"]
        set_rng_state(saved["rng"])
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress,
               desc=cfg.method, leave=False)
    t0 = time.perf_counter() - elapsed
    for step in bar:
        options = dict(cfg.options)
        if cfg.method in STOCHASTIC and "seed" not in options and "directions" not in options:
            options["seed"] = cfg.seed * 1_000_003 + step
        # the first step of a (re)start checks the problem in full (structure, scalar losses: one
        # evaluation of each loss); later steps only check α, finite, as the estimator needs it
        if step > start:
            check_alpha(alpha)
        res = hypergrad(problem_at(step), alpha, cfg.method, validate=step == start, **options)
        if not same_structure(res.grad, alpha):
            raise ConfigError(f"alpha and hypergradient structure mismatch: {describe(alpha)} vs {describe(res.grad)}")
        alpha, state = opt.step(alpha, state, res.grad, opt.hyper(alpha), step + 1)
        alpha = tree_detach(project(alpha) if project else alpha)
        rec = {"step": step + 1, "outer_loss": float(res.loss), "wall_time_s": time.perf_counter() - t0,
               "jvps": res.cost.jvps, "vjps": res.cost.vjps, "hvps": res.cost.hvps,
               "inner_steps": res.cost.inner_steps}
        if optimizer is not None:
            rec["outer_lr"] = opt.lr  # after the scheduler's step
        last = step + 1 == cfg.steps
        if evaluate is not None and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            rec.update(evaluate(alpha))
        records.append(rec)
        bar.set_postfix(loss=f"{rec['outer_loss']:.4g}")
        if checkpoint is not None and (last or (step + 1) % cfg.checkpoint_every == 0):
            save_checkpoint(checkpoint, key=key, alpha=alpha, opt_state=state, step=step + 1,
                            records=records, wall_time_s=time.perf_counter() - t0, rng=rng_state())
            track_checkpoint(checkpoint)
    bar.close()
    return History(records=records, alpha=tree_map(lambda x: x, alpha),
                   wall_time_s=time.perf_counter() - t0)
