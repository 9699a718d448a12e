r"""The benchmark's standard problem: data hyper-cleaning with a small MLP on 784-dim inputs.

:math:`N` training examples carry one weight each, :math:`\sigma(\alpha_i)` (so :math:`\alpha`
has N entries); 30 % of their labels are flipped. The inner problem trains a one-hidden-layer
tanh MLP ``784 → H → 10`` on the weighted cross-entropy with SGD on a deterministic minibatch
schedule (:func:`metagrad.minibatches`); the outer loss is the cross-entropy on a clean
validation set. The number of inner parameters is :math:`P = 795 H + 10`
(``H = 128`` gives P = 101,770).

The data are synthetic (MNIST-shaped): 10 Gaussian classes in 784 dimensions, generated from
``seed`` on the CPU and moved to ``device`` — nothing is downloaded, and every process (the
benchmark's distributed workers included) builds the identical problem from the same arguments.
"""
from __future__ import annotations

import torch
import torch.nn.functional as nnf

from ..optim import SGD, Momentum
from ..problem import BilevelProblem, minibatches

__all__ = ["hidden_for", "inner_size", "hyper_cleaning_mlp", "D_IN", "CLASSES"]

D_IN, CLASSES = 784, 10


def inner_size(hidden: int) -> int:
    """P for a ``784 → hidden → 10`` MLP (hidden = 0: a linear classifier, P = 7,850)."""
    if hidden == 0:
        return D_IN * CLASSES + CLASSES
    return D_IN * hidden + hidden + hidden * CLASSES + CLASSES


def hidden_for(P: int) -> int:
    """The hidden width whose P is closest to the requested ``P`` (at least 1)."""
    return max(1, round((P - CLASSES) / (D_IN + 1 + CLASSES)))


def hyper_cleaning_mlp(N: int = 1000, hidden: int = 128, T: int = 10, *, batch: int = 100,
                       n_val: int | None = None, lr: float = 0.1, flip: float = 0.3,
                       momentum: float | None = None, seed: int = 0, dtype=torch.float32,
                       device="cpu"):
    """``(problem, alpha)`` for hyper-cleaning with N per-example weights.

    Args:
        N: training examples = hyperparameters.
        hidden: MLP hidden width (0: linear classifier).
        T: inner horizon.
        batch: inner minibatch size (``batch = N``: full batch).
        n_val: validation examples (default: ``batch``, so that one validation gradient costs
            about as much as one inner step).
        lr: inner SGD step.
        momentum: heavy-ball momentum (:class:`~metagrad.optim.Momentum`); None: plain SGD.
    """
    n_val = batch if n_val is None else n_val
    batch = min(batch, N)
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(CLASSES, D_IN, generator=g) * (2.0 / D_IN ** 0.5)

    def sample(n):
        y = torch.randint(0, CLASSES, (n,), generator=g)
        return centers[y] + torch.randn(n, D_IN, generator=g) / D_IN ** 0.5, y
    xt, yt = sample(N)
    flipped = torch.rand(N, generator=g) < flip
    yt = torch.where(flipped, torch.randint(0, CLASSES, (N,), generator=g), yt)
    xv, yv = sample(n_val)
    kw = dict(dtype=dtype, device=device)
    train = {"x": xt.to(**kw), "y": yt.to(device), "idx": torch.arange(N, device=device)}
    val = {"x": xv.to(**kw), "y": yv.to(device)}

    if hidden == 0:
        def net(w, x):
            return x @ w["W"] + w["b"]
        init = {"W": torch.zeros(D_IN, CLASSES, **kw), "b": torch.zeros(CLASSES, **kw)}
    else:
        def net(w, x):
            return torch.tanh(x @ w["W1"] + w["b1"]) @ w["W2"] + w["b2"]
        init = {"W1": (torch.randn(D_IN, hidden, generator=g) / D_IN ** 0.5).to(**kw),
                "b1": torch.zeros(hidden, **kw),
                "W2": (torch.randn(hidden, CLASSES, generator=g) / hidden ** 0.5).to(**kw),
                "b2": torch.zeros(CLASSES, **kw)}

    def inner(w, a, b):
        ce = nnf.cross_entropy(net(w, b["x"]), b["y"], reduction="none")
        return (torch.sigmoid(a["logit"][b["idx"]]) * ce).mean()

    def outer(w, a, b):
        return nnf.cross_entropy(net(w, b["x"]), b["y"])

    schedule = train if batch >= N else minibatches(train, batch, seed=seed)
    opt = SGD(lr=lr) if momentum is None else Momentum(lr=lr, momentum=momentum)
    problem = BilevelProblem(inner, outer, init=init, optimizer=opt, T=T,
                             inner_batches=schedule, outer_batch=val)
    alpha = {"logit": torch.zeros(N, **kw)}
    return problem, alpha
