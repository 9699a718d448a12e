r"""Few-shot meta-learning with warp layers (Yakovlev 2024, generalized greedy hypergradient,
ICLR-2025 version, Table 3; and the 10-shot table of the slides).

The bilevel problem (WarpGrad-style). A 6-layer CNN; its *even* conv layers 2, 4, 6 are the
hyperparameters α (shared by all tasks, never adapted in the inner loop); its odd conv layers
1, 3, 5 and the linear head are the inner parameters w, adapted to each N-way K-shot task:

.. math:: L_{train}(w, \alpha) = \mathrm{CE}(f_{w,\alpha}(x_{support}), y_{support}), \qquad
          F(\alpha) = \mathbb{E}_{task}\, \mathrm{CE}(f_{w_T(\alpha),\alpha}(x_{query}), y_{query}).

Architecture (the paper gives only "6 conv layers of 32 channels"; these choices are ours):
every layer is a 3×3 convolution with padding 1 followed by ReLU; a 2×2 max-pool follows each
hyper layer (2, 4, 6), so 28×28 → 14 → 7 → 3 and the head sees 3·3·width features. No
normalisation layer (everything stays a pure function of (w, α)). ``depth`` may be any even
number (the smoke scale uses 2: one inner, one hyper layer).

Initialisation: for each seed, α₀ (layers 2, 4, 6) and the odd layers of w₀ are drawn once
(Kaiming-normal, zero biases) and shared by every task of that seed; the head starts at zero
(uniform prediction, so the head works for any number of ways, e.g. the 20-way official runs).
w₀ is *not* learned: α contains exactly the even conv layers.

Meta-batch: each outer step samples ``meta_batch`` tasks from the meta-train classes and stacks
them into one :class:`~metagrad.BilevelProblem` whose w holds every task's copy of the inner
parameters (a leading task dimension). The inner loss is the *sum* of the per-task mean
cross-entropies, so each task's weights follow exactly their own full-batch momentum SGD; the
outer loss is the *mean* of the per-task query losses, so any estimator's hypergradient is the
mean of the per-task hypergradients (the tasks are independent: the Jacobians are block
diagonal). For ``fg2u`` the random directions are shared by the tasks of a step.

Evaluation: accuracy on episodes from the held-out 20 % of classes (w₀ adapted T steps on the
support, accuracy on the queries); γ of the greedy method is chosen on a separate set of
held-out episodes (``select`` episodes) and reported on fresh ones (``test`` episodes); and the
official 20-way one-shot runs (``all_runs.zip``, evaluation alphabets, never seen in training).

Data: Omniglot as present under the data root — here the two ``images_background_small`` zips,
242 characters from 8 alphabets after de-duplication, not the paper's 1 623 characters. With no
Omniglot, ``data="auto"`` falls back to scikit-learn's digits (10 classes, embedded) at 28×28.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, asdict, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import unroll
from ..errors import ConfigError, check
from ..loops import OuterConfig, outer_loop
from ..optim import Momentum
from ..problem import BilevelProblem
from ..config import config_from_params
from ..report import best_by, mean_ci, fmt_mean_ci, welch_greater
from ..results import cached, lookup, repo_root

__all__ = ["PAPER_1SHOT", "PAPER_10SHOT", "FewShotConfig", "FewShotData", "FewShotResult",
           "METHODS", "load_data", "init_params", "forward", "task_logits", "stack_tasks",
           "make_problem", "training_tasks", "held_out_episodes", "episode_accuracy", "oneshot_accuracy", "train", "run",
           "plot_comparison", "display_table", "ranking_table", "cost_check", "check_rankings",
           "expected_cost", "timings", "setup_table", "summary", "plot_curves", "resolve_device"]

# ------------------------------------------------------------------------------ the paper
_LABELS = {"init": "no meta-training", "fo": "FO", "t1t2": "T1−T2", "neumann": "IFT",
           "greedy": "greedy", "rmd": "full RMD", "fg2u": "(FG)²U"}
METHODS = tuple(_LABELS)


def _paper(shot, ways, rows):
    return pd.DataFrame([{"shot": shot, "way": w, "method": m, "paper label": lab, "#JVPs (paper)": j,
                          "acc (paper)": a, "ci (paper)": c}
                         for m, lab, j, accs in rows for w, (a, c) in zip(ways, accs)])


#: Table 3 of the ICLR version (PAPERS.md B.3): Omniglot 1-shot meta-validation accuracy %,
#: mean ± 95 % CI over 5 seeds; IFT(2) = Neumann with 2 terms; γ = 0.9 chosen by the authors.
PAPER_1SHOT = _paper(1, (2, 3, 5, 10), [
    ("fo", "FO", 0, [(87.31, 1.79), (78.22, 1.04), (69.71, 0.5), (62.41, 1.95)]),
    ("t1t2", "T1−T2", 1, [(89.4, 0.36), (78.25, 1.03), (66.7, 3.09), (52.23, 1.63)]),
    ("neumann", "IFT(2)", 5, [(87.1, 2.52), (79.36, 2.31), (72.57, 2.14), (53.62, 5.92)]),
    ("greedy", "greedy γ=0.9", 5, [(93.5, 0.34), (86.83, 0.78), (80.46, 1.08), (66.92, 2.04)]),
])
#: The slides' 10-shot table (seed 001 of PAPERS.md; data set not named on the slide), accuracy %.
PAPER_10SHOT = _paper(10, (3, 4, 5), [
    ("fo", "FO", 0, [(43.48, 0.69), (34.15, 0.53), (28.59, 0.47)]),
    ("t1t2", "T1−T2", 1, [(42.96, 0.79), (33.95, 0.64), (27.59, 0.46)]),
    ("neumann", "IFT", 11, [(40.14, 0.73), (33.23, 0.41), (27.20, 0.52)]),
    ("greedy", "greedy γ=0.99", 10, [(46.10, 0.82), (36.94, 1.07), (29.79, 0.62)]),
])


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class FewShotConfig:
    """Everything that defines the experiment. ``settings`` are ``(shot, way)`` pairs; methods
    are names of :func:`metagrad.hypergrad` (plus ``"init"``: α₀ evaluated without training);
    ``greedy`` is run at every γ in ``gammas`` and the γ with the best ``select`` accuracy
    (mean over seeds) is reported. ``n_query`` is the paper's 10 query images per class."""
    scale: str = "smoke"
    data: str = "auto"                      # "omniglot", "digits" or "auto"
    settings: tuple = ((1, 2),)
    methods: tuple = ("init", "fo", "t1t2", "neumann", "greedy", "rmd", "fg2u")
    gammas: tuple = (0.9, 0.99, 0.999)
    neumann_K: int = 2
    fg2u_b: int = 1
    seeds: tuple = (0, 1)
    depth: int = 6
    width: int = 32
    image_size: int = 28
    n_query: int = 10
    meta_batch: int = 4
    T: int = 5
    inner_lr: float = 0.1
    inner_momentum: float = 0.9
    outer_lr: float = 1e-3
    outer_steps: int = 2000
    val_fraction: float = 0.2
    split_seed: int = 0
    n_select: int = 100                     # held-out episodes that choose γ
    n_test: int = 200                       # held-out episodes that are reported
    eval_chunk: int = 25
    oneshot_runs: bool = True
    device: str = "auto"
    dtype: str = "float32"
    checkpoint_every: int = 25
    results_dir: str = "results/greedy_fewshot"
    checkpoint_dir: str = "checkpoints/greedy_fewshot"   # git-ignored; relative to the repo root

    def __post_init__(self):
        check(self.depth >= 2 and self.depth % 2 == 0, f"depth must be even and >= 2, got {self.depth}")
        check(self.data in ("auto", "omniglot", "digits"), f"data must be auto/omniglot/digits, got {self.data!r}")
        unknown = sorted(set(self.methods) - set(METHODS))
        check(not unknown, f"unknown methods {unknown}; choose from {list(METHODS)}")
        check(all(0 < g <= 1 for g in self.gammas), f"gammas must be in (0, 1], got {self.gammas}")
        check(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}")

    @classmethod
    def from_params(cls, **params) -> "FewShotConfig":
        """From a notebook's parameters: lists become tuples, unknown keys are refused."""
        return config_from_params(cls, params)

    @property
    def torch_dtype(self):
        return getattr(torch, self.dtype)

    def model_key(self) -> dict:
        """The fields that define a run's computation (not where it is stored or shown)."""
        d = asdict(self)
        for k in ("scale", "settings", "methods", "gammas", "seeds", "device", "results_dir",
                  "checkpoint_every", "checkpoint_dir", "eval_chunk", "data"):
            d.pop(k)
        return d


