"""Checks on an estimator's options before any work is done.

* :func:`normalise_options`: numeric options given as numpy scalars or 0-dim tensors
  (``gamma=np.float32(0.5)``, ``b=np.int64(8)``) become Python numbers, so that every
  estimator's range checks see the value itself.
* :data:`GUARDS`: per-method memory checks. (FG)²U holds its ``b × N`` direction matrix (and,
  for ``fg2u``, ``chunk × P`` tangents) at once; a ``b`` too large for the free memory is refused
  with the largest ``b`` that fits, before anything is allocated.
* :func:`leaves_like`: the leaves of a ``directions`` tree in α's leaf order (nested α too).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

from .._tree import tree_leaves, tree_numel, tree_detach
from .._validate import plain_number
from ..errors import MemoryBudgetError

__all__ = ["normalise_options", "GUARDS", "leaves_like", "available_bytes"]


def normalise_options(options: dict, defaults: dict) -> dict:
    """Options whose default is a number, a bool or None, given as numpy / 0-dim tensor
    scalars, as Python scalars; the others (tensors, trees, strings) unchanged."""
    out = {}
    for name, value in options.items():
        default = defaults.get(name)
        out[name] = (plain_number(value) if default is None or isinstance(default, (int, float))
                     else value)
    return out


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free memory, or the kernel's MemAvailable on the CPU
    (free plus reclaimable page cache; falls back to free pages)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return f"{nbytes:.3g} TiB"


def _fg2u_guard(problem, alpha, options: dict, *, tangents: bool, method: str) -> None:
    from .. import distributed, unroll
    b = options.get("b", 1)
    if options.get("directions") is not None or not isinstance(b, int) or b < 1:
        return  # given directions exist already; a bad b is reported by the estimator
    _, world = distributed.rank_and_world()
    b_rank = -(-b // world)
    n = tree_numel(alpha)
    leaf = tree_leaves(alpha)[0]
    elem = leaf.element_size()
    p, chunk, given = 0, b_rank, options.get("chunk")
    if tangents:
        with torch.no_grad():
            p = tree_numel(unroll.initial_state(problem, tree_detach(alpha)))
        chunk = min(given, b_rank) if isinstance(given, int) and given >= 1 else b_rank
    # (fixed bytes, bytes per direction) per device: directions are sampled on the CPU as
    # int64 / float64 (two b×n temporaries), then copied to α's device in its dtype, where the
    # tangents of the state and of the inner gradient (plus a transient copy) take ~3·chunk·P
    tangent_fixed = 3 * chunk * p * elem if given else 0
    tangent_per_b = 0 if given else 3 * p * elem
    cpu = torch.device("cpu")
    needs = {cpu: [0, 16 * n]}
    dev = needs.setdefault(leaf.device, [0, 0])
    dev[0] += tangent_fixed
    dev[1] += elem * n + tangent_per_b
    short = [(d, f + b_rank * per, available_bytes(d), f, per) for d, (f, per) in needs.items()
             if f + b_rank * per > available_bytes(d)]
    if not short:
        return
    d, need, have, _, _ = short[0]
    fits = min(max(0, (h - f) // per) for _, _, h, f, per in short) * world
    hint = (f"Pass b <= {fits:,}" if fits >= 1 else "No b fits")
    if tangents and not given:
        hint += " (or chunk=k to push only k directions through the loop at once)"
    raise MemoryBudgetError(
        f"{method} with b={b:,} would hold a {b_rank:,} x {n:,} direction matrix (b x N "
        f"hyperparameters)" + (f" and {chunk:,} x {p:,} tangents" if tangents else "")
        + f", needing about {_human(need)}; {_human(have)} is free on {d}. {hint}; "
        f"average several smaller-b estimates if you need more directions.")


#: method name -> ``guard(problem, alpha, options)``, run by :func:`metagrad.hypergrad`.
GUARDS: dict[str, Callable[..., None]] = {
    "fg2u": lambda pr, a, o: _fg2u_guard(pr, a, o, tangents=True, method="fg2u"),
    "fg2u-zo": lambda pr, a, o: _fg2u_guard(pr, a, o, tangents=False, method="fg2u-zo"),
}


def leaves_like(alpha: Any, tree: Any) -> list:
    """The leaves of ``tree`` in α's leaf order, walking α's (possibly nested) dicts; raises
    ``KeyError`` when ``tree`` lacks one of α's keys or has extra ones."""
    if isinstance(alpha, dict):
        if not isinstance(tree, dict) or set(tree) != set(alpha):
            raise KeyError(f"keys {sorted(map(str, tree)) if isinstance(tree, dict) else tree!r} "
                           f"!= {sorted(map(str, alpha))}")
        return [x for k in alpha for x in leaves_like(alpha[k], tree[k])]
    if isinstance(alpha, (list, tuple)):
        if not isinstance(tree, (list, tuple)) or len(tree) != len(alpha):
            raise KeyError("list length mismatch")
        return [x for a, t in zip(alpha, tree) for x in leaves_like(a, t)]
    return [tree]
