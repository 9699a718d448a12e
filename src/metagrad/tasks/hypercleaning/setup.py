"""Data hyper-cleaning: the paper's table, the configuration, the data, the network and the bilevel problem."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from ... import BilevelProblem, Momentum, unroll
from ...errors import check
from ...config import config_from_params
from ..toy import resolve_device


METHODS = ("none", "t1t2", "neumann", "greedy", "fg2u", "rmd")
CORE = ("none", "t1t2", "neumann")            # the paper's baselines: greedy is claimed to beat them
#: The fields ``per_dataset`` may override (the rest is shared by every dataset of a page).
PER_DATASET_KEYS = ("p_noise", "methods", "gammas", "model", "hidden", "channels", "image_size", "head_init",
                    "steps", "eval_every")
METRICS = {"val_acc": "validation accuracy", "test_acc": "test accuracy", "auroc": "AUROC"}

#: Table 2 of the paper (validation accuracy %, mean ± 95 % CI over 5 seeds; PAPERS.md B.3).
#: "no HPO" is α = 0; the validation set is the whole test split there.
PAPER_TABLE = pd.DataFrame(
    [(m, j, d, p, v, c) for m, j, vals in (
        ("none", 0, ((70.46, 5.47), (51.52, 1.61), (59.46, 4.12), (53.99, 6.88))),
        ("t1t2", 1, ((66.93, 1.2), (51.86, 2.77), (62.07, 4.41), (51.40, 5.53))),
        ("neumann", 11, ((71.97, 4.54), (54.14, 6.66), (60.63, 5.03), (47.68, 1.51))),
        ("greedy", 10, ((87.06, 0.77), (77.73, 1.70), (72.57, 1.09), (66.21, 1.50))))
     for (d, p), (v, c) in zip((("mnist", 0.3), ("mnist", 0.5), ("fashion", 0.3), ("fashion", 0.5)), vals)],
    columns=["method", "#JVPs (paper)", "dataset", "p_noise", "val_acc (paper)", "ci (paper)"])


@dataclass(frozen=True)
class HyperCleaningConfig:
    """Everything that defines the experiment. ``sizes[dataset]`` = (train, validation, test),
    drawn disjointly per seed. ``model``: ``"mlp"`` (one hidden layer of ``hidden`` units) or
    ``"cnn"`` (three 3×3 stride-2 convolutions with ``channels`` channels and a linear head).
    ``image_size``: images average-pooled to this side first (``None``: as stored).
    ``head_init``: the last linear layer starts ``"uniform"`` (PyTorch's default) or at
    ``"zero"`` (uniform predictions; the CNN leaves the chance plateau within T = 10 steps only so).
    ``per_dataset[name]`` overrides any of :data:`PER_DATASET_KEYS` for one dataset (e.g. the
    CNN on MNIST, the MLP on the 8×8 digits); :meth:`for_dataset` applies it."""
    scale: str = "smoke"
    datasets: tuple = ("digits",)
    p_noise: tuple = (0.3, 0.5)
    methods: tuple = METHODS
    gammas: tuple = (0.9, 0.99, 0.999)
    neumann_K: int = 5
    fg2u_b: int = 16
    seeds: tuple = (0, 1)
    sizes: dict = field(default_factory=lambda: {"digits": (500, 500, 797), "mnist": (1000, 1000, 2000),
                                                 "fashion": (1000, 1000, 2000)})
    model: str = "mlp"
    hidden: int = 32
    channels: int = 8
    image_size: int | None = None
    head_init: str = "uniform"
    per_dataset: dict = field(default_factory=dict)
    T: int = 10
    inner_lr: float = 0.1
    inner_momentum: float = 0.9
    outer_lr: float = 0.1
    steps: int = 200
    eval_every: int = 10
    data_root: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    checkpoint_every: int = 25
    results_dir: str = "results/greedy_hypercleaning"
    checkpoint_dir: str = "checkpoints/greedy_hypercleaning"   # git-ignored; relative to the repo root

    def __post_init__(self):
        for name, over in self.per_dataset.items():
            check(name in self.datasets, f"per_dataset names {name!r}, which is not in datasets {list(self.datasets)}")
            bad = sorted(set(over) - set(PER_DATASET_KEYS))
            check(not bad, f"per_dataset[{name!r}] overrides {bad}; only {list(PER_DATASET_KEYS)} may differ per dataset")
        check(self.head_init in ("uniform", "zero"), f"head_init must be 'uniform' or 'zero', got {self.head_init!r}")
        check(self.image_size is None or (isinstance(self.image_size, int) and self.image_size >= 4),
              f"image_size must be None or an integer ≥ 4, got {self.image_size!r}")
        unknown = sorted(set(self.methods) - set(METHODS))
        check(not unknown, f"unknown methods {unknown}; choose from {list(METHODS)}")
        check(all(0 < g <= 1 for g in self.gammas), f"gammas must be in (0, 1], got {self.gammas}")
        check(all(0 <= p < 1 for p in self.p_noise), f"p_noise must be in [0, 1), got {self.p_noise}")
        check(self.model in ("mlp", "cnn"), f"model must be 'mlp' or 'cnn', got {self.model!r}")
        check(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}")
        missing = sorted(set(self.datasets) - set(self.sizes))
        check(not missing, f"no sizes for datasets {missing}; give sizes[name] = [train, val, test]")
        check(set(self.datasets) <= {"digits", "mnist", "fashion"},
              f"datasets must be among digits, mnist, fashion; got {self.datasets}")

    @classmethod
    def from_params(cls, **params) -> "HyperCleaningConfig":
        """From a notebook's parameters: lists become tuples, unknown keys are refused."""
        return config_from_params(cls, params)

    def for_dataset(self, name: str) -> "HyperCleaningConfig":
        """This configuration with ``per_dataset[name]`` applied (itself when there is none)."""
        over = self.per_dataset.get(name)
        if not over:
            return self
        from dataclasses import replace
        return replace(self, per_dataset={}, **{k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})

    def model_key(self) -> dict:
        """The fields that define a run's computation (not where it is stored or shown)."""
        d = asdict(self)
        for k in ("scale", "datasets", "p_noise", "methods", "gammas", "seeds", "sizes", "data_root",
                  "device", "checkpoint_every", "results_dir", "checkpoint_dir", "per_dataset"):
            d.pop(k)
        if self.image_size is None:   # keeps the keys of runs made before these fields existed
            d.pop("image_size")
        if self.head_init == "uniform":
            d.pop("head_init")
        if self.model == "mlp":
            d.pop("channels")
        else:
            d.pop("hidden")
        return d


# ------------------------------------------------------------------------------ data
def load_dataset(name: str, root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` on the CPU: ``digits`` (embedded, 1 797 8×8 images) or the 10 000
    images of MNIST's / Fashion-MNIST's test split from the data root."""
    from ...data import load_digits, load_mnist
    if name == "digits":
        return load_digits()
    return load_mnist("test", root=root, kind=name)


def corrupt_labels(y: torch.Tensor, p: float, num_classes: int = 10, *,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each label, with probability ``p``, by a uniformly drawn *different* class.
    Returns ``(noisy labels, corrupted mask)``; the expected corrupted fraction is ``p``."""
    mask = torch.rand(len(y), generator=generator) < p
    shift = torch.randint(1, num_classes, (len(y),), generator=generator)
    return torch.where(mask, (y + shift) % num_classes, y), mask


@dataclass
class Instance:
    """One (dataset, p_noise, seed) problem: the bilevel problem, α₀, the three data sets and
    which training labels were corrupted."""
    problem: BilevelProblem
    alpha0: dict
    train: dict
    val: dict
    test: dict
    corrupted: torch.Tensor


def _uniform(shape, bound, g):
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound


def init_params(cfg: HyperCleaningConfig, image_shape, num_classes: int, g: torch.Generator) -> dict:
    """Initialisation from ``g``: PyTorch's default (uniform ±1/√fan_in) for linear layers,
    Kaiming-normal weights and zero biases for the convolutions."""
    c, h, _ = image_shape
    if cfg.model == "mlp":
        d = c * h * h
        w = {"W1": _uniform((d, cfg.hidden), d ** -0.5, g), "b1": _uniform((cfg.hidden,), d ** -0.5, g),
             "W2": _uniform((cfg.hidden, num_classes), cfg.hidden ** -0.5, g),
             "b2": _uniform((num_classes,), cfg.hidden ** -0.5, g)}
        if cfg.head_init == "zero":
            w["W2"], w["b2"] = torch.zeros_like(w["W2"]), torch.zeros_like(w["b2"])
        return w
    w, cin, side = {}, c, h
    for i in range(3):  # He (Kaiming-normal) init: with the uniform default the CNN barely moves in T = 10 steps
        w[f"conv{i}"] = torch.randn((cfg.channels, cin, 3, 3), generator=g, dtype=torch.float64) * (2 / (cin * 9)) ** 0.5
        w[f"bias{i}"] = torch.zeros(cfg.channels, dtype=torch.float64)
        cin, side = cfg.channels, (side + 1) // 2
    d = cfg.channels * side * side
    w["W"], w["b"] = _uniform((d, num_classes), d ** -0.5, g), _uniform((num_classes,), d ** -0.5, g)
    if cfg.head_init == "zero":
        w["W"], w["b"] = torch.zeros_like(w["W"]), torch.zeros_like(w["b"])
    return w


def net(w: dict, x: torch.Tensor) -> torch.Tensor:
    """Logits of the MLP (keys ``W1, b1, W2, b2``) or of the CNN (``conv0..2, bias0..2, W, b``)."""
    if "W1" in w:
        return torch.relu(x.flatten(1) @ w["W1"] + w["b1"]) @ w["W2"] + w["b2"]
    h = x
    for i in range(3):
        h = torch.relu(F.conv2d(h, w[f"conv{i}"], w[f"bias{i}"], stride=2, padding=1))
    return h.flatten(1) @ w["W"] + w["b"]


def inner_loss(w, alpha, batch):
    r""":math:`\frac1n\sum_i \sigma(\alpha_i)\,\mathrm{CE}_i` on the (noisy) training set."""
    ce = F.cross_entropy(net(w, batch["x"]), batch["y"], reduction="none")
    return (torch.sigmoid(alpha["logit"]) * ce).mean()


def outer_loss(w, alpha, batch):
    """Plain cross-entropy on the clean validation set."""
    return F.cross_entropy(net(w, batch["x"]), batch["y"])


def build(cfg: HyperCleaningConfig, dataset: str, p_noise: float, seed: int, *, data=None,
          device=None) -> Instance:
    """The problem for one (dataset, p_noise, seed): a disjoint train/val/test draw, label
    corruption and the network's initialisation all come from ``seed``; images are
    standardised with the training images' mean and standard deviation. ``data`` = the
    loaded ``(images, labels)`` (loaded here when omitted)."""
    from ...data import disjoint_split
    device = resolve_device(cfg.device) if device is None else device
    dtype = getattr(torch, cfg.dtype)
    X, Y = load_dataset(dataset, cfg.data_root) if data is None else data
    if cfg.image_size is not None and X.shape[-1] != cfg.image_size:
        X = F.adaptive_avg_pool2d(X.float(), cfg.image_size)   # e.g. MNIST 28×28 → 14×14 (2×2 means)
    tr, va, te = disjoint_split(len(X), cfg.sizes[dataset], seed=seed)
    g = torch.Generator().manual_seed(10_007 * seed + 1)
    y_noisy, corrupted = corrupt_labels(Y[tr], p_noise, 10, generator=g)
    mean, std = X[tr].mean(), X[tr].std()  # standardise with the training images' statistics
    to = lambda x: ((x - mean) / std).to(device=device, dtype=dtype)  # noqa: E731
    train = {"x": to(X[tr]), "y": y_noisy.to(device)}
    val = {"x": to(X[va]), "y": Y[va].to(device)}
    test = {"x": to(X[te]), "y": Y[te].to(device)}
    w0 = {k: v.to(device=device, dtype=dtype) for k, v in init_params(cfg, tuple(X.shape[1:]), 10, g).items()}
    problem = BilevelProblem(inner_loss, outer_loss, init=w0,
                             optimizer=Momentum(lr=cfg.inner_lr, momentum=cfg.inner_momentum), T=cfg.T,
                             inner_batches=train, outer_batch=val)
    alpha0 = {"logit": torch.zeros(len(tr), device=device, dtype=dtype)}
    return Instance(problem, alpha0, train, val, test, corrupted)


def evaluate(inst: Instance, alpha: dict) -> dict:
    """Retrain with the weights σ(α) (T inner steps) and score: validation loss and accuracy,
    held-out test accuracy, AUROC of α for clean (high weight) against corrupted examples."""
    from sklearn.metrics import roc_auc_score
    w = unroll.run(inst.problem, alpha)[0]
    with torch.no_grad():
        lv = net(w, inst.val["x"])
        lt = net(w, inst.test["x"])
        out = {"val_loss": float(F.cross_entropy(lv, inst.val["y"])),
               "val_acc": float((lv.argmax(1) == inst.val["y"]).float().mean()),
               "test_acc": float((lt.argmax(1) == inst.test["y"]).float().mean())}
    a = alpha["logit"].detach().double().cpu().numpy()
    out["auroc"] = float(roc_auc_score((~inst.corrupted).numpy(), a)) if 0 < int(inst.corrupted.sum()) < len(a) else math.nan
    return out