# ------------------------------------------------------------------------------ data
@dataclass
class FewShotData:
    """``images``: C×E×1×H×W in [0, 1]; ``train``/``held_out``: class indices (disjoint);
    ``runs``: the official one-shot runs (or ``None``); ``name`` and a sentence ``note``."""
    images: torch.Tensor
    train: torch.Tensor
    held_out: torch.Tensor
    runs: list | None
    name: str
    note: str


def load_data(cfg: FewShotConfig) -> FewShotData:
    """Omniglot (all zips present under the data root) or, with ``data="auto"`` and no
    Omniglot, the digits; classes split ``1 - val_fraction`` / ``val_fraction`` by ``split_seed``
    (on the 10 digit classes, at least as many held-out classes as the widest feasible way)."""
    from ..data import load_omniglot, load_oneshot_runs, load_digits, split_classes, DataNotFoundError
    dev, dt = resolve_device(cfg.device), cfg.torch_dtype
    name, runs = cfg.data, None
    if name in ("auto", "omniglot"):
        try:
            om = load_omniglot("available", size=cfg.image_size, device=dev, dtype=dt)
            name = "omniglot"
        except DataNotFoundError:
            if name == "omniglot":
                raise
            name = "digits"
    if name == "omniglot":
        images = om.images
        alphabets = len({n.split("/")[0] for n in om.names})
        note = (f"Omniglot as present under the data root: {images.shape[0]} characters from "
                f"{alphabets} alphabets × 20 drawings (the paper uses all 1 623 characters)")
        if cfg.oneshot_runs:
            try:
                runs = load_oneshot_runs(size=cfg.image_size, device=dev, dtype=dt)
            except DataNotFoundError:
                runs = None
    else:
        x, y = load_digits(size=cfg.image_size, device=dev, dtype=dt)
        per = int(torch.bincount(y).min())
        images = torch.stack([x[y == c][:per] for c in range(10)])
        note = (f"no Omniglot found: scikit-learn digits stand in (10 classes × {per} images, "
                f"upsampled to {cfg.image_size}×{cfg.image_size}); no official one-shot runs")
    frac = cfg.val_fraction
    if name == "digits":  # 10 classes: hold out enough for the widest way that fits in half of them
        ways = [w for _, w in cfg.settings if 2 * w <= images.shape[0]]
        frac = max([frac] + [w / images.shape[0] for w in ways])
    train, held = split_classes(images.shape[0], (1 - frac, frac), seed=cfg.split_seed)
    note += f"; {len(train)} meta-train and {len(held)} held-out classes (split seed {cfg.split_seed})"
    return FewShotData(images, train, held, runs, name, note)


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
    from ..data import sample_task
    return [sample_task(data.images, data.train, way, shot, cfg.n_query,
                        generator=1_000_003 * seed + 7919 * step + 31 * m + 101 * way + shot)
            for m in range(cfg.meta_batch)]


