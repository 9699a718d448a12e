"""Standard bilevel problem families, used by the tests, the benchmark and the theory chapter.

Each builder returns ``(problem, alpha)``; all are deterministic given ``seed`` and follow the
requested ``dtype``/``device``.

* :func:`quadratic` — quadratic inner problem, SGD; the unrolled solution has a closed form
  (:func:`quadratic_exact`).
* :func:`hyper_cleaning` — weighted logistic regression, per-example weights σ(α_i).
* :func:`mlp_momentum` — a small MLP trained with momentum SGD; α holds the log learning rate
  and the learned initialisation.
* :func:`identity_hessian` — ``L_train = ½‖w − Bα‖²`` (∇²_w L_train = I) with a linear outer
  loss, on which greedy with γ = 1 − η is exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as nnf

from ..optim import SGD, Momentum
from ..problem import BilevelProblem

__all__ = ["quadratic", "quadratic_exact", "hyper_cleaning", "mlp_momentum", "identity_hessian"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def quadratic(P: int = 8, N: int = 4, T: int = 20, eta: float = 0.1, *, mu: float = 0.5,
              seed: int = 0, dtype=torch.float64, device="cpu"):
    r""":math:`L_{train} = \tfrac12 w^\top A w - (B\alpha + c)^\top w`, :math:`A \succeq \mu I`,
    :math:`L_{val} = \tfrac12\|w - w^\dagger\|^2 + \tfrac{\lambda}{2}\|\alpha\|^2`, SGD with step η."""
    g = _gen(seed)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))
    eig = torch.linspace(mu, 1.0, P, dtype=torch.float64)
    A = (Q * eig) @ Q.T
    kw = dict(dtype=dtype, device=device)
    data = {"A": A.to(**kw), "B": torch.randn(P, N, generator=g, dtype=torch.float64).to(**kw),
            "c": torch.randn(P, generator=g, dtype=torch.float64).to(**kw),
            "target": torch.randn(P, generator=g, dtype=torch.float64).to(**kw), "lam": 0.01}

    def inner(w, a, d):
        return 0.5 * w["w"] @ d["A"] @ w["w"] - (d["B"] @ a["a"] + d["c"]) @ w["w"]

    def outer(w, a, d):
        return 0.5 * ((w["w"] - d["target"]) ** 2).sum() + 0.5 * d["lam"] * (a["a"] ** 2).sum()

    problem = BilevelProblem(inner, outer, init={"w": torch.zeros(P, **kw)}, optimizer=SGD(lr=eta),
                             T=T, inner_batches=data, outer_batch=data)
    alpha = {"a": torch.randn(N, generator=g, dtype=torch.float64).to(**kw)}
    return problem, alpha


def quadratic_exact(problem: BilevelProblem, alpha) -> dict:
    r"""Closed-form hypergradient of :func:`quadratic`: :math:`w_T = M\alpha + m`,
    :math:`M = \sum_{k<T}(I-\eta A)^k\eta B`, :math:`\nabla F = M^\top (w_T - w^\dagger) + \lambda\alpha`."""
    d, eta, T = problem.outer_batch, problem.optimizer.lr, problem.T
    A, B, c = d["A"], d["B"], d["c"]
    P = A.shape[0]
    J = torch.eye(P, dtype=A.dtype, device=A.device) - eta * A
    S = torch.zeros_like(A)
    Jk = torch.eye(P, dtype=A.dtype, device=A.device)
    for _ in range(T):
        S = S + Jk
        Jk = Jk @ J
    w_T = Jk @ problem.init["w"] + eta * S @ (B @ alpha["a"] + c)
    return {"a": (eta * S @ B).T @ (w_T - d["target"]) + d["lam"] * alpha["a"]}


def hyper_cleaning(n_train: int = 40, n_val: int = 30, d: int = 5, C: int = 3, T: int = 30,
                   eta: float = 0.5, *, ridge: float = 1e-2, seed: int = 0,
                   dtype=torch.float64, device="cpu"):
    r"""Weighted logistic regression: :math:`L_{train} = \frac1n\sum_i \sigma(\alpha_i)\,
    \mathrm{CE}(x_i W + b, y_i) + \tfrac{r}{2}\|W\|^2`, :math:`L_{val} = \mathrm{CE}` on clean
    validation data. Synthetic Gaussian classes; 30 % of training labels flipped."""
    g = _gen(seed)
    centers = 2 * torch.randn(C, d, generator=g, dtype=torch.float64)

    def sample(n):
        y = torch.randint(0, C, (n,), generator=g)
        return centers[y] + torch.randn(n, d, generator=g, dtype=torch.float64), y
    xt, yt = sample(n_train)
    flip = torch.rand(n_train, generator=g) < 0.3
    yt = torch.where(flip, torch.randint(0, C, (n_train,), generator=g), yt)
    xv, yv = sample(n_val)
    kw = dict(dtype=dtype, device=device)
    train = {"x": xt.to(**kw), "y": yt.to(device)}
    val = {"x": xv.to(**kw), "y": yv.to(device)}

    def inner(w, a, b):
        ce = nnf.cross_entropy(b["x"] @ w["W"] + w["b"], b["y"], reduction="none")
        return (torch.sigmoid(a["logit"]) * ce).mean() + 0.5 * ridge * (w["W"] ** 2).sum()

    def outer(w, a, b):
        return nnf.cross_entropy(b["x"] @ w["W"] + w["b"], b["y"])

    init = {"W": torch.zeros(d, C, **kw), "b": torch.zeros(C, **kw)}
    problem = BilevelProblem(inner, outer, init=init, optimizer=SGD(lr=eta), T=T,
                             inner_batches=train, outer_batch=val)
    alpha = {"logit": (0.1 * torch.randn(n_train, generator=g, dtype=torch.float64)).to(**kw)}
    return problem, alpha


def mlp_momentum(n: int = 32, d: int = 4, hidden: int = 6, T: int = 15, *, momentum: float = 0.9,
                 seed: int = 0, dtype=torch.float64, device="cpu"):
    r"""A 1-hidden-layer tanh MLP regressor trained with momentum SGD. α holds the log learning
    rate, a per-layer log weight decay, and the learned initialisation of all weights."""
    g = _gen(seed)
    kw = dict(dtype=dtype, device=device)
    x = torch.randn(2 * n, d, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True)) + 0.1 * torch.randn(2 * n, 1, generator=g, dtype=torch.float64)
    train = {"x": x[:n].to(**kw), "y": y[:n].to(**kw)}
    val = {"x": x[n:].to(**kw), "y": y[n:].to(**kw)}

    def net(w, x):
        return torch.tanh(x @ w["W1"] + w["b1"]) @ w["W2"] + w["b2"]

    def inner(w, a, b):
        decay = torch.exp(a["log_wd"])
        return (((net(w, b["x"]) - b["y"]) ** 2).mean()
                + 0.5 * decay[0] * (w["W1"] ** 2).sum() + 0.5 * decay[1] * (w["W2"] ** 2).sum())

    def outer(w, a, b):
        return ((net(w, b["x"]) - b["y"]) ** 2).mean()

    alpha = {
        "log_lr": torch.tensor(-2.5, **kw), "log_wd": torch.tensor([-4.0, -4.0], **kw),
        "W1": (torch.randn(d, hidden, generator=g, dtype=torch.float64) / d ** 0.5).to(**kw),
        "b1": torch.zeros(hidden, **kw),
        "W2": (torch.randn(hidden, 1, generator=g, dtype=torch.float64) / hidden ** 0.5).to(**kw),
        "b2": torch.zeros(1, **kw),
    }
    init = lambda a: {k: a[k] for k in ("W1", "b1", "W2", "b2")}  # noqa: E731
    problem = BilevelProblem(inner, outer, init=init,
                             optimizer=Momentum(lr=lambda a: torch.exp(a["log_lr"]), momentum=momentum),
                             T=T, inner_batches=train, outer_batch=val)
    return problem, alpha


def identity_hessian(P: int = 6, N: int = 3, T: int = 25, eta: float = 0.2, *, seed: int = 0,
                     learned_init: bool = False, dtype=torch.float64, device="cpu"):
    r""":math:`L_{train} = \tfrac12\|w - B\alpha\|^2` (so :math:`\nabla^2_w L_{train} = I`,
    :math:`A_t = (1-\eta) I`) and a linear outer loss :math:`L_{val} = c^\top w`: greedy with
    γ = 1 − η equals the exact hypergradient."""
    g = _gen(seed)
    kw = dict(dtype=dtype, device=device)
    data = {"B": torch.randn(P, N, generator=g, dtype=torch.float64).to(**kw),
            "c": torch.randn(P, generator=g, dtype=torch.float64).to(**kw),
            "C0": torch.randn(P, N, generator=g, dtype=torch.float64).to(**kw)}

    def inner(w, a, d):
        return 0.5 * ((w["w"] - d["B"] @ a["a"]) ** 2).sum()

    def outer(w, a, d):
        return d["c"] @ w["w"]

    init = (lambda a: {"w": data["C0"] @ a["a"]}) if learned_init else {"w": torch.zeros(P, **kw)}
    problem = BilevelProblem(inner, outer, init=init, optimizer=SGD(lr=eta), T=T,
                             inner_batches=data, outer_batch=data)
    return problem, {"a": torch.randn(N, generator=g, dtype=torch.float64).to(**kw)}
