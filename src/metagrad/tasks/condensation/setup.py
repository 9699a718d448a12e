"""Data condensation: the paper's numbers, the configuration and the data."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
import torch

from ...errors import ConfigError, check
from ...estimators import hypergrad
from ...optim import SGD

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
_CIFAR = {"cifar10": ("CIFAR-10", 10), "cifar100": ("CIFAR-100", 100)}  # name, classes
#: data set name -> side of its images as stored (pixels).
NATIVE_SIZE = {"digits": 8, "mnist": 28, "cifar10": 32, "cifar100": 32}


from ...config import resolve_device  # noqa: F401


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class Setup:
    """Everything that defines the condensation problem and its evaluation (not the method).

    Data: ``dataset`` (``digits``, ``mnist``, ``cifar10``, ``cifar100``) at ``image_size``
    (``None``: the native size, 8 / 28 / 32; digits and MNIST may be resized — MNIST only down,
    by area averaging, e.g. 14 = means of 2×2 pixels; CIFAR only at 32);
    ``pool_size``/``test_size`` real images drawn *disjointly* from one split with
    :func:`metagrad.data.disjoint_split` (seed ``split_seed``) — for MNIST from the 10 000-image
    test split (the only one the shared data holds) unless ``official_split`` (pool = the first
    ``pool_size`` of the 60 000 training images, test = the first ``test_size`` of the 10 000 test
    images; needs ``metagrad fetch mnist``). CIFAR-10/100 (3×32×32, 10/100 classes, fine labels;
    ``metagrad fetch cifar10`` / ``cifar100``) are split the same way from the official 50 000 /
    10 000 images.
    Net: depth-``depth`` ConvNet of ``width`` channels, InstanceNorm with ``norm_eps``.
    Inner run: ``T`` steps of SGD (``inner_lr``; heavy-ball ``inner_momentum`` if > 0) on the
    synthetic images with L2 ``weight_decay``. Outer loss: ``real_batch`` real images per step.
    α₀: ``init`` = ``"real"`` (random real images of each class) or ``"noise"`` (uniform).
    Evaluation: ``eval_nets`` fresh nets trained for ``eval_steps`` steps at ``eval_lr`` on the
    synthetic images; ``whole_*``: the whole-data upper bound (minibatch SGD on the pool).
    ``device="auto"`` picks CUDA when available.
    """
    dataset: str = "digits"
    image_size: int | None = None
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
        check(self.image_size is None or (isinstance(self.image_size, int) and self.image_size >= 2),
              f"image_size must be None (the native size) or an integer >= 2, got {self.image_size!r}")
        native = NATIVE_SIZE[self.dataset]
        check(self.dataset == "digits" or self.image_size in (None, native)
              or (self.dataset == "mnist" and self.image_size < native),
              f"image_size={self.image_size} for {self.dataset}: "
              + ("CIFAR images are used at 32x32; leave image_size unset" if self.dataset in _CIFAR
                 else "MNIST can only be downsampled; use an image_size below 28 or leave it unset"))
        size = self.size
        check(size // 2 ** self.depth >= 2,
              f"a depth-{self.depth} ConvNet pools {size}x{size} images to "
              f"{size // 2 ** self.depth}x{size // 2 ** self.depth}: after InstanceNorm the last "
              f"AvgPool2 would average every feature map to 0. Use depth <= "
              f"{max(1, int(math.log2(max(size, 2))) - 1)} or larger images (image_size)")

    @property
    def size(self) -> int:
        """The side of the images in pixels: ``image_size``, or the data set's native size."""
        return self.image_size or NATIVE_SIZE[self.dataset]

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
    """Fail fast, before any run, when a CIFAR archive is missing: raises
    :class:`~metagrad.data.DataNotFoundError` naming the folder and ``metagrad fetch NAME``."""
    if dataset in _CIFAR:
        from ...data.cifar import _source
        _source(dataset, "test", None)
        _source(dataset, "train", None)


def data_source(setup: Setup) -> str:
    """Where the real images of ``setup`` come from, in words (without loading them)."""
    if setup.dataset in _CIFAR and setup.official_split:
        name, _ = _CIFAR[setup.dataset]
        return (f"{name} official splits: pool = the first {setup.pool_size} of the 50 000 "
                f"training images, test = the first {setup.test_size} of the 10 000 test images")
    if setup.dataset == "mnist" and setup.official_split:
        return (f"MNIST official splits: pool = the first {setup.pool_size} of the 60 000 training "
                f"images, test = the first {setup.test_size} of the 10 000 test images")
    resized = (f", downsampled to {setup.size}x{setup.size} (means over pixel blocks)"
               if setup.dataset == "mnist" and setup.size != NATIVE_SIZE["mnist"] else "")
    what = (f"the 10 000-image {PAPER_NAMES[setup.dataset]} test split{resized}"
            if setup.dataset in ("mnist", *_CIFAR) else
            f"scikit-learn's 1 797 digits at {setup.size}x{setup.size}")
    return (f"pool ({setup.pool_size}) and test set ({setup.test_size}) drawn disjointly from "
            f"{what} (split seed {setup.split_seed})")


def load_data(setup: Setup) -> CondensationData:
    """The real images of ``setup.dataset`` on ``setup.device``, split as :func:`data_source` says.

    ``digits``: scikit-learn's 8×8 digits (embedded, no files; ``image_size`` resizes), pool and
    test drawn disjointly from its 1 797 images. ``mnist``: pool and test drawn disjointly from
    the 10 000-image MNIST test split, or the official train/test splits (``official_split``).
    ``cifar10``/``cifar100``: the same with :func:`metagrad.data.load_cifar` (fine labels); a
    missing archive raises :class:`~metagrad.data.DataNotFoundError` naming ``metagrad fetch``.
    """
    from ... import data as md
    source = data_source(setup)
    kw = dict(dtype=setup.torch_dtype)

    def split(name):
        if setup.dataset in _CIFAR:
            return md.load_cifar(setup.dataset, name, **kw)
        x, y = md.load_mnist(name, **kw)
        if setup.size != NATIVE_SIZE["mnist"]:  # e.g. 28×28 → 14×14: means of 2×2 pixels
            x = torch.nn.functional.adaptive_avg_pool2d(x, setup.size)
        return x, y
    if setup.dataset in ("mnist", *_CIFAR) and setup.official_split:
        (px, py), (tx, ty) = split("train"), split("test")
        check(setup.pool_size <= len(px) and setup.test_size <= len(tx),
              f"pool_size={setup.pool_size} / test_size={setup.test_size} exceed the {len(px)} "
              f"training / {len(tx)} test images of {setup.dataset}; lower them")
        pool_idx = torch.arange(len(px))[:setup.pool_size]
        test_idx = torch.arange(len(tx))[:setup.test_size]
    else:
        x, y = (split("test") if setup.dataset in ("mnist", *_CIFAR)
                else md.load_digits(size=setup.size, **kw))
        pool_idx, test_idx = md.disjoint_split(len(x), (setup.pool_size, setup.test_size),
                                               seed=setup.split_seed)
        px, py, tx, ty = x, y, x, y
    dev = resolve_device(setup.device)
    n_classes = _CIFAR[setup.dataset][1] if setup.dataset in _CIFAR else int(py.max()) + 1
    return CondensationData(px[pool_idx].to(dev), py[pool_idx].to(dev), tx[test_idx].to(dev),
                            ty[test_idx].to(dev), n_classes, source)