def held_out_episodes(cfg: FewShotConfig, data: FewShotData, shot: int, way: int, n: int,
                      purpose: str) -> list:
    """``n`` episodes from the held-out classes; ``purpose`` ``"select"`` (chooses γ) or
    ``"test"`` (reported) gives two independent, fixed sets, the same for every method and seed."""
    from ..data import sample_task
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


# ------------------------------------------------------------------------------ one run
def _options(cfg, method, gamma):
    return {"greedy": {"gamma": gamma}, "neumann": {"K": cfg.neumann_K}, "fg2u": {"b": cfg.fg2u_b}}.get(method, {})


def _tag(method, gamma):
    return f"greedy-{gamma:g}" if method == "greedy" else method


def train(cfg: FewShotConfig, data: FewShotData, shot: int, way: int, method: str, seed: int, *,
          gamma: float | None = None, checkpoint: str | Path | None = None, progress: bool = False) -> dict:
    """Meta-train α by ``method`` for one (setting, seed) and evaluate it. Returns a JSON-ready
    dict: ``select_acc``, ``test_acc``, ``oneshot_acc`` (fractions; NaN without runs), the cost
    of one hypergradient (``jvps``, ``vjps``, ``hvps``, ``inner_steps``, ``outer_grads``), the
    outer wall time, and the outer loss averaged over ten equal blocks of steps (``curve``)."""
    w0, alpha0 = init_params(cfg, seed, way)
    options = _options(cfg, method, gamma)
    records, alpha, wall = [], alpha0, 0.0
    if method != "init":
        def problem_at(step):
            return make_problem(cfg, w0, *stack_tasks(training_tasks(cfg, data, shot, way, seed, step)))
        ocfg = OuterConfig(method=method, options=options, steps=cfg.outer_steps, optimizer="adam",
                           lr=cfg.outer_lr, seed=seed, checkpoint_every=cfg.checkpoint_every)
        key = {"model": cfg.model_key(), "data": data.name, "shot": shot, "way": way, "seed": seed}
        hist = outer_loop(problem_at, alpha0, ocfg, checkpoint=checkpoint, progress=progress, run_config=key)
        records, alpha, wall = hist.records, hist.alpha, hist.records[-1]["wall_time_s"]
    out = {"select_acc": episode_accuracy(cfg, alpha, w0, held_out_episodes(cfg, data, shot, way, cfg.n_select, "select")),
           "test_acc": episode_accuracy(cfg, alpha, w0, held_out_episodes(cfg, data, shot, way, cfg.n_test, "test")),
           "oneshot_acc": (oneshot_accuracy(cfg, alpha, seed, data.runs) if data.runs else math.nan),
           "outer_wall_time_s": wall, "steps": len(records)}
    first = records[0] if records else {}
    out.update({k: int(first.get(k, 0)) for k in ("jvps", "vjps", "hvps", "inner_steps")})
    losses = np.array([r["outer_loss"] for r in records])
    out["curve"] = [round(float(b.mean()), 5) for b in np.array_split(losses, min(10, len(losses)))] if len(losses) else []
    return out


