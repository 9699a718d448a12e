"""Deterministic random splits: disjoint example subsets and class splits, given a seed.

Both functions draw one permutation from an explicit :class:`torch.Generator` seeded with
``seed`` (or use the generator passed in), so the same seed gives the same split on every
machine, independently of the global RNG state.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import ConfigError

__all__ = ["disjoint_split", "split_classes", "as_generator"]


def as_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A CPU :class:`torch.Generator`: ``seed`` itself if it is one, else a new one seeded with it
    (``None`` draws a fresh, non-reproducible seed)."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def _chunks(perm: torch.Tensor, counts: Sequence[int]) -> tuple[torch.Tensor, ...]:
    out, start = [], 0
    for c in counts:
        out.append(perm[start:start + c].clone())
        start += c
    return tuple(out)


def disjoint_split(n_total: int, sizes: Sequence[int] = (1000, 1000, 2000),
                   seed: int | torch.Generator | None = 0) -> tuple[torch.Tensor, ...]:
    """Draw ``len(sizes)`` pairwise-disjoint random index subsets of ``range(n_total)``.

    Returns one int64 tensor per size, in random order. This is how the book draws its training,
    validation and test sets for data hyper-cleaning from the 10 000 images of the MNIST *test*
    split when the training split is not present: e.g.
    ``train, val, test = disjoint_split(10_000, (1000, 1000, 2000), seed)``; the three sets never
    share an image, and the same seed always gives the same sets.
    """
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) > n_total:
        raise ConfigError(f"disjoint_split: sizes {tuple(sizes)} (sum {sum(sizes)}) do not fit in "
                          f"n_total={n_total}; pass non-negative sizes summing to at most n_total")
    perm = torch.randperm(n_total, generator=as_generator(seed))
    return _chunks(perm, sizes)


def split_classes(n_classes: int, fractions: Sequence[float | int] = (0.8, 0.2),
                  seed: int | torch.Generator | None = 0) -> tuple[torch.Tensor, ...]:
    """Split the class indices ``0..n_classes-1`` into disjoint groups (e.g. meta-train/test).

    ``fractions`` are either floats (fractions of ``n_classes``; each group gets
    ``floor(f * n_classes)`` classes, and when they sum to 1 the last group takes the remainder so
    that every class is used) or ints (exact counts). Returns one int64 tensor per group, in
    random order.
    """
    fr = list(fractions)
    if all(isinstance(f, int) and not isinstance(f, bool) for f in fr):
        counts = fr
    else:
        if any(f < 0 for f in fr) or sum(fr) > 1 + 1e-9:
            raise ConfigError(f"split_classes: fractions {tuple(fr)} must be >= 0 and sum to at "
                              "most 1 (or pass integer counts)")
        counts = [math.floor(f * n_classes + 1e-9) for f in fr]
        if abs(sum(fr) - 1) < 1e-9:
            counts[-1] = n_classes - sum(counts[:-1])
    if any(c < 0 for c in counts) or sum(counts) > n_classes:
        raise ConfigError(f"split_classes: counts {tuple(counts)} do not fit in "
                          f"n_classes={n_classes}")
    perm = torch.randperm(n_classes, generator=as_generator(seed))
    return _chunks(perm, counts)
