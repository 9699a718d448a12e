"""Few-shot meta-learning: the warped ConvNet, the bilevel problem of a meta-batch and the accuracy on held-out episodes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ... import unroll
from ...optim import Momentum
from ...problem import BilevelProblem

from .setup import FewShotConfig, FewShotData, resolve_device

# ------------------------------------------------------------------------------ model
def _is_hyper(layer: int) -> bool:
    return layer % 2 == 0


def init_params(cfg: FewShotConfig, seed: int, n_way: int, *, device=None) -> tuple[dict, dict]:
    """``(w0, alpha0)`` for one task: α = conv layers 2, 4, …, depth; w = the odd conv layers and
    the (zero) head. Kaiming-normal conv weights drawn from ``seed``; biases zero."""
    g = torch.Generator().manual_seed(1_000_003 * seed + 17)
    dev, dt = resolve_device(cfg.device) if device is None else device, cfg.torch_dtype
    w, alpha, c_in = {}, {}, 1
    for i in range(1, cfg.depth + 1):
        weight = torch.randn(cfg.width, c_in, 3, 3, generator=g, dtype=torch.float64) * math.sqrt(2 / (9 * c_in))
        target = alpha if _is_hyper(i) else w
        target[f"conv{i}.weight"] = weight.to(device=dev, dtype=dt)
        target[f"conv{i}.bias"] = torch.zeros(cfg.width, device=dev, dtype=dt)
        c_in = cfg.width
    side = cfg.image_size
    for _ in range(cfg.depth // 2):
        side //= 2
    w["head.weight"] = torch.zeros(n_way, cfg.width * side * side, device=dev, dtype=dt)
    w["head.bias"] = torch.zeros(n_way, device=dev, dtype=dt)
    return w, alpha


def forward(w: dict, alpha: dict, x: torch.Tensor) -> torch.Tensor:
    """Logits of one task's images ``x`` (B×1×H×W): conv3×3(pad 1) → ReLU per layer, 2×2
    max-pool after each hyper (even) layer, linear head. Layer i's weights come from α when i
    is even, from w when odd."""
    h, i = x, 1
    while f"conv{i}.weight" in w or f"conv{i}.weight" in alpha:
        p = alpha if _is_hyper(i) else w
        h = F.relu(F.conv2d(h, p[f"conv{i}.weight"], p[f"conv{i}.bias"], padding=1))
        if _is_hyper(i):
            h = F.max_pool2d(h, 2)
        i += 1
    return h.flatten(1) @ w["head.weight"].T + w["head.bias"]


def task_logits(w: dict, alpha: dict, x: torch.Tensor, *, vectorize: bool | None = None) -> torch.Tensor:
    """Logits for M stacked tasks: w leaves and ``x`` carry a leading task dimension M.
    ``vectorize`` (default: on CUDA) maps the tasks with ``torch.func.vmap`` (grouped
    convolutions); otherwise a loop over tasks, which is faster on the CPU."""
    if x.is_cuda if vectorize is None else vectorize:
        return torch.func.vmap(forward, in_dims=(0, None, 0))(w, alpha, x)
    return torch.stack([forward({k: v[m] for k, v in w.items()}, alpha, x[m]) for m in range(x.shape[0])])


def _task_ce(w, alpha, batch, reduce_tasks: str):
    logits = task_logits(w, alpha, batch["x"])
    per_task = F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten(), reduction="none")
    per_task = per_task.view(batch["y"].shape).mean(1)
    return per_task.sum() if reduce_tasks == "sum" else per_task.mean()


def inner_loss(w, alpha, batch):
    """Sum over tasks of each task's mean support cross-entropy (tasks stay independent)."""
    return _task_ce(w, alpha, batch, "sum")


def outer_loss(w, alpha, batch):
    """Mean over tasks of each task's mean query cross-entropy."""
    return _task_ce(w, alpha, batch, "mean")


