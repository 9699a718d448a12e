r"""Data condensation (Shen et al. 2024, "Memory-Efficient Gradient Unrolling for Large-Scale
Bi-level Optimization", §5.1, Table 1): learn a few synthetic images per class.

The bilevel problem. α = the synthetic images ``α["images"]`` (``C·IPC × channels × H × W``;
their labels are fixed, IPC per class); w = the weights of a small ConvNet, drawn afresh at
every outer step from a seed (:math:`w_0` does not depend on α). The inner loop trains the
net on the synthetic images for T steps of plain SGD; the outer loss is the cross-entropy of
the trained net on a batch of *real* images:

.. math:: L_{train}(w, \alpha) = \mathrm{CE}(f_w(\alpha), y_{syn}), \qquad
          F(\alpha) = \mathrm{CE}(f_{w_T(\alpha)}(x_{real}), y_{real}).

After each outer update the images are clipped to the valid pixel range [0, 1] (``project``).
Evaluation: a fresh net is trained on the condensed images for E steps; test accuracy on
held-out real images. The "whole data" upper bound trains the same net on the whole
real-train pool.

Three experiments, each one library call of a notebook:

* :func:`run_table1` — Table 1 (test accuracy per data set, IPC, method, seed);
* :func:`gradient_quality` — cosine similarity of every estimator with the exact (``rmd``)
  hypergradient along one condensation run, against measured cost and memory;
* :func:`two_phase` — a cheap biased estimator, (FG)²U, and cheap-then-(FG)²U at an equal
  wall-clock budget.

Every (data set, IPC, method, seed) run is a :func:`metagrad.results.cached` JSON file and its
outer loop checkpoints (:func:`metagrad.loops.outer_loop`) under ``checkpoints/``.
"""
from __future__ import annotations

import math
import re
import time
import unicodedata
from dataclasses import dataclass, field, asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import unroll
from .._tree import flatten, tree_numel
from ..errors import ConfigError, check
from ..estimators import hypergrad
from ..estimators.forward import directional_derivatives, fg2u_directions
from ..cost import Cost
from ..loops import OuterConfig, outer_loop
from ..optim import SGD, Momentum
from ..problem import BilevelProblem, minibatches
from ..results import cached, config_hash, repo_root

__all__ = [
    # the paper's numbers
    "PAPER_TABLE1", "PAPER_FIGURE1",
    # the problem
    "Setup", "Phase", "CondensationData", "data_source", "load_data", "resolve_device",
    "convnet_init", "convnet", "labels_of", "make_problem", "initial_images", "clip",
    "evaluate", "whole_data_accuracy", "condense",
    # the three experiments
    "run_table1", "gradient_quality", "fg2u_expected_cosine", "two_phase", "two_phase_schedules",
    # tables, tests and figures
    "table1_summary", "paired_greater", "paper_orderings", "plot_table1", "plot_images",
    "quality_summary", "format_quality", "plot_quality", "schedule_table", "at_budget",
    "two_phase_summary", "two_phase_claims", "plot_two_phase",
]

# ------------------------------------------------------------------------------ the paper
_M = ["TRGU", "Hessian-free", "Neumann", "(FG)²U", "RGU (full)"]
_ROWS = [  # Shen et al. 2024, Table 1 (test accuracy %, mean ± std over runs), from PAPERS.md A.3
    ("MNIST", 1, [73.76, 65.98, 68.37, 82.44, 92.32], [1.68, 1.38, 1.44, 0.68, 0.33], 99.6),
    ("MNIST", 10, [94.05, 94.97, 95.75, 96.12, 96.79], [0.33, 0.34, 0.24, 0.28, 0.29], None),
    ("MNIST", 50, [96.63, 96.34, 96.78, 97.01, 97.72], [0.41, 0.31, 0.22, 0.19, 0.23], None),
    ("CIFAR-10", 1, [20.78, 19.72, 21.33, 29.37, 34.08], [1.07, 1.28, 0.90, 0.75, 0.55], 84.8),
    ("CIFAR-10", 10, [44.01, 45.32, 47.67, 50.10, 53.15], [0.57, 1.02, 0.87, 0.56, 0.53], None),
    ("CIFAR-10", 50, [49.22, 48.73, 50.02, 51.98, 56.37], [0.45, 0.78, 0.69, 0.44, 0.37], None),
    ("CIFAR-100", 1, [3.96, 3.14, 4.52, 8.22, 15.61], [0.68, 0.41, 0.56, 0.45, 0.32], 56.2),
    ("CIFAR-100", 10, [20.20, 19.01, 20.87, 23.38, 25.42], [0.66, 0.84, 0.82, 0.33, 0.45], None),
    ("CIFAR-100", 50, [22.33, 23.59, 24.52, 25.84, 28.52], [0.93, 0.71, 0.77, 0.31, 0.53], None),
]
#: Table 1 of the (FG)²U paper: one row per (data, IPC, method); ``acc``/``pm`` in %.
PAPER_TABLE1 = pd.DataFrame(
    [{"data": d, "ipc": k, "method": m, "acc": a, "pm": s}
     for d, k, accs, pms, _ in _ROWS for m, a, s in zip(_M, accs, pms)]
    + [{"data": d, "ipc": 1, "method": "whole data", "acc": whole, "pm": math.nan}
       for d, k, _, _, whole in _ROWS if whole is not None])
#: Figure 1 of the paper (read off the plot, ≈): GPU memory in GiB at CIFAR-100, IPC 50.
PAPER_FIGURE1 = {"TRGU": 2.9, "Hessian-free": 2.85, "(FG)²U": 1.1}