# ------------------------------------------------------------------------------ the experiment
@dataclass
class FewShotResult:
    """``runs``: one row per (shot, way, method, γ, seed); ``chosen_gamma``: {(shot, way): γ};
    ``table``: ours (γ chosen) beside the paper; ``ranking``: one-sided Welch tests of greedy
    against every other method; ``data_note``; ``wall_time_s`` of this call."""
    runs: pd.DataFrame
    chosen_gamma: dict
    table: pd.DataFrame
    ranking: pd.DataFrame
    data_note: str
    wall_time_s: float
    config: FewShotConfig = field(repr=False, default=None)
    fallback: str | None = None     # a sentence for the page's banner when fallback data was used


def _label(cfg, method, gamma=None):
    if method == "neumann":
        return f"IFT({cfg.neumann_K})"
    if method == "fg2u":
        return f"(FG)²U b={cfg.fg2u_b}"
    if method == "greedy":
        return f"greedy γ={gamma:g}"
    return _LABELS[method]


def _run_keys(cfg: FewShotConfig, data_name: str, oneshot: bool):
    """``(shot, way, method, γ, seed, file name, run config)`` of every run; needs no data."""
    for shot, way in cfg.settings:
        for method in cfg.methods:
            for gamma in (cfg.gammas if method == "greedy" else (None,)):
                for seed in cfg.seeds:
                    name = f"{data_name}_{shot}shot-{way}way__{_tag(method, gamma)}__seed{seed}"
                    run_cfg = {"model": cfg.model_key(), "data": data_name, "shot": shot, "way": way,
                               "method": method, "options": _options(cfg, method, gamma), "seed": seed,
                               "oneshot_runs": oneshot}
                    yield shot, way, method, gamma, seed, name, run_cfg


def cached_data(cfg: FewShotConfig) -> tuple[str, bool] | None:
    """``(data name, one-shot runs)`` under which every run of ``cfg`` is already cached, else
    ``None``. The result files are consulted before any data is read, so a page whose results
    are committed renders on a machine without the data."""
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    for name in (("omniglot", "digits") if cfg.data == "auto" else (cfg.data,)):
        for oneshot in ((True, False) if name == "omniglot" and cfg.oneshot_runs else (False,)):
            if all(lookup(out_dir / f"{n}.json", rc) is not None
                   for *_, n, rc in _run_keys(cfg, name, oneshot)):
                return name, oneshot
    return None


