"""N-way K-shot episodes (few-shot tasks) from a class × example image tensor."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..errors import ConfigError
from .splits import as_generator

__all__ = ["Task", "sample_task"]


class Task(NamedTuple):
    """One episode. ``support_x``: (n_way·k_shot)×…, ``support_y``: int64 labels 0..n_way-1;
    ``query_x``/``query_y`` likewise with n_query per class; ``classes``: the global class index
    behind each episode label (``classes[label]``)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor


def sample_task(images: torch.Tensor, classes: torch.Tensor | Sequence[int] | None, n_way: int,
                k_shot: int, n_query: int,
                generator: torch.Generator | int | None = None) -> Task:
    """Sample an ``n_way``-way ``k_shot``-shot episode with ``n_query`` queries per class.

    ``images`` is C×E×… (e.g. Omniglot's C×20×1×28×28); ``classes`` the class indices to draw
    from (e.g. one part of :func:`~metagrad.data.splits.split_classes`; ``None`` = all C).
    ``n_way`` distinct classes are drawn, and for each, ``k_shot + n_query`` distinct examples:
    the first ``k_shot`` go to the support set, the rest to the query set, so support and query
    never share an image. Labels are 0..n_way-1 in the (random) order the classes were drawn;
    both sets are grouped by class (label ``i`` occupies rows ``i*k_shot:(i+1)*k_shot`` of the
    support). Randomness comes only from ``generator`` (a CPU :class:`torch.Generator`, or an int
    seed); tensors are returned on ``images.device``.
    """
    g = as_generator(generator)
    n_classes, n_examples = images.shape[0], images.shape[1]
    pool = (torch.arange(n_classes) if classes is None
            else torch.as_tensor(classes, dtype=torch.int64).flatten().cpu())
    if n_way > len(pool):
        raise ConfigError(f"sample_task: n_way={n_way} but only {len(pool)} classes to draw from")
    if k_shot < 1 or n_query < 0 or k_shot + n_query > n_examples:
        raise ConfigError(f"sample_task: k_shot={k_shot} + n_query={n_query} must be between 1 and "
                          f"the {n_examples} examples per class (k_shot >= 1)")
    chosen = pool[torch.randperm(len(pool), generator=g)[:n_way]]
    picks = torch.rand(n_way, n_examples, generator=g).argsort(dim=1)[:, :k_shot + n_query]
    dev = images.device
    x = images[chosen.to(dev)[:, None], picks.to(dev)]  # n_way × (k+q) × …
    rest = x.shape[2:]
    labels = torch.arange(n_way, device=dev)
    return Task(
        support_x=x[:, :k_shot].reshape(n_way * k_shot, *rest),
        support_y=labels.repeat_interleave(k_shot),
        query_x=x[:, k_shot:].reshape(n_way * n_query, *rest),
        query_y=labels.repeat_interleave(n_query),
        classes=chosen.to(dev),
    )
