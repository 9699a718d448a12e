"""Data condensation: the ConvNet, the bilevel problem and the evaluation of condensed images."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ... import unroll
from ..._tree import flatten
from ...errors import check
from ...optim import SGD, Momentum
from ...problem import BilevelProblem, minibatches

from .setup import CondensationData, Setup

# ------------------------------------------------------------------------------ the ConvNet
def convnet_init(gen: torch.Generator, *, channels: int, n_classes: int, width: int, depth: int,
                 size: int, dtype=torch.float32, device=None) -> dict:
    """Weights of a depth-``depth`` ConvNet (He-normal convolutions, zero biases), drawn on the
    CPU from ``gen`` and moved to ``device``: keys ``conv{i}.w``, ``conv{i}.b``, ``head.w``,
    ``head.b``."""
    w, c, s = {}, channels, size
    for i in range(depth):
        he = math.sqrt(2 / (9 * c))
        w[f"conv{i}.w"] = he * torch.randn(width, c, 3, 3, generator=gen, dtype=torch.float64)
        w[f"conv{i}.b"] = torch.zeros(width, dtype=torch.float64)
        c, s = width, s // 2
    feat = c * s * s
    w["head.w"] = torch.randn(n_classes, feat, generator=gen, dtype=torch.float64) / math.sqrt(feat)
    w["head.b"] = torch.zeros(n_classes, dtype=torch.float64)
    return {k: v.to(device=device, dtype=dtype) for k, v in w.items()}


def convnet(w: dict, x: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """Logits of the ConvNet: per block conv3×3 → ReLU → InstanceNorm (no affine, ``eps`` added
    to the variance) → AvgPool2, then a linear head. Plain ops, so every ``torch.func``
    transform applies."""
    depth = sum(1 for k in w if k.startswith("conv") and k.endswith(".w"))
    for i in range(depth):
        x = F.relu(F.conv2d(x, w[f"conv{i}.w"], w[f"conv{i}.b"], padding=1))
        mean = x.mean((2, 3), keepdim=True)
        var = x.var((2, 3), unbiased=False, keepdim=True)
        x = F.avg_pool2d((x - mean) / torch.sqrt(var + eps), 2)
    return x.flatten(1) @ w["head.w"].T + w["head.b"]


def _losses(setup: Setup):
    r""":math:`L_{train}` (cross-entropy on the synthetic images, labels in the batch, plus
    :math:`\tfrac{wd}{2}\|w\|^2`) and :math:`L_{val}` (cross-entropy on a batch of real images;
    it does not depend on α)."""
    eps, wd = setup.norm_eps, setup.weight_decay

    def synthetic(w, alpha, batch):
        loss = F.cross_entropy(convnet(w, alpha["images"], eps=eps), batch["y"])
        return loss + 0.5 * wd * sum((v ** 2).sum() for v in w.values()) if wd else loss

    def real(w, alpha, batch):
        return F.cross_entropy(convnet(w, batch["x"], eps=eps), batch["y"])
    return synthetic, real


def _mix(*keys: int) -> int:
    """A seed from a tuple of integers (run seed, outer step, purpose), for torch.Generator."""
    h = 0
    for k in keys:
        h = (h * 1_000_003 + int(k) + 7) % (2**61 - 1)
    return h


def _net_init(setup: Setup, data: CondensationData, *keys: int) -> dict:
    return convnet_init(torch.Generator().manual_seed(_mix(*keys)), channels=data.pool_x.shape[1],
                        n_classes=data.n_classes, width=setup.width, depth=setup.depth,
                        size=data.pool_x.shape[-1], dtype=data.pool_x.dtype,
                        device=data.pool_x.device)


def labels_of(setup: Setup, data: CondensationData) -> torch.Tensor:
    """The fixed synthetic labels: ``ipc`` images of class 0, then class 1, …"""
    return torch.arange(data.n_classes, device=data.pool_y.device).repeat_interleave(setup.ipc)


def _inner_optimizer(setup: Setup, lr: float):
    return Momentum(lr=lr, momentum=setup.inner_momentum) if setup.inner_momentum else SGD(lr=lr)


def make_problem(setup: Setup, data: CondensationData, seed: int, step: int) -> BilevelProblem:
    """The bilevel problem of outer step ``step`` of run ``seed``: a fresh ConvNet init and a
    fresh batch of ``real_batch`` real images, both drawn from ``(seed, step)``."""
    g = torch.Generator().manual_seed(_mix(seed, step, 1))
    idx = torch.randperm(len(data.pool_x), generator=g)[:setup.real_batch].to(data.pool_x.device)
    return BilevelProblem(*_losses(setup), init=_net_init(setup, data, seed, step, 2),
                          optimizer=_inner_optimizer(setup, setup.inner_lr), T=setup.T,
                          inner_batches={"y": labels_of(setup, data)},
                          outer_batch={"x": data.pool_x[idx], "y": data.pool_y[idx]})


def initial_images(setup: Setup, data: CondensationData, seed: int) -> dict:
    """α₀: ``ipc`` random real pool images per class (``init="real"``) or uniform noise."""
    g = torch.Generator().manual_seed(_mix(seed, 3))
    if setup.init == "noise":
        shape = (data.n_classes * setup.ipc, *data.pool_x.shape[1:])
        return {"images": torch.rand(shape, generator=g, dtype=torch.float64).to(data.pool_x)}
    ys = data.pool_y.cpu()
    idx = []
    for c in range(data.n_classes):
        members = (ys == c).nonzero().flatten()
        check(len(members) >= setup.ipc, f"class {c} has {len(members)} pool images < ipc={setup.ipc}")
        idx.append(members[torch.randperm(len(members), generator=g)[:setup.ipc]])
    return {"images": data.pool_x[torch.cat(idx).to(data.pool_x.device)].clone()}


def clip(alpha: dict) -> dict:
    """The projection after each outer step: pixels back into the valid range [0, 1]."""
    return {"images": alpha["images"].clamp(0.0, 1.0)}


@torch.no_grad()
def _accuracy(w: dict, x: torch.Tensor, y: torch.Tensor, eps: float, chunk: int = 1000) -> float:
    hits = sum(int((convnet(w, x[i:i + chunk], eps=eps).argmax(1) == y[i:i + chunk]).sum())
               for i in range(0, len(x), chunk))
    return hits / len(x)


def evaluate(setup: Setup, data: CondensationData, alpha: dict, seed: int) -> dict:
    """Train ``eval_nets`` fresh nets on the synthetic images (full-batch SGD, ``eval_lr``) and
    return the mean test accuracy after ``eval_steps`` steps (``test_acc``) and after T steps,
    the horizon the images were optimised for (``test_acc_T``). The nets' initial weights depend
    on ``seed`` only, so every method of one seed is evaluated with the same nets."""
    acc, acc_T = [], []
    for j in range(setup.eval_nets):
        problem = BilevelProblem(*_losses(setup), init=_net_init(setup, data, seed, j, 4),
                                 optimizer=_inner_optimizer(setup, setup.eval_lr), T=setup.eval_steps,
                                 inner_batches={"y": labels_of(setup, data)})
        state = unroll.run(problem, alpha, stop=min(setup.T, setup.eval_steps))
        acc_T.append(_accuracy(state[0], data.test_x, data.test_y, setup.norm_eps))
        state = unroll.run(problem, alpha, state=state, start=min(setup.T, setup.eval_steps))
        acc.append(_accuracy(state[0], data.test_x, data.test_y, setup.norm_eps))
    return {"test_acc": float(np.mean(acc)), "test_acc_T": float(np.mean(acc_T))}


def whole_data_accuracy(setup: Setup, data: CondensationData, seed: int) -> float:
    """Upper bound: the same net trained on the whole real pool (minibatch SGD with the inner
    momentum, ``whole_steps`` steps of ``whole_batch`` images at ``whole_lr``; every batch full
    size: each epoch leaves out ``pool_size mod whole_batch`` random images, a fresh draw each
    epoch — the schedule the published numbers were computed with)."""
    real = _losses(setup)[1]
    problem = BilevelProblem(real, real, init=_net_init(setup, data, seed, 0, 4),
                             optimizer=_inner_optimizer(setup, setup.whole_lr), T=setup.whole_steps,
                             inner_batches=minibatches({"x": data.pool_x, "y": data.pool_y},
                                                       min(setup.whole_batch, len(data.pool_x)),
                                                       seed=seed, drop_last=True))
    w = unroll.run(problem, {"unused": torch.zeros(1, device=data.pool_x.device)})[0]
    return _accuracy(w, data.test_x, data.test_y, setup.norm_eps)