def run(cfg: FewShotConfig, *, progress: bool = False, force: bool = False) -> FewShotResult:
    """Every (setting, method, γ, seed) run, each a cached JSON file under
    ``results_dir/<scale>/`` with its outer-loop checkpoint under ``checkpoints/`` (resumable),
    then the tables. Finished runs are loaded, never recomputed; when every run is cached the
    data is not read at all. Settings the fallback data (digits) cannot hold are skipped and
    named in ``fallback``."""
    start = time.perf_counter()
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    ck_dir = repo_root() / cfg.checkpoint_dir / cfg.scale
    hit = None if force else cached_data(cfg)
    fallback = None
    if hit is not None and hit[0] == "omniglot":
        data, (data_name, oneshot) = None, hit
        note = (f"Omniglot: every run read from its result file under {cfg.results_dir}/{cfg.scale}/ "
                "(the data itself is not needed to show them)")
    else:  # the digits are embedded: loading them is cheap and gives the same note either way
        data = load_data(cfg)
        data_name, oneshot, note = data.name, data.runs is not None, data.note
        skipped = [sw for sw in cfg.settings if sw[1] > len(data.held_out) or sw[1] > len(data.train)]
        if data.name == "digits" and cfg.data == "auto":
            fallback = ("Omniglot is not under the data root and not every run of this page is "
                        "computed on it: the runs below use scikit-learn's 8×8 digits (10 classes) instead. "
                        "They do not test the paper's Omniglot claims; `metagrad fetch omniglot` "
                        "gets the real data.")
            if skipped:
                fallback += (" Settings skipped (more ways than the 10 digit classes allow): "
                             + ", ".join(f"{s}-shot {w}-way" for s, w in skipped) + ".")
        else:
            for shot, way in skipped:
                check(False, f"{way}-way needs {way} held-out and meta-train classes; {data.name} "
                      f"has {len(data.held_out)} / {len(data.train)} (use fewer ways or Omniglot)")
        cfg_run = replace(cfg, settings=tuple(sw for sw in cfg.settings if sw not in skipped))
    rows = []
    for shot, way, method, gamma, seed, name, run_cfg in _run_keys(cfg if data is None else cfg_run,
                                                                    data_name, oneshot):
        payload = cached(out_dir / f"{name}.json", run_cfg, force=force, compute=lambda: train(
            cfg, data, shot, way, method, seed, gamma=gamma,
            checkpoint=ck_dir / f"{name}.pt", progress=progress))
        r = payload["result"]
        rows.append({"shot": shot, "way": way, "method": method, "gamma": gamma, "seed": seed,
                     "label": _label(cfg, method, gamma), **r,
                     "#JVPs (ours)": r["jvps"] + r["vjps"] + r["hvps"],
                     "run_wall_time_s": payload["provenance"]["wall_time_s"]})
    runs = pd.DataFrame(rows)
    chosen = _choose_gamma(runs)
    table = _table(cfg, runs, chosen)
    return FewShotResult(runs, chosen, table, _ranking(runs, chosen), note,
                         time.perf_counter() - start, cfg, fallback)


def _choose_gamma(runs: pd.DataFrame) -> dict:
    """γ of greedy chosen on the selection episodes, per (shot, way)."""
    return best_by(runs[runs.method == "greedy"], ["shot", "way"], "gamma", "select_acc")


