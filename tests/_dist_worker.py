"""Module-level workers for :func:`metagrad.distributed.launch` (spawned processes must be able
to import them by name: this module is found through ``sys.path``, which spawn passes on)."""
from __future__ import annotations

import torch

import metagrad as mg
from metagrad.distributed import rank_and_world

from _helpers import small_family


def hypergrads(cases: list):
    """For each ``(family, method, options)``: build the small family in this process and
    return its rank/world, hypergradient, loss and cost counts (one process start serves
    several cases: starting a process group costs seconds)."""
    torch.set_num_threads(1)
    rank, world = rank_and_world()
    out = []
    for family, method, options in cases:
        problem, alpha = small_family(family)
        res = mg.hypergrad(problem, alpha, method, **options)
        out.append({"rank": rank, "world": world, "grad": res.grad, "loss": res.loss,
                    "jvps": res.cost.jvps, "inner_steps": res.cost.inner_steps})
    return out