#: data set name -> how the paper's tables name it.
PAPER_NAMES = {"digits": "digits", "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_CIFAR = {"cifar10": ("CIFAR-10", "load_cifar10", "cifar-10-batches-py"),
          "cifar100": ("CIFAR-100", "load_cifar100", "cifar-100-python")}


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class Setup:
    """Everything that defines the condensation problem and its evaluation (not the method).

    Data: ``dataset`` (``digits`` at ``image_size``, ``mnist``, ``cifar10``, ``cifar100``);
    ``pool_size``/``test_size`` real images drawn *disjointly* from one split with
    :func:`metagrad.data.disjoint_split` (seed ``split_seed``) — for MNIST from the 10 000-image
    test split (the only one the shared data holds) unless ``official_split`` (pool = the 60 000
    training images, test = the 10 000 test images; needs ``metagrad fetch mnist``).
    Net: depth-``depth`` ConvNet of ``width`` channels, InstanceNorm with ``norm_eps``.
    Inner run: ``T`` steps of SGD (``inner_lr``; heavy-ball ``inner_momentum`` if > 0) on the
    synthetic images with L2 ``weight_decay``. Outer loss: ``real_batch`` real images per step.
    α₀: ``init`` = ``"real"`` (random real images of each class) or ``"noise"`` (uniform).
    Evaluation: ``eval_nets`` fresh nets trained for ``eval_steps`` steps at ``eval_lr`` on the
    synthetic images; ``whole_*``: the whole-data upper bound (minibatch SGD on the pool).
    ``device="auto"`` picks CUDA when available.
    """
    dataset: str = "digits"
    image_size: int = 8
    ipc: int = 1
    width: int = 16
    depth: int = 2
    T: int = 10
    inner_lr: float = 0.1
    inner_momentum: float = 0.0
    weight_decay: float = 0.0
    norm_eps: float = 1e-5
    real_batch: int = 128
    pool_size: int = 1200
    test_size: int = 597
    official_split: bool = False
    split_seed: int = 0
    init: str = "real"
    eval_steps: int = 100
    eval_lr: float = 0.1
    eval_nets: int = 1
    whole_steps: int = 300
    whole_batch: int = 128
    whole_lr: float = 0.1
    device: str = "auto"
    dtype: str = "float32"

    def __post_init__(self):
        check(self.dataset in PAPER_NAMES,
              f"dataset must be one of {list(PAPER_NAMES)}, got {self.dataset!r}")
        check(self.init in ("real", "noise"), f"init must be 'real' or 'noise', got {self.init!r}")
        check(self.dtype in ("float32", "float64"),
              f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for name in ("ipc", "width", "depth", "T", "real_batch", "eval_steps", "eval_nets"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        size = 32 if self.dataset in _CIFAR else (28 if self.dataset == "mnist" else self.image_size)
        check(size // 2 ** self.depth >= 2,
              f"a depth-{self.depth} ConvNet pools {size}x{size} images to "
              f"{size // 2 ** self.depth}x{size // 2 ** self.depth}: after InstanceNorm the last "
              f"AvgPool2 would average every feature map to 0. Use depth <= "
              f"{max(1, int(math.log2(max(size, 2))) - 1)} or larger images (image_size)")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


@dataclass(frozen=True)
class Phase:
    """A stretch of outer steps with one estimator: ``method`` (a :func:`metagrad.hypergrad`
    name), its ``options``, the number of outer ``steps`` and the outer Adam ``lr``."""
    method: str
    steps: int
    options: dict = field(default_factory=dict)
    lr: float = 1e-2


# ------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class CondensationData:
    """Real images: the pool the meta loss samples from, and the held-out test set."""
    pool_x: torch.Tensor
    pool_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int
    source: str


def _check_available(dataset: str) -> None:
    if dataset in _CIFAR:
        name, loader, folder = _CIFAR[dataset]
        raise ConfigError(
            f"dataset {dataset!r} ({name}) cannot run: metagrad.data has no {name} loader yet "
            f"(missing: metagrad.data.{loader} and the files under $METAGRAD_DATA/{dataset}/"
            f"{folder}). The configuration is kept for users who add both; until then remove "
            f"{dataset!r} from `datasets` (e.g. in params/fg2u_condensation.paper.yaml).")


def data_source(setup: Setup) -> str:
    """Where the real images of ``setup`` come from, in words (without loading them)."""
    _check_available(setup.dataset)
    if setup.dataset == "mnist" and setup.official_split:
        return (f"MNIST official splits: pool = the first {setup.pool_size} of the 60 000 training "
                f"images, test = the first {setup.test_size} of the 10 000 test images")
    what = ("the 10 000-image MNIST test split" if setup.dataset == "mnist" else
            f"scikit-learn's 1 797 digits at {setup.image_size}x{setup.image_size}")
    return (f"pool ({setup.pool_size}) and test set ({setup.test_size}) drawn disjointly from "
            f"{what} (split seed {setup.split_seed})")


def load_data(setup: Setup) -> CondensationData:
    """The real images of ``setup.dataset`` on ``setup.device``, split as :func:`data_source` says.

    ``digits``: scikit-learn's 8×8 digits (embedded, no files; ``image_size`` resizes), pool and
    test drawn disjointly from its 1 797 images. ``mnist``: pool and test drawn disjointly from
    the 10 000-image MNIST test split, or the official train/test splits (``official_split``).
    ``cifar10``/``cifar100`` raise :class:`~metagrad.errors.ConfigError` naming what is missing.
    """
    from .. import data as md
    source = data_source(setup)
    kw = dict(dtype=setup.torch_dtype)
    if setup.dataset == "mnist" and setup.official_split:
        px, py = md.load_mnist("train", **kw)
        tx, ty = md.load_mnist("test", **kw)
        pool_idx = torch.arange(len(px))[:setup.pool_size]
        test_idx = torch.arange(len(tx))[:setup.test_size]
    else:
        x, y = (md.load_mnist("test", **kw) if setup.dataset == "mnist"
                else md.load_digits(size=setup.image_size, **kw))
        pool_idx, test_idx = md.disjoint_split(len(x), (setup.pool_size, setup.test_size),
                                               seed=setup.split_seed)
        px, py, tx, ty = x, y, x, y
    dev = resolve_device(setup.device)
    return CondensationData(px[pool_idx].to(dev), py[pool_idx].to(dev), tx[test_idx].to(dev),
                            ty[test_idx].to(dev), int(py.max()) + 1, source)


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
    momentum, ``whole_steps`` steps of ``whole_batch`` images at ``whole_lr``)."""
    real = _losses(setup)[1]
    problem = BilevelProblem(real, real, init=_net_init(setup, data, seed, 0, 4),
                             optimizer=_inner_optimizer(setup, setup.whole_lr), T=setup.whole_steps,
                             inner_batches=minibatches({"x": data.pool_x, "y": data.pool_y},
                                                       min(setup.whole_batch, len(data.pool_x)),
                                                       seed=seed))
    w = unroll.run(problem, {"unused": torch.zeros(1, device=data.pool_x.device)})[0]
    return _accuracy(w, data.test_x, data.test_y, setup.norm_eps)


# ------------------------------------------------------------------------------ one run
def _checkpoint_dir(out_dir: Path) -> Path:
    """``results/<exp>/<scale>`` → ``checkpoints/<exp>/<scale>`` (git-ignored)."""
    out_dir = Path(out_dir).resolve()
    root = repo_root()
    try:
        rel = out_dir.relative_to(root / "results")
    except ValueError:
        rel = Path(out_dir.name)
    return root / "checkpoints" / rel


def _run_phases(setup, data, phases, seed, *, evaluate_fn=None, eval_every=0, checkpoint_dir=None,
                progress=False):
    """Run ``phases`` one after the other from α₀ with :func:`~metagrad.loops.outer_loop`.

    Each phase is its own outer loop (fresh Adam state) with its own checkpoint, keyed on the
    setup, the seed and all phases up to it, so that a shared prefix (e.g. the Hessian-free warm
    start) is computed once. ``evaluate_fn(alpha) -> dict`` runs every ``eval_every`` steps of a
    phase and at the end of each phase. Returns ``(records, alpha)``: ``step`` and
    ``wall_time_s`` run on across phases, and ``wall_time_s`` excludes evaluation time."""
    alpha = initial_images(setup, data, seed)
    records, offset, wall = [], 0, 0.0
    ev = None
    if evaluate_fn is not None:
        def ev(a):
            t = time.perf_counter()
            out = evaluate_fn(a)
            return {**out, "eval_time_s": time.perf_counter() - t}
    for i, ph in enumerate(phases):
        check(isinstance(ph, Phase), f"phases must be Phase objects, got {type(ph).__name__}")
        run_key = {"setup": asdict(setup), "seed": seed, "phases": [asdict(p) for p in phases[:i + 1]]}
        cfg = OuterConfig(method=ph.method, options=dict(ph.options), steps=ph.steps, lr=ph.lr,
                          seed=_mix(seed, i), eval_every=eval_every, checkpoint_every=10)
        ck = None
        if checkpoint_dir is not None:
            ck = Path(checkpoint_dir) / (f"{setup.dataset}_ipc{setup.ipc}_seed{seed}_phase{i}_"
                                         f"{ph.method}_{config_hash(run_key)}.pt")

        def at(step, _offset=offset):
            return make_problem(setup, data, seed, _offset + step)
        hist = outer_loop(at, alpha, cfg, evaluate=ev, project=clip, checkpoint=ck,
                          progress=progress, run_config=run_key)
        evaluated = 0.0
        for r in hist.records:
            r = dict(r, step=r["step"] + offset, phase=i, method=ph.method)
            r["wall_time_s"] = wall + r["wall_time_s"] - evaluated
            evaluated += r.pop("eval_time_s", 0.0)
            records.append(r)
        alpha, offset = hist.alpha, offset + ph.steps
        wall = records[-1]["wall_time_s"] if records else wall
    return records, alpha


def _history(records: list[dict]) -> dict:
    """Compact per-step history (rounded) and the evaluation points of a run."""
    keys = ("step", "outer_loss", "wall_time_s")
    hist = {k: [round(float(r[k]), 5) for r in records] for k in keys}
    evals = [{"step": r["step"], "wall_time_s": round(r["wall_time_s"], 4), "phase": r["phase"],
              "test_acc": round(r["test_acc"], 6), "test_acc_T": round(r["test_acc_T"], 6)}
             for r in records if "test_acc" in r]
    return {"history": hist, "evals": evals}


def condense(setup: Setup, phases: list[Phase], seed: int, *, data: CondensationData | None = None,
             checkpoint_dir: str | Path | None = None, eval_every: int = 0, keep_images: bool = False,
             progress: bool = False) -> dict:
    """One condensation run: ``phases`` of outer steps from α₀, then evaluation.

    Returns a JSON-ready dict: final ``test_acc`` / ``test_acc_T`` (fractions), ``outer_loss``
    (mean over the last 10 % of steps), outer ``wall_time_s`` (evaluation excluded), the
    summed cost counts, the per-step ``history``, the evaluation points ``evals`` and, with
    ``keep_images``, the condensed images (rounded to 1e-3)."""
    data = load_data(setup) if data is None else data
    records, alpha = _run_phases(setup, data, phases, seed,
                                 evaluate_fn=lambda a: evaluate(setup, data, a, seed),
                                 eval_every=eval_every, checkpoint_dir=checkpoint_dir,
                                 progress=progress)
    tail = records[-max(1, len(records) // 10):]
    out = {"test_acc": records[-1]["test_acc"], "test_acc_T": records[-1]["test_acc_T"],
           "outer_loss": float(np.mean([r["outer_loss"] for r in tail])),
           "wall_time_s": records[-1]["wall_time_s"], "steps": len(records),
           **{k: int(sum(r[k] for r in records)) for k in ("jvps", "vjps", "hvps", "inner_steps")},
           **_history(records)}
    if keep_images:
        out["images"] = torch.round(alpha["images"].detach().cpu().double() * 1000).div(1000).tolist()
    return out


# ------------------------------------------------------------------------------ Table 1
def _setup_for(base: Setup, dataset: str, ipc: int, per_dataset: dict, per_ipc: dict,
               overrides: list) -> tuple[Setup, dict]:
    """The setup of one (dataset, IPC) cell and its schedule (steps, lr, warm_start)."""
    sched = {"steps": 100, "lr": 1e-2, "warm_start": 0}
    fields_ = set(Setup.__dataclass_fields__)
    changes = dict(per_dataset.get(dataset, {}), dataset=dataset, ipc=ipc)
    for k, v in per_ipc.get(ipc, {}).items():
        (sched if k in sched else changes)[k] = v
    for o in overrides:
        if o.get("dataset") == dataset and o.get("ipc") == ipc:
            changes.update({k: v for k, v in o.items() if k not in ("dataset", "ipc")})
    unknown = set(changes) - fields_
    check(not unknown, f"unknown setting(s) {sorted(unknown)}; known: {sorted(fields_ | set(sched))}")
    return replace(base, **changes), sched


def _phases_for(method: dict, sched: dict) -> list[Phase]:
    m, opts = method["method"], dict(method.get("options", {}))
    warm, steps, lr = int(sched["warm_start"]), int(sched["steps"]), float(sched["lr"])
    check(0 <= warm < steps, f"warm_start ({warm}) must be in [0, steps={steps})")
    head = [Phase("hessian-free", warm, {}, lr)] if warm else []
    return head + [Phase(m, steps - warm, opts, lr)]


def _slug(label: str) -> str:
    """An ASCII file-name part: ``"(FG)²U"`` → ``fg2u``, ``"RGU (full)"`` → ``rgu-full``."""
    ascii_ = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.replace("(", "").replace(")", "")).strip("-")


def run_table1(base: Setup, methods: dict, *, datasets=("digits",), ipcs=(1,), seeds=(0, 1, 2),
               per_dataset: dict | None = None, per_ipc: dict | None = None,
               overrides: list | None = None, out_dir: str | Path = "results/fg2u_condensation/smoke",
               keep_images_seed: int | None = 0, progress: bool = False) -> pd.DataFrame:
    """Table 1: every (dataset, IPC, method, seed) run, plus "random real (α₀)" and "whole data".

    ``methods``: label → ``{"method": name, "options": {...}}``. ``per_dataset[name]`` and
    ``per_ipc[ipc]`` override :class:`Setup` fields; ``per_ipc[ipc]`` also sets the schedule
    ``steps`` (outer steps, warm start included), outer Adam ``lr`` and ``warm_start`` (that many
    Hessian-free steps first, the paper's two-phase warm start). ``overrides``: a list of
    ``{"dataset": ..., "ipc": ..., field: value}``. Each run is a cached JSON file under
    ``out_dir``; returns one row per run (accuracies in %). The condensed images of seed
    ``keep_images_seed`` at the smallest IPC are kept in the result files (for a figure)."""
    per_dataset, overrides = per_dataset or {}, overrides or []
    per_ipc = {int(k): v for k, v in (per_ipc or {}).items()}  # papermill passes keys as strings
    for d in datasets:  # fail before any computation
        _check_available(d)
    out_dir, rows, loaded = Path(out_dir), [], {}
    ck = _checkpoint_dir(out_dir)

    def data_for(s: Setup) -> CondensationData:  # one copy of the real images per split
        key = (s.dataset, s.image_size, s.pool_size, s.test_size, s.official_split, s.split_seed,
               s.device, s.dtype)
        if key not in loaded:
            loaded[key] = load_data(s)
        return loaded[key]

    for d in datasets:
        for ipc in ipcs:
            setup, sched = _setup_for(base, d, ipc, per_dataset, per_ipc, overrides)
            cell = {"data": PAPER_NAMES[d], "ipc": ipc}
            for seed in seeds:
                name = f"{d}_ipc{ipc}_seed{seed}"
                res = cached(out_dir / f"{name}_random-real.json",
                             {"setup": asdict(setup), "seed": seed, "what": "alpha0"},
                             lambda: evaluate(setup, data_for(setup),
                                              initial_images(setup, data_for(setup), seed), seed))
                rows.append({**cell, "method": "random real (α₀)", "seed": seed, **res["result"],
                             "wall_time_s": 0.0})
                if ipc == min(ipcs):  # independent of the IPC: shown once, as in the paper
                    res = cached(out_dir / f"{d}_whole-data_seed{seed}.json",
                                 {"setup": asdict(replace(setup, ipc=1)), "seed": seed, "what": "whole data"},
                                 lambda: {"test_acc": whole_data_accuracy(setup, data_for(setup), seed)})
                    rows.append({**cell, "method": "whole data", "seed": seed, **res["result"],
                                 "wall_time_s": res["provenance"]["wall_time_s"]})
                for label, method in methods.items():
                    phases = _phases_for(method, sched)
                    keep = keep_images_seed == seed and ipc == min(ipcs)
                    cfg = {"setup": asdict(setup), "seed": seed, "phases": [asdict(p) for p in phases],
                           "keep_images": keep}
                    r = cached(out_dir / f"{name}_{_slug(label)}.json", cfg,
                               lambda: condense(setup, phases, seed, data=data_for(setup), checkpoint_dir=ck,
                                                keep_images=keep, progress=progress))["result"]
                    rows.append({**cell, "method": label, "seed": seed,
                                 **{k: r[k] for k in ("test_acc", "test_acc_T", "outer_loss", "wall_time_s",
                                                      "steps", "jvps", "vjps", "hvps", "inner_steps")},
                                 "warm_start": sched["warm_start"], "history": r["history"],
                                 "images": r.get("images")})
    df = pd.DataFrame(rows)
    df[["test_acc", "test_acc_T"]] *= 100
    return df


# ------------------------------------------------------------------------------ gradient quality
def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v / (u.norm() * v.norm()).clamp_min(1e-30))


def fg2u_expected_cosine(N: int, b: int) -> float:
    r"""Expected cosine of (FG)²U (Rademacher, b directions) with the true gradient in N dimensions.

    Write each direction as :math:`v_i = z_i u + v_i^\perp` with :math:`u = \nabla F/\|\nabla F\|`.
    Then :math:`\hat g = \|\nabla F\| (A u + \frac1b\sum_i z_i v_i^\perp)` with
    :math:`A = \frac1b\sum_i z_i^2`, and for N ≫ b the noise has squared norm
    :math:`\frac{N-1}{b} A` (Lemma 3.1 in expectation), so
    :math:`\cos = (1 + \frac{N-1}{bA})^{-1/2}`. With :math:`z_i` ≈ standard normal (the
    Rademacher sum :math:`u\cdot v_i` of many small terms), :math:`bA \sim \chi^2_b`; the mean is
    computed by quadrature. To first order (A = 1): :math:`(1 + \frac{N-1}{b})^{-1/2}`."""
    from scipy import stats
    return float(stats.chi2(b).expect(lambda x: 1.0 / math.sqrt(1.0 + (N - 1) / max(x, 1e-300))))


def _measure(problem, alpha, method, options, repeats):
    """Cost counts, best-of-``repeats`` wall time and (separately) peak memory of one call."""
    times, res = [], None
    for _ in range(repeats):
        res = hypergrad(problem, alpha, method, **options)
        times.append(res.cost.wall_time_s)
    mem = hypergrad(problem, alpha, method, track_memory=True, **options).cost
    c = res.cost
    return {"jvps": c.jvps, "vjps": c.vjps, "hvps": c.hvps, "inner_steps": c.inner_steps,
            "products": c.jvps + c.vjps + c.hvps, "wall_time_s": min(times),
            "peak_memory_bytes": mem.peak_memory_bytes, "memory_method": mem.memory_method}


def gradient_quality(setup: Setup, estimators: dict, *, seed: int = 0, steps: int = 40, lr: float = 1e-2,
                     checkpoints=(0, 20, 40), problems: int = 2, fg2u_b=(1, 4, 16, 64),
                     directions: int = 64, chunk: int = 16, timing_repeats: int = 2,
                     out_dir: str | Path = "results/fg2u_gradient_quality/smoke",
                     progress: bool = False) -> dict:
    """How close each estimator is to the exact hypergradient, and what it costs.

    A condensation run with the exact gradient (``rmd``, ``steps`` outer steps, Adam ``lr``)
    gives α at the outer steps ``checkpoints``. At each, for ``problems`` freshly drawn inner
    problems (net init and real batch of the next outer steps), the exact gradient g (``rmd``)
    is compared with every estimator in ``estimators`` (label → ``{"method", "options"}``) by
    the cosine similarity. (FG)²U: ``directions`` Rademacher directions are pushed through the
    loop once (:func:`~metagrad.estimators.forward.directional_derivatives`); for each b in
    ``fg2u_b`` the directions are cut into ``directions // b`` disjoint groups, each an
    independent (FG)²U estimate with b directions. Costs (counts, best-of-``timing_repeats``
    wall time, peak memory with ``track_memory=True``) are measured at the first checkpoint,
    (FG)²U with ``chunk=min(b, chunk)`` directions vectorised at once.

    Cached in ``out_dir/quality.json``; returns DataFrames ``cosines`` (one row per estimate:
    checkpoint, problem, estimator, b, cos, and the relative error of the forward-mode
    directional derivatives against ``V @ g``), ``costs`` and ``trajectory``, and ``N``, ``P``.
    """
    check(all(0 <= c <= steps for c in checkpoints),
          f"checkpoints {checkpoints} must lie in [0, steps={steps}]")
    check(max(fg2u_b) <= directions, f"directions ({directions}) must be >= max(fg2u_b) ({max(fg2u_b)})")
    config = {"setup": asdict(setup), "estimators": estimators, "seed": seed, "steps": steps, "lr": lr,
              "checkpoints": list(checkpoints), "problems": problems, "fg2u_b": list(fg2u_b),
              "directions": directions, "chunk": chunk, "timing_repeats": timing_repeats}
    out_dir = Path(out_dir)

    def compute():
        data = load_data(setup)
        snap_every = math.gcd(*[c for c in checkpoints if c > 0] or [steps])
        records, _ = _run_phases(setup, data, [Phase("rmd", steps, {}, lr)], seed,
                                 evaluate_fn=lambda a: {"snapshot": a["images"].clone()},
                                 eval_every=snap_every, checkpoint_dir=_checkpoint_dir(out_dir),
                                 progress=progress)
        snaps = {0: initial_images(setup, data, seed)}
        snaps.update({r["step"]: {"images": r["snapshot"]} for r in records if "snapshot" in r})
        cos_rows, cost_rows = [], []
        for c in checkpoints:
            alpha = snaps[c]
            for p in range(problems):
                problem = make_problem(setup, data, seed, c + p)
                exact = hypergrad(problem, alpha, "rmd")
                g = flatten(exact.grad)
                V = fg2u_directions(alpha, directions, seed=_mix(seed, c, p, 5))
                _, s = directional_derivatives(problem, alpha, V, Cost(), chunk=chunk)
                where = {"checkpoint": c, "problem": p,
                         "jvp_rel_err": float((s - V @ g).abs().max() / (V @ g).abs().max())}
                for label, est in estimators.items():
                    r = hypergrad(problem, alpha, est["method"], **est.get("options", {}))
                    cos_rows.append({**where, "estimator": label, "b": 0,
                                     "cos": [round(_cos(flatten(r.grad), g), 6)]})
                for b in fg2u_b:  # directions // b independent estimates with b directions each
                    cos_rows.append({**where, "estimator": "(FG)²U", "b": b, "cos": [
                        round(_cos(s[j * b:(j + 1) * b] @ V[j * b:(j + 1) * b] / b, g), 6)
                        for j in range(directions // b)]})
                if c == checkpoints[0] and p == 0:
                    cost_rows.append({"estimator": "RGU (full)", "b": 0,
                                      **_measure(problem, alpha, "rmd", {}, timing_repeats)})
                    for label, est in estimators.items():
                        cost_rows.append({"estimator": label, "b": 0, **_measure(
                            problem, alpha, est["method"], est.get("options", {}), timing_repeats)})
                    for b in fg2u_b:
                        cost_rows.append({"estimator": "(FG)²U", "b": b, **_measure(
                            problem, alpha, "fg2u", {"b": b, "chunk": min(b, chunk), "seed": 0},
                            timing_repeats)})
        alpha0 = snaps[checkpoints[0]]
        return {"cosines": cos_rows, "costs": cost_rows, "N": tree_numel(alpha0),
                "P": tree_numel(make_problem(setup, data, seed, 0).init),
                "trajectory": _history(records)["history"]}
    payload = cached(out_dir / "quality.json", config, compute)
    res = payload["result"]
    cosines = pd.DataFrame(res["cosines"]).explode("cos", ignore_index=True).astype({"cos": float})
    return {"cosines": cosines, "costs": pd.DataFrame(res["costs"]),
            "trajectory": pd.DataFrame(res["trajectory"]), "N": res["N"], "P": res["P"],
            "provenance": payload["provenance"]}


# ------------------------------------------------------------------------------ two-phase
def two_phase_schedules(cheap: dict, fg2u: dict, *, fg2u_steps: int, cheap_per_fg2u: float,
                        switch: float, lr: float) -> dict[str, list[Phase]]:
    """The three schedules at one budget B = the wall-clock of ``fg2u_steps`` (FG)²U steps,
    given that one (FG)²U step costs as much as ``cheap_per_fg2u`` cheap steps:
    cheap alone (B in cheap steps), (FG)²U alone, and cheap for a fraction ``switch`` of B
    followed by (FG)²U for the rest."""
    check(0 < switch < 1, f"switch must be in (0, 1), got {switch!r}")
    check(cheap_per_fg2u > 0, f"cheap_per_fg2u must be > 0, got {cheap_per_fg2u!r}")
    c = (cheap["method"], dict(cheap.get("options", {})))
    f = (fg2u["method"], dict(fg2u.get("options", {})))
    n_cheap = max(1, round(switch * cheap_per_fg2u * fg2u_steps))
    n_fg2u = max(1, fg2u_steps - round(switch * fg2u_steps))
    name = cheap.get("label", cheap["method"])
    return {f"{name} alone": [Phase(c[0], max(1, round(cheap_per_fg2u * fg2u_steps)), c[1], lr)],
            "(FG)²U alone": [Phase(f[0], fg2u_steps, f[1], lr)],
            f"{name} → (FG)²U": [Phase(c[0], n_cheap, c[1], lr), Phase(f[0], n_fg2u, f[1], lr)]}


def schedule_table(schedules: dict[str, list[Phase]]) -> pd.DataFrame:
    """One row per schedule: its phases in words and its number of outer steps."""
    return pd.DataFrame([{"schedule": name,
                          "phases": " + ".join(f"{p.steps} × {p.method}" for p in phases),
                          "outer steps": sum(p.steps for p in phases)}
                         for name, phases in schedules.items()])


def two_phase(setup: Setup, cheap: dict, fg2u: dict, *, fg2u_steps: int = 20,
              cheap_per_fg2u: float = 4.0, switch: float = 0.5, lr: float = 1e-2, seeds=(0, 1),
              eval_every: int = 10,
              out_dir: str | Path = "results/fg2u_two_phase/smoke", progress: bool = False) -> dict:
    """Quality against wall-clock for the schedules of :func:`two_phase_schedules`.

    Every (schedule, seed) is a cached :func:`condense` run with test accuracy every
    ``eval_every`` outer steps of a phase and at the end of each phase. Returns DataFrames
    ``runs`` (one row per run: final accuracies, measured wall time, steps), ``evals`` (the
    evaluation points with their wall-clock, α₀ at step 0) and ``losses`` (the per-step outer
    loss), and the ``schedules``."""
    schedules = two_phase_schedules(cheap, fg2u, fg2u_steps=fg2u_steps, cheap_per_fg2u=cheap_per_fg2u,
                                    switch=switch, lr=lr)
    out_dir, data = Path(out_dir), None
    runs, evals, losses = [], [], []

    def loaded():
        nonlocal data
        data = load_data(setup) if data is None else data
        return data
    start = {seed: cached(out_dir / f"{setup.dataset}_ipc{setup.ipc}_alpha0_seed{seed}.json",
                          {"setup": asdict(setup), "seed": seed, "what": "alpha0"},
                          lambda: evaluate(setup, loaded(), initial_images(setup, loaded(), seed),
                                           seed))["result"]
             for seed in seeds}
    for label, phases in schedules.items():
        for seed in seeds:
            cfg = {"setup": asdict(setup), "seed": seed, "phases": [asdict(p) for p in phases],
                   "eval_every": eval_every}

            def compute(phases=phases, seed=seed):
                return condense(setup, phases, seed, data=loaded(), eval_every=eval_every,
                                checkpoint_dir=_checkpoint_dir(out_dir), progress=progress)
            r = cached(out_dir / f"{setup.dataset}_ipc{setup.ipc}_{_slug(label)}_seed{seed}.json", cfg,
                       compute)["result"]
            runs.append({"schedule": label, "seed": seed, "test_acc": 100 * r["test_acc"],
                         "test_acc_T": 100 * r["test_acc_T"], "outer_loss": r["outer_loss"],
                         "wall_time_s": r["wall_time_s"], "steps": r["steps"],
                         "phases": schedule_table({label: phases}).phases.iloc[0]})
            evals += [{"schedule": label, "seed": seed, "step": 0, "wall_time_s": 0.0, "phase": 0,
                       **start[seed]}] + [{"schedule": label, "seed": seed, **e} for e in r["evals"]]
            h = r["history"]
            losses += [{"schedule": label, "seed": seed, "step": s, "outer_loss": v, "wall_time_s": t}
                       for s, v, t in zip(h["step"], h["outer_loss"], h["wall_time_s"])]
    evals = pd.DataFrame(evals)
    for k in ("test_acc", "test_acc_T"):
        evals[k] = 100 * evals[k]
    return {"runs": pd.DataFrame(runs), "evals": evals, "losses": pd.DataFrame(losses),
            "schedules": {k: [asdict(p) for p in v] for k, v in schedules.items()}}


# ------------------------------------------------------------------------------ tables, figures
def table1_summary(runs: pd.DataFrame, *, paper_data: dict | None = None) -> pd.DataFrame:
    """Our Table 1 beside the paper's: one row per (data, IPC, method) with n seeds, test
    accuracy after E evaluation steps and after T steps (mean ± 95 % CI over seeds, in %) and
    the paper's number. ``paper_data`` maps our data set to the paper's row to compare with
    (default: digits → MNIST, the paper's nearest data set)."""
    from ..report import mean_ci, fmt_mean_ci
    paper_data = {"digits": "MNIST", **(paper_data or {})}
    paper = PAPER_TABLE1.set_index(["data", "ipc", "method"])
    rows = []
    for (d, ipc, m), g in runs.groupby(["data", "ipc", "method"], sort=False):
        mean, ci = mean_ci(g["test_acc"])
        has_T = g["test_acc_T"].notna().any()
        mean_T, ci_T = mean_ci(g["test_acc_T"]) if has_T else (math.nan, math.nan)
        ref = paper_data.get(d, d)
        key = (ref, ipc if m != "whole data" else 1, m)
        p = paper.loc[key] if key in paper.index else None
        rows.append({"data": d, "IPC": ipc, "method": m, "n": len(g), "mean": round(mean, 2),
                     "ours: test acc % (E steps)": fmt_mean_ci(mean, ci),
                     "ours: after T steps": fmt_mean_ci(mean_T, ci_T) if has_T else "—",
                     f"paper ({ref})": ("—" if p is None else f"{p.acc:.2f}"
                                        + ("" if math.isnan(p.pm) else f" ± {p.pm:.2f}"))})
    return pd.DataFrame(rows)


def paired_greater(a: pd.Series, b: pd.Series) -> float:
    """One-sided paired t-test p-value for mean(a) > mean(b); ``a`` and ``b`` indexed by seed.

    Runs of one seed share α₀, the evaluation nets and the sampling streams, so their
    differences are much less noisy than the runs themselves."""
    from scipy import stats
    a, b = a.align(b, join="inner")
    if len(a) < 2:
        return math.nan
    d = (a - b).to_numpy(float)
    if np.all(d == d[0]):  # no spread: the t statistic is undefined
        return 0.0 if d[0] > 0 else 1.0
    return float(stats.ttest_rel(a, b, alternative="greater").pvalue)


def paper_orderings(runs: pd.DataFrame, *, paper_data: dict | None = None,
                    alpha: float = 0.05) -> pd.DataFrame:
    """Every ordering "A > B" of Table 1 (same data row, same IPC) tested on our runs: the mean
    difference in accuracy points and the one-sided paired t-test over seeds
    (:func:`paired_greater`; ``holds`` when p < ``alpha``, ``reversed`` when the opposite
    one-sided test has p < ``alpha``)."""
    paper_data = {"digits": "MNIST", **(paper_data or {})}
    rows = []
    for (d, ipc), g in runs.groupby(["data", "ipc"], sort=False):
        ref = PAPER_TABLE1[(PAPER_TABLE1.data == paper_data.get(d, d)) & (PAPER_TABLE1.ipc == ipc)]
        ref = ref[ref.method.isin(set(g.method))].set_index("method").acc
        acc = {m: x.set_index("seed").test_acc for m, x in g.groupby("method")}
        for a in ref.index:
            for b in ref.index:
                if ref[a] > ref[b]:
                    p, q = paired_greater(acc[a], acc[b]), paired_greater(acc[b], acc[a])
                    rows.append({"data": d, "claim": f"IPC {ipc}: {a} > {b}",
                                 "paper gap": round(ref[a] - ref[b], 2),
                                 "our gap": round(float(acc[a].mean() - acc[b].mean()), 2),
                                 "p": round(p, 4), "holds": bool(p < alpha), "reversed": bool(q < alpha)})
    return pd.DataFrame(rows)


def plot_table1(runs: pd.DataFrame, *, paper_data: dict | None = None):
    """Bars: our test accuracy (mean ± 95 % CI over seeds) per method and IPC; markers: the
    paper's Table 1 for the compared data set."""
    from metagrad.figures import legend_outside, subplots

    from ..report import mean_ci
    paper_data = {"digits": "MNIST", **(paper_data or {})}
    cells = list(runs.groupby(["data", "ipc"], sort=False))
    ncols = min(2, len(cells))
    fig, axes = subplots(ncols, -(-len(cells) // ncols), panel=(3.6, 3.2))
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    for ax, ((d, ipc), g) in zip(axes.flat, cells):
        methods = list(dict.fromkeys(g.method))
        stats = [mean_ci(g[g.method == m].test_acc) for m in methods]
        x = np.arange(len(methods))
        ax.bar(x, [s[0] for s in stats], yerr=[s[1] for s in stats], color="C0", alpha=0.8,
               capsize=3, label=f"ours ({d})")
        ref = PAPER_TABLE1[(PAPER_TABLE1.data == paper_data.get(d, d))]
        pv = [ref[(ref.method == m) & (ref.ipc == (1 if m == "whole data" else ipc))].acc
              for m in methods]
        ax.plot(x, [v.iloc[0] if len(v) else np.nan for v in pv], "D", color="C3",
                label=f"paper ({paper_data.get(d, d)})")
        ax.set_xticks(x, methods, rotation=35, ha="right")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{d}, IPC {ipc}")
        ax.set_ylim(0, 100)
    legend_outside(fig, where="below", ncols=4)
    return fig


def quality_summary(q: dict) -> pd.DataFrame:
    """One row per estimator (and per b for (FG)²U): cosine with the exact gradient (mean ±
    95 % CI over checkpoints, problems and direction groups), the Lemma 3.1 prediction for
    (FG)²U, cost counts, wall time relative to ``rmd`` and peak memory."""
    from ..report import mean_ci
    cos, costs = q["cosines"], q["costs"].set_index(["estimator", "b"])
    base = costs.loc[("RGU (full)", 0)]
    rows = [{"estimator": "RGU (full)", "b": 0, "cos": 1.0, "ci": 0.0, "predicted": math.nan}]
    for (e, b), g in cos.groupby(["estimator", "b"], sort=False):
        m, h = mean_ci(g.cos)
        rows.append({"estimator": e, "b": int(b), "cos": m, "ci": h,
                     "predicted": fg2u_expected_cosine(q["N"], int(b)) if b else math.nan})
    out = pd.DataFrame(rows)
    c = costs.reindex(list(zip(out.estimator, out.b)))
    for k in ("jvps", "vjps", "hvps", "products"):
        out[k] = c[k].to_numpy().astype(int)
    out["wall time s"] = c.wall_time_s.to_numpy()
    out["time / RGU"] = (c.wall_time_s / base.wall_time_s).to_numpy()
    out["memory / RGU"] = (c.peak_memory_bytes / base.peak_memory_bytes).to_numpy()
    out["peak memory MiB"] = (c.peak_memory_bytes / 2**20).to_numpy()
    return out


def format_quality(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`quality_summary` for display: rounded cosines, measured time and memory as text
    with their units (show it as HTML: a plain-text table pads columns to the width of the
    measured numbers, which changes from run to run)."""
    return pd.DataFrame({
        "estimator": summary.estimator, "b": summary.b.where(summary.b > 0, "—"),
        "cosine (mean ± CI)": [f"{m:.3f} ± {h:.3f}" for m, h in zip(summary.cos, summary.ci)],
        "Lemma 3.1": [("—" if math.isnan(p) else f"{p:.3f}") for p in summary.predicted],
        "JVPs": summary.jvps, "VJPs": summary.vjps, "HVPs": summary.hvps,
        "wall time": [f"{1000 * t:.1f} ms" for t in summary["wall time s"]],
        "peak memory": [f"{m:.2f} MiB (measured)" for m in summary["peak memory MiB"]]})


def plot_quality(summary: pd.DataFrame, *, N: int):
    """Cosine with the exact hypergradient against peak memory (left) and wall time (right),
    both relative to full reverse mode; (FG)²U as a line over b with the Lemma 3.1 prediction."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    from metagrad.figures import legend_outside, subplots
    fig, axes = subplots(2, panel=(3.6, 3.0))
    axes = axes[0]
    fg = summary[summary.estimator == "(FG)²U"]
    other = summary[summary.estimator != "(FG)²U"]
    for ax, key in zip(axes, ("memory / RGU", "time / RGU")):
        ax.errorbar(fg[key], fg.cos, yerr=fg.ci, fmt="o-", color="C0", label="(FG)²U (b labelled)")
        ax.plot(fg[key], fg.predicted, "--", color="C0", alpha=0.6, label="Lemma 3.1 prediction")
        for _, r in fg.iterrows():
            ax.annotate(f"b={r.b}", (r[key], r.cos), textcoords="offset points", xytext=(4, -10),
                        fontsize=9)
        for i, (_, r) in enumerate(other.iterrows()):
            ax.errorbar([r[key]], [r.cos], yerr=[r.ci], fmt="s", color=f"C{i + 1}", label=r.estimator)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{key.split(' /')[0]} / full reverse mode's (ratio, log)")
        ax.set_ylabel("cosine with exact hypergradient")
        ax.axhline(0, color="k", lw=0.5)
    axes[0].set_title(f"what each estimator buys\nfor its memory (N = {N:,})")
    axes[1].set_title("... and for its wall-clock\ntime (CPU)")
    legend_outside(fig, where="below", ncols=3)
    return fig


def at_budget(tp: dict, budget_s: float) -> pd.DataFrame:
    """Per (schedule, seed): the last evaluation within ``budget_s`` seconds of outer-loop
    wall-clock (its step, wall time and test accuracies)."""
    ev = tp["evals"][tp["evals"].wall_time_s <= budget_s]
    return ev.sort_values("step").groupby(["schedule", "seed"], sort=False).last().reset_index()


def two_phase_summary(tp: dict, *, budget_s: float | None = None) -> pd.DataFrame:
    """Per schedule: its phases, outer steps, measured wall time, final test accuracy after E
    and after T evaluation steps (mean ± 95 % CI over seeds, %) and the final outer loss; with
    ``budget_s``, also the accuracy after T steps at the last evaluation within that budget."""
    from ..report import mean_ci, fmt_mean_ci
    rows = []
    cut = at_budget(tp, budget_s) if budget_s is not None else None
    for s, g in tp["runs"].groupby("schedule", sort=False):
        row = {"schedule": s, "phases": g.phases.iloc[0], "outer steps": int(g.steps.iloc[0]),
               "wall time": f"{g.wall_time_s.mean():.1f} s",
               "test acc % (E steps)": fmt_mean_ci(*mean_ci(g.test_acc)),
               "after T steps": fmt_mean_ci(*mean_ci(g.test_acc_T)),
               "outer loss": fmt_mean_ci(*mean_ci(g.outer_loss), digits=3)}
        if cut is not None:
            at = cut[cut.schedule == s].test_acc_T
            row["after T steps, at the common budget"] = fmt_mean_ci(*mean_ci(at))
        rows.append(row)
    return pd.DataFrame(rows)


def two_phase_claims(tp: dict, *, metric: str = "test_acc_T", budget_s: float | None = None,
                     alpha: float = 0.05) -> pd.DataFrame:
    """Every "A > B" between the schedules on the final ``metric`` (or, with ``budget_s``, on
    its value at the last evaluation within the budget, :func:`at_budget`): the mean gap and
    the one-sided paired t-test over seeds (:func:`paired_greater`; ``holds`` when p < ``alpha``)."""
    runs = tp["runs"] if budget_s is None else at_budget(tp, budget_s)
    acc = {s: g.set_index("seed")[metric] for s, g in runs.groupby("schedule", sort=False)}
    rows = []
    for a in acc:
        for b in acc:
            if a != b:
                p = paired_greater(acc[a], acc[b])
                rows.append({"claim": f"{a} > {b}",
                             "gap": round(float(acc[a].mean() - acc[b].mean()), 2),
                             "p": round(p, 4), "holds": bool(p < alpha)})
    return pd.DataFrame(rows)


def plot_two_phase(tp: dict, *, smooth: int = 10, budget_s: float | None = None):
    """Test accuracy (after T evaluation steps, mean over seeds) and the outer loss (moving
    average over ``smooth`` steps, mean over seeds) against measured wall-clock; a dotted line
    at ``budget_s``."""
    from metagrad.figures import legend_outside, subplots
    fig, axes = subplots(2, panel=(3.6, 3.0))
    axes = axes[0]
    for i, (s, g) in enumerate(tp["evals"].groupby("schedule", sort=False)):
        m = g.groupby("step").agg(acc=("test_acc_T", "mean"), t=("wall_time_s", "mean"))
        axes[0].plot(m.t, m.acc, "o-", color=f"C{i}", ms=3, label=s)
    for i, (s, g) in enumerate(tp["losses"].groupby("schedule", sort=False)):
        m = g.groupby("step").agg(loss=("outer_loss", "mean"), t=("wall_time_s", "mean"))
        axes[1].plot(m.t, m.loss.rolling(smooth, min_periods=1).mean(), color=f"C{i}", label=s)
    axes[0].set_ylabel("test accuracy (%)\n(net trained T steps)")
    axes[1].set_ylabel(f"outer loss\n(moving average of {smooth})")
    for ax in axes:
        ax.set_xlabel("outer-loop wall-clock (s)")
        if budget_s is not None:
            ax.axvline(budget_s, color="k", ls=":", lw=1, label="common budget")
    legend_outside(fig, where="below", ncols=4)
    return fig


def plot_images(runs: pd.DataFrame, *, ipc: int = 1, seed: int = 0, data: str | None = None):
    """The condensed images of one seed: one row per method, one column per class."""
    from metagrad.figures import MAX_WIDTH_IN, subplots
    g = runs[(runs.ipc == ipc) & (runs.seed == seed) & runs["images"].notna()]
    g = g[g.data == (data or g.data.iloc[0])]
    imgs = [np.asarray(x) for x in g["images"]]
    n_rows, n_cols = len(imgs), imgs[0].shape[0]
    cell = min(0.6, (MAX_WIDTH_IN - 1.6) / n_cols)  # room for the method names on the left
    fig, axes = subplots(n_cols, n_rows, panel=(cell, cell), width=cell * n_cols + 1.6)
    for row, (method, x) in zip(axes, zip(g.method, imgs)):
        for ax, img in zip(row, x):
            img = img.transpose(1, 2, 0)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(method, rotation=0, ha="right", va="center")
    fig.suptitle(f"condensed images, IPC {ipc}, seed {seed}")
    return fig