def reported(runs: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """The runs that are reported: every non-greedy method, and greedy at its chosen γ."""
    keep = runs.method != "greedy"
    for (shot, way), gamma in chosen.items():
        keep |= (runs.method == "greedy") & (runs.shot == shot) & (runs.way == way) & (runs.gamma == gamma)
    return runs[keep]


def _table(cfg, runs, chosen) -> pd.DataFrame:
    rows = []
    for (shot, way, method), g in reported(runs, chosen).groupby(["shot", "way", "method"], sort=False):
        m, h = mean_ci(100 * g.test_acc)
        mo, ho = mean_ci(100 * g.oneshot_acc)
        rows.append({"shot": shot, "way": way, "method": method, "ours": g.label.iloc[0],
                     "#JVPs (ours)": int(g["#JVPs (ours)"].iloc[0]), "acc (ours)": m, "ci (ours)": h,
                     "n seeds": len(g), "20-way runs (ours)": mo, "ci runs": ho,
                     "s per outer step": float((g.outer_wall_time_s / g.steps.clip(lower=1)).mean())})
    ours = pd.DataFrame(rows)
    paper = pd.concat([PAPER_1SHOT, PAPER_10SHOT], ignore_index=True)  # all of both tables
    if ours.empty:
        ours = pd.DataFrame(columns=["shot", "way", "method", "ours", "#JVPs (ours)", "acc (ours)", "ci (ours)",
                                     "n seeds", "20-way runs (ours)", "ci runs", "s per outer step"])
    return ours.merge(paper, on=["shot", "way", "method"], how="outer").sort_values(
        ["shot", "way", "method"], key=lambda s: s.map({m: i for i, m in enumerate(METHODS)}) if s.name == "method" else s,
        ignore_index=True)


def _ranking(runs, chosen, level: float = 0.05) -> pd.DataFrame:
    """greedy (chosen γ) against each other method, per setting: one-sided Welch p-value on the
    reported test accuracy over seeds; ``holds`` = p < ``level``."""
    rep = reported(runs, chosen)
    rows = []
    for (shot, way), g in rep.groupby(["shot", "way"], sort=False):
        greedy = g[g.method == "greedy"].test_acc.to_numpy()
        for other in [m for m in METHODS if m in set(g.method) and m != "greedy"]:
            x = g[g.method == other].test_acc.to_numpy()
            if len(greedy) == 0:
                continue
            with warnings.catch_warnings():  # identical accuracies (tiny scales): scipy warns
                warnings.simplefilter("ignore", RuntimeWarning)
                p = welch_greater(greedy, x)
            rows.append({"shot": shot, "way": way, "claim": f"greedy > {_LABELS[other]}", "other": other,
                         "diff (points)": 100 * (greedy.mean() - x.mean()), "p": p,
                         "holds": bool(p < level)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ presentation
def display_table(result: FewShotResult, shot: int) -> pd.DataFrame:
    """The rows of one shot, formatted: ours (mean ± CI %) beside the paper's."""
    t = result.table[result.table.shot == shot]
    f = lambda m, h: fmt_mean_ci(m, h) if not pd.isna(m) else ""
    out = pd.DataFrame({
        "way": t.way, "method (ours)": t.ours.fillna(""), "#JVPs (ours)": _ints(t["#JVPs (ours)"]),
        "acc % (ours)": [f(m, h) for m, h in zip(t["acc (ours)"], t["ci (ours)"])],
        "20-way runs % (ours)": [f(m, h) for m, h in zip(t["20-way runs (ours)"], t["ci runs"])],
        "method (paper)": t["paper label"].fillna(""), "#JVPs (paper)": _ints(t["#JVPs (paper)"]),
        "acc % (paper)": [f(m, h) for m, h in zip(t["acc (paper)"], t["ci (paper)"])]})
    return out.reset_index(drop=True)


def _ints(col) -> list[str]:
    return ["" if pd.isna(x) else str(int(x)) for x in col]


def plot_comparison(result: FewShotResult, shot: int):
    """Bar chart per way: our accuracy (mean ± 95 % CI) beside the paper's, for one shot."""
    import matplotlib.pyplot as plt
    t = result.table[result.table.shot == shot]
    ways = sorted(t.way.unique())
    methods = [m for m in METHODS if m in set(t.method)]
    fig, axes = plt.subplots(1, len(ways), figsize=(3.2 * len(ways) + 1, 3.2), squeeze=False, sharey=False)
    for ax, way in zip(axes[0], ways):
        tw = t[t.way == way].set_index("method")
        xs = np.arange(len(methods))
        for off, col, ci, lab, color in ((-0.2, "acc (ours)", "ci (ours)", "ours", "C0"),
                                         (0.2, "acc (paper)", "ci (paper)", "paper", "C1")):
            vals = [tw[col].get(m, np.nan) for m in methods]
            errs = [tw[ci].get(m, np.nan) for m in methods]
            ax.bar(xs + off, vals, 0.4, yerr=errs, label=lab, color=color, capsize=2)
        ax.axhline(100 / way, color="grey", lw=0.8, ls=":")
        ax.set_xticks(xs, [_LABELS[m] for m in methods], rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{shot}-shot {way}-way")
    axes[0][0].set_ylabel("held-out accuracy %")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def expected_cost(cfg: FewShotConfig, method: str) -> int:
    """Products per hypergradient each estimator is defined to need (JVPs + VJPs + HVPs):
    FO 0, T1−T2 1 VJP, IFT(K) K+1 HVPs, greedy T VJPs, full RMD T VJPs, (FG)²U T·b JVPs."""
    return {"init": 0, "fo": 0, "t1t2": 1, "neumann": cfg.neumann_K + 1, "greedy": cfg.T, "rmd": cfg.T,
            "fg2u": cfg.T * cfg.fg2u_b}[method]


def cost_check(result: FewShotResult) -> pd.DataFrame:
    """Measured products per hypergradient (from the cost records) against :func:`expected_cost`."""
    t = result.table.dropna(subset=["ours"])
    exp = [expected_cost(result.config, m) for m in t.method]
    return pd.DataFrame({"shot": t.shot, "way": t.way, "method": t.ours,
                         "#JVPs measured": t["#JVPs (ours)"].astype(int),
                         "#JVPs by definition": exp, "ok": t["#JVPs (ours)"].to_numpy() == np.array(exp)}
                        ).reset_index(drop=True)


def check_rankings(result: FewShotResult, expected) -> pd.DataFrame:
    """The rows of ``result.ranking`` named by ``expected`` (``[shot, way, other]`` triples, the
    claim "greedy > other"); a claim with no run is an error, not a silent pass."""
    r = result.ranking
    rows = []
    for shot, way, other in expected:
        hit = r[(r.shot == shot) & (r.way == way) & (r.other == other)]
        if hit.empty:
            raise ConfigError(f"no ranking greedy > {other} at {shot}-shot {way}-way: run that setting and method")
        rows.append(hit.iloc[0])
    return pd.DataFrame(rows, columns=r.columns).reset_index(drop=True)


def ranking_table(result: FewShotResult) -> pd.DataFrame:
    """The Welch tests, rounded for display (p to 4 decimals, difference to 2)."""
    r = result.ranking.copy()
    if r.empty:
        return r
    r["diff (points)"] = r["diff (points)"].round(2)
    r["p"] = r["p"].round(4)
    return r.drop(columns="other")


def timings(result: FewShotResult) -> str:
    """One line per (setting, method): mean wall time per outer step over seeds."""
    t = result.table.dropna(subset=["ours"])
    return "\n".join(f"{s}-shot {w}-way {m}: wall time per outer step {x:.3f} s"
                      for s, w, m, x in zip(t.shot, t.way, t.ours, t["s per outer step"]) if x > 0)


def setup_table(cfg: FewShotConfig) -> pd.DataFrame:
    """Our settings beside the paper's (Table 3 protocol, PAPERS.md B.3)."""
    rows = [
        ("data", "Omniglot (see the data note) or digits", "Omniglot, 1 623 characters"),
        ("image size", f"{cfg.image_size}×{cfg.image_size}", "28×28"),
        ("held-out classes", f"{cfg.val_fraction:.0%}", "20 %"),
        ("settings (shot, way)", ", ".join(f"{s}-shot {w}-way" for s, w in cfg.settings),
         "1-shot 2/3/5/10-way; 10-shot 3/4/5-way"),
        ("network", f"{cfg.depth} conv layers × {cfg.width} channels; α = layers "
                    f"{', '.join(str(i) for i in range(2, cfg.depth + 1, 2))}", "6 conv layers × 32; α = layers 2, 4, 6"),
        ("query examples per class", str(cfg.n_query), "10"),
        ("tasks per outer step", str(cfg.meta_batch), "not stated"),
        ("inner loop", f"full-batch SGD lr {cfg.inner_lr:g}, momentum {cfg.inner_momentum:g}, T = {cfg.T}",
         "full-batch SGD lr 0.1, momentum 0.9, T = 5"),
        ("outer loop", f"Adam lr {cfg.outer_lr:g}, {cfg.outer_steps} steps", "Adam lr 1e-3, 2 000 steps"),
        ("γ grid (greedy)", ", ".join(f"{g:g}" for g in cfg.gammas), "0.9, 0.99, 0.999"),
        ("seeds", str(len(cfg.seeds)), "5"),
        ("evaluation episodes", f"{cfg.n_select} choose γ, {cfg.n_test} reported", "not stated"),
    ]
    return pd.DataFrame(rows, columns=["", "ours", "paper"])


def summary(result: FewShotResult) -> dict:
    """Scale-independent facts for the page's prose (strings and numbers to ``glue``)."""
    r, cfg = result.ranking, result.config
    core = r[r.other.isin(["fo", "t1t2", "neumann"])] if not r.empty else r
    fmt = lambda d: "; ".join(f"{c} at {s}-shot {w}-way (p = {p:.3g})"  # noqa: E731
                              for c, s, w, p in zip(d.claim, d.shot, d.way, d.p)) or "none"
    return {
        "settings": ", ".join(f"{s}-shot {w}-way" for s, w in cfg.settings),
        "n_seeds": len(cfg.seeds), "outer_steps": cfg.outer_steps, "width": cfg.width, "depth": cfg.depth,
        "gammas": ", ".join(f"{g:g}" for g in result.chosen_gamma.values()) or "none",
        "holds": fmt(core[core.holds]) if not core.empty else "none",
        "fails": fmt(core[~core.holds]) if not core.empty else "none",
        "n_holds": int(core.holds.sum()) if not core.empty else 0,
        "n_claims": len(core),
        "data_note": result.data_note,
        "oneshot": _oneshot_sentence(result),
        "at_chance": _chance_sentence(result),
    }


def _chance_sentence(result: FewShotResult, margin: float = 5.0) -> str:
    """Methods whose reported held-out accuracy ends within ``margin`` points of chance."""
    t = result.table.dropna(subset=["ours"])
    near = t[t["acc (ours)"] < 100 / t.way + margin]
    return "; ".join(f"{m} at {s}-shot {w}-way ({a:.1f} %, chance {100 / w:.1f} %)"
                     for m, s, w, a in zip(near.ours, near.shot, near.way, near["acc (ours)"])) or "none"


def _oneshot_sentence(result: FewShotResult) -> str:
    t = result.table.dropna(subset=["ours"])
    t = t[t["20-way runs (ours)"].notna()]
    if t.empty:
        return "not evaluated (no all_runs.zip)"
    shot, way = t.shot.iloc[0], t.way.iloc[0]
    t = t[(t.shot == shot) & (t.way == way)]
    return (f"with the warp layers meta-trained at {shot}-shot {way}-way: " +
            ", ".join(f"{m} {fmt_mean_ci(a, c, 1)} %" for m, a, c in zip(t.ours, t["20-way runs (ours)"], t["ci runs"])))


def plot_curves(result: FewShotResult):
    """Outer (query) loss during meta-training, mean over seeds of ten equal blocks of steps,
    one panel per setting; greedy at its chosen γ; ln(way) (a uniform prediction) dotted."""
    import matplotlib.pyplot as plt
    rep = reported(result.runs, result.chosen_gamma)
    rep = rep[rep.steps > 0]
    settings = list(dict.fromkeys(zip(rep.shot, rep.way)))
    fig, axes = plt.subplots(1, max(1, len(settings)), figsize=(4.2 * max(1, len(settings)), 3.2), squeeze=False)
    for ax, (shot, way) in zip(axes[0], settings):
        g = rep[(rep.shot == shot) & (rep.way == way)]
        for i, method in enumerate(m for m in METHODS if m in set(g.method)):
            gm = g[g.method == method]
            curves = np.array([c for c in gm.curve])
            x = (np.arange(curves.shape[1]) + 0.5) * gm.steps.iloc[0] / curves.shape[1]
            ax.plot(x, curves.mean(0), marker="o", ms=3, color=f"C{i}", label=gm.label.iloc[0])
        ax.axhline(math.log(way), color="grey", lw=0.8, ls=":")
        ax.set_title(f"{shot}-shot {way}-way")
        ax.set_xlabel("outer step")
    axes[0][0].set_ylabel("query loss (mean over seeds)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig
