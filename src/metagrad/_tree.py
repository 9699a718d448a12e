"""Small helpers for parameter trees: (nested) dicts of tensors, the house format for w and α.

Thin wrappers around :mod:`torch.utils._pytree`, so that every module speaks of trees the same way.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = [
    "tree_map", "tree_leaves", "tree_zeros_like", "tree_add", "tree_scale", "tree_axpy",
    "tree_dot", "tree_numel", "tree_detach", "flatten", "unflatten", "same_structure", "describe",
]

tree_map = pytree.tree_map


def tree_leaves(tree: Any) -> list[torch.Tensor]:
    return pytree.tree_leaves(tree)


def tree_zeros_like(tree: Any) -> Any:
    return tree_map(torch.zeros_like, tree)


def tree_add(a: Any, b: Any) -> Any:
    return tree_map(lambda x, y: x + y, a, b)


def tree_scale(a: Any, s: float | torch.Tensor) -> Any:
    return tree_map(lambda x: x * s, a)


def tree_axpy(s: float | torch.Tensor, x: Any, y: Any) -> Any:
    """Return ``s * x + y`` leaf by leaf."""
    return tree_map(lambda xi, yi: s * xi + yi, x, y)


def tree_dot(a: Any, b: Any) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(tree_leaves(a), tree_leaves(b)))


def tree_numel(tree: Any) -> int:
    return sum(x.numel() for x in tree_leaves(tree))


def tree_detach(tree: Any) -> Any:
    return tree_map(lambda x: x.detach() if isinstance(x, torch.Tensor) else x, tree)


def flatten(tree: Any) -> torch.Tensor:
    """Concatenate all leaves into one 1-D tensor (in pytree leaf order)."""
    return torch.cat([x.reshape(-1) for x in tree_leaves(tree)])


def unflatten(vec: torch.Tensor, like: Any) -> Any:
    """Inverse of :func:`flatten`: cut ``vec`` into leaves shaped like ``like``."""
    leaves, spec = pytree.tree_flatten(like)
    out, i = [], 0
    for leaf in leaves:
        n = leaf.numel()
        out.append(vec[..., i:i + n].reshape(tuple(vec.shape[:-1]) + tuple(leaf.shape)).to(leaf.dtype))
        i += n
    return pytree.tree_unflatten(out, spec)


def same_structure(a: Any, b: Any) -> bool:
    """True when two trees have the same keys/nesting and leaf shapes."""
    la, sa = pytree.tree_flatten(a)
    lb, sb = pytree.tree_flatten(b)
    return sa == sb and all(
        isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape
        for x, y in zip(la, lb))


def describe(tree: Any) -> str:
    """A short human description of a tree's structure, for error messages."""
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in tree.items()) + "}"
    if isinstance(tree, torch.Tensor):
        return f"tensor{tuple(tree.shape)}"
    return type(tree).__name__
