"""Divergence is data: decide from a run's recorded history whether (and when) it diverged.

A run diverged at the first recorded outer step where

* the outer loss (or a final metric) is non-finite;
* the outer loss exceeds ``explode`` × its first recorded value (it blew up); or
* it settled at chance: the mean of the last half of its recorded outer losses is at least
  ``chance_fraction`` · ln K for a K-class cross-entropy (a classifier that predicts uniformly),
  having started below that level; the step recorded is the first of the final stretch spent
  there.

The rule is the one registered in ``claims/README.md``; it reads histories already stored in
result files, so runs need not be recomputed to be judged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Divergence", "detect", "EXPLODE", "CHANCE_FRACTION"]

EXPLODE = 1.5
CHANCE_FRACTION = 0.97


@dataclass(frozen=True)
class Divergence:
    diverged: bool
    reason: str | None = None   # "non-finite", "exploded", "at chance"
    at_step: int | None = None  # outer step (in units of the run's outer steps)

    def as_dict(self) -> dict:
        return asdict(self)


def detect(outer_loss, *, n_classes: int | None = None, steps: int | None = None,
           final_metrics=(), explode: float = EXPLODE,
           chance_fraction: float = CHANCE_FRACTION) -> Divergence:
    """Judge one run from its recorded outer losses (a sequence recorded every
    ``steps / len(outer_loss)`` outer steps; ``steps`` defaults to one record per step) and its
    final metrics. ``n_classes`` enables the at-chance criterion (cross-entropy outer loss)."""
    loss = np.asarray(list(outer_loss), dtype=float)
    every = (steps / len(loss)) if (steps and len(loss)) else 1.0

    def step(i: int) -> int:
        return int(round(i * every))

    if any(not math.isfinite(float(m)) for m in final_metrics):
        bad = np.flatnonzero(~np.isfinite(loss))
        return Divergence(True, "non-finite", step(int(bad[0])) if len(bad) else steps)
    if len(loss) == 0:
        return Divergence(False)
    bad = np.flatnonzero(~np.isfinite(loss))
    if len(bad):
        return Divergence(True, "non-finite", step(int(bad[0])))
    first = loss[0]
    if first > 0:
        high = np.flatnonzero(loss > explode * first)
        if len(high):
            return Divergence(True, "exploded", step(int(high[0])))
    if n_classes and n_classes > 1 and len(loss) >= 2:
        level = chance_fraction * math.log(n_classes)
        tail = loss[len(loss) // 2:]
        if first < level and tail.mean() >= level:
            below = np.flatnonzero(loss < level)
            start = int(below[-1]) + 1 if len(below) else 0
            return Divergence(True, "at chance", step(min(start, len(loss) - 1)))
    return Divergence(False)