def stack_tasks(tasks) -> tuple[dict, dict]:
    """``(support, query)`` batches ``{"x": M×B×1×H×W, "y": M×B}`` from a list of
    :class:`~metagrad.data.Task` (or one-shot runs, as ``(support, query, query_labels)``)."""
    sx = torch.stack([t[0] for t in tasks])
    if hasattr(tasks[0], "support_y"):
        sy = torch.stack([t.support_y for t in tasks])
        q = {"x": torch.stack([t.query_x for t in tasks]), "y": torch.stack([t.query_y for t in tasks])}
    else:  # OneShotRun: support image i has label i
        n = sx.shape[1]
        sy = torch.arange(n, device=sx.device).expand(len(tasks), n)
        q = {"x": torch.stack([t.query for t in tasks]), "y": torch.stack([t.query_labels for t in tasks])}
    return {"x": sx, "y": sy}, q


def make_problem(cfg: FewShotConfig, w0: dict, support: dict, query: dict) -> BilevelProblem:
    """The meta-batch problem: w₀ (one task's) is copied for each of the M stacked tasks."""
    M = support["x"].shape[0]
    init = {k: v.unsqueeze(0).expand(M, *v.shape).clone() for k, v in w0.items()}
    return BilevelProblem(inner_loss, outer_loss, init=init,
                          optimizer=Momentum(lr=cfg.inner_lr, momentum=cfg.inner_momentum), T=cfg.T,
                          inner_batches=support, outer_batch=query)


# ------------------------------------------------------------------------------ evaluation
def _accuracy_of(cfg, alpha, w0, support, query) -> torch.Tensor:
    """Per-task query accuracy after T inner steps."""
    problem = make_problem(cfg, w0, support, query)
    w = unroll.run(problem, alpha)[0]
    with torch.no_grad():
        pred = task_logits(w, alpha, query["x"]).argmax(-1)
    return (pred == query["y"]).to(torch.float64).mean(1)


def training_tasks(cfg: FewShotConfig, data: FewShotData, shot: int, way: int, seed: int, step: int) -> list:
    """The ``meta_batch`` tasks of outer step ``step`` (meta-train classes), a pure function of
    ``(seed, step)``: every method of a seed sees the same task stream, and a resumed run too."""
    from ...data import sample_task
    return [sample_task(data.images, data.train, way, shot, cfg.n_query,
                        generator=1_000_003 * seed + 7919 * step + 31 * m + 101 * way + shot)
            for m in range(cfg.meta_batch)]


def held_out_episodes(cfg: FewShotConfig, data: FewShotData, shot: int, way: int, n: int,
                      purpose: str) -> list:
    """``n`` episodes from the held-out classes; ``purpose`` ``"select"`` (chooses γ) or
    ``"test"`` (reported) gives two independent, fixed sets, the same for every method and seed."""
    from ...data import sample_task
    base = {"select": 1, "test": 2}[purpose]
    return [sample_task(data.images, data.held_out, way, shot, cfg.n_query,
                        generator=1_000_003 * base + 7919 * i + 31 * way + shot) for i in range(n)]


def episode_accuracy(cfg: FewShotConfig, alpha: dict, w0: dict, tasks: list) -> float:
    """Mean query accuracy over ``tasks`` (w₀ adapted T steps on each support), in chunks."""
    accs = []
    for i in range(0, len(tasks), cfg.eval_chunk):
        support, query = stack_tasks(tasks[i:i + cfg.eval_chunk])
        accs.append(_accuracy_of(cfg, alpha, w0, support, query))
    return float(torch.cat(accs).mean())


def oneshot_accuracy(cfg: FewShotConfig, alpha: dict, seed: int, runs: list) -> float:
    """Accuracy on the official 20-way one-shot runs: a fresh 20-way head (zero) and the seed's
    odd layers are adapted T steps on each run's 20 support images; the 20 queries are classified.
    Mean over runs."""
    w0, _ = init_params(cfg, seed, runs[0].support.shape[0], device=runs[0].support.device)
    return episode_accuracy(cfg, alpha, w0, runs)
