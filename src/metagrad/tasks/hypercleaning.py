r"""Data hyper-cleaning (Table 2 of the generalized greedy paper, PAPERS.md part B.3).

A training set whose labels are replaced, with probability ``p_noise``, by a random *other*
class; one hyperparameter per training example, its weight :math:`\sigma(\alpha_i)`:

.. math::
    L_{train}(w, \alpha) = \frac1n \sum_i \sigma(\alpha_i)\,\mathrm{CE}(f_w(x_i), \tilde y_i),
    \qquad L_{val}(w) = \mathrm{CE}(f_w(X_{val}), y_{val}) \text{ (clean)},

inner loop: T steps of full-batch momentum SGD from a fixed (seeded) initialisation; outer
loop: Adam on α from α = 0 (all weights ½). After the outer loop the network is retrained
with the learned weights (the same T inner steps) and scored on the validation set and on a
disjoint, held-out test set; the AUROC of α for separating clean from corrupted examples says
how well the weights find the corrupted labels.

Data: MNIST's 10 000-image test split (the only MNIST split in the shared data folder), cut
by :func:`metagrad.data.disjoint_split` into train / validation / test per seed, or the
embedded scikit-learn digits. One result file per (dataset, p_noise, method, seed).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import BilevelProblem, Momentum, unroll
from ..errors import ConfigError, check
from ..loops import OuterConfig, outer_loop
from ..config import config_from_params
from ..report import best_by, fmt_mean_ci, mean_ci, welch_greater
from ..results import cached, lookup, repo_root
from .toy import resolve_device

__all__ = ["HyperCleaningConfig", "HyperCleaningResult", "Instance", "PAPER_TABLE", "paper_table", "load_dataset",
           "corrupt_labels", "build", "evaluate", "train", "run", "display_table", "ranking_table",
           "check_rankings", "cost_check", "noise_check", "plot_accuracy", "plot_curves", "setup_table", "facts",
           "expected_cost"]

METHODS = ("none", "t1t2", "neumann", "greedy", "fg2u", "rmd")
CORE = ("none", "t1t2", "neumann")            # the paper's baselines: greedy is claimed to beat them
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
    ``"cnn"`` (three 3×3 stride-2 convolutions with ``channels`` channels and a linear head)."""
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

    def model_key(self) -> dict:
        """The fields that define a run's computation (not where it is stored or shown)."""
        d = asdict(self)
        for k in ("scale", "datasets", "p_noise", "methods", "gammas", "seeds", "sizes", "data_root",
                  "device", "checkpoint_every", "results_dir", "checkpoint_dir"):
            d.pop(k)
        if self.model == "mlp":
            d.pop("channels")
        else:
            d.pop("hidden")
        return d


# ------------------------------------------------------------------------------ data
def load_dataset(name: str, root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` on the CPU: ``digits`` (embedded, 1 797 8×8 images) or the 10 000
    images of MNIST's / Fashion-MNIST's test split from the data root."""
    from ..data import load_digits, load_mnist
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
        return {"W1": _uniform((d, cfg.hidden), d ** -0.5, g), "b1": _uniform((cfg.hidden,), d ** -0.5, g),
                "W2": _uniform((cfg.hidden, num_classes), cfg.hidden ** -0.5, g),
                "b2": _uniform((num_classes,), cfg.hidden ** -0.5, g)}
    w, cin, side = {}, c, h
    for i in range(3):  # He (Kaiming-normal) init: with the uniform default the CNN barely moves in T = 10 steps
        w[f"conv{i}"] = torch.randn((cfg.channels, cin, 3, 3), generator=g, dtype=torch.float64) * (2 / (cin * 9)) ** 0.5
        w[f"bias{i}"] = torch.zeros(cfg.channels, dtype=torch.float64)
        cin, side = cfg.channels, (side + 1) // 2
    d = cfg.channels * side * side
    w["W"], w["b"] = _uniform((d, num_classes), d ** -0.5, g), _uniform((num_classes,), d ** -0.5, g)
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
    from ..data import disjoint_split
    device = resolve_device(cfg.device) if device is None else device
    dtype = getattr(torch, cfg.dtype)
    X, Y = load_dataset(dataset, cfg.data_root) if data is None else data
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


def _options(cfg, method, gamma):
    return {"greedy": {"gamma": gamma}, "neumann": {"K": cfg.neumann_K}, "fg2u": {"b": cfg.fg2u_b}}.get(method, {})


def _tag(method, gamma=None):
    return f"greedy{gamma:g}" if method == "greedy" else method


def label(cfg, method, gamma=None) -> str:
    if method == "neumann":
        return f"IFT({cfg.neumann_K})"
    if method == "fg2u":
        return f"(FG)²U b={cfg.fg2u_b}"
    if method == "greedy":
        return f"greedy γ={gamma:g}"
    return {"none": "no HPO (α = 0)", "t1t2": "T1−T2", "rmd": "full (RMD)"}[method]


def _r(x: float, d: int = 5) -> float:
    return round(float(x), d) if math.isfinite(x) else x


def train(cfg: HyperCleaningConfig, inst: Instance, method: str, seed: int, *, gamma: float | None = None,
          checkpoint: str | Path | None = None, progress: bool = False, run_config: dict | None = None) -> dict:
    """Optimise α by ``method`` (``"none"``: keep α = 0) and evaluate it. JSON-ready: the final
    metrics, the products per hypergradient from the cost records, the outer loss at every step
    and the metrics every ``eval_every`` steps."""
    records, alpha, wall = [], inst.alpha0, 0.0
    if method != "none":
        ocfg = OuterConfig(method=method, options=_options(cfg, method, gamma), steps=cfg.steps,
                           optimizer="adam", lr=cfg.outer_lr, seed=seed, eval_every=cfg.eval_every,
                           checkpoint_every=cfg.checkpoint_every)
        hist = outer_loop(lambda step: inst.problem, inst.alpha0, ocfg, evaluate=lambda a: evaluate(inst, a),
                          checkpoint=checkpoint, progress=progress, run_config=run_config)
        records, alpha, wall = hist.records, hist.alpha, hist.records[-1]["wall_time_s"]
    final = records[-1] if records else evaluate(inst, alpha)
    first = records[0] if records else {}
    return {**{k: _r(final[k]) for k in ("val_loss", "val_acc", "test_acc", "auroc")},
            **{k: int(first.get(k, 0)) for k in ("jvps", "vjps", "hvps", "inner_steps")},
            "steps": len(records), "outer_wall_time_s": round(wall, 3),
            "corrupted_fraction": _r(float(inst.corrupted.float().mean())),
            "outer_loss": [_r(r["outer_loss"]) for r in records],
            "curve": [{"step": r["step"], **{k: _r(r[k]) for k in ("val_acc", "test_acc", "auroc")}}
                      for r in records if "val_acc" in r]}


# ------------------------------------------------------------------------------ the experiment
@dataclass
class HyperCleaningResult:
    """``runs``: one row per (dataset, p_noise, method, γ, seed); ``curves``: the metrics along
    the outer loop; ``chosen_gamma``: {(dataset, p_noise): γ with the best mean validation
    accuracy}; ``ranking``: one-sided Welch tests of greedy (chosen γ) against every other method."""
    runs: pd.DataFrame
    curves: pd.DataFrame
    chosen_gamma: dict
    ranking: pd.DataFrame
    wall_time_s: float
    config: HyperCleaningConfig = field(repr=False, default=None)
    fallback: str | None = None   # a sentence for the page's banner when a data set was skipped


def _run_cfg(cfg, dataset, p, method, gamma, seed) -> dict:
    return {"model": cfg.model_key(), "dataset": dataset, "sizes": list(cfg.sizes[dataset]),
            "p_noise": p, "method": method, "options": _options(cfg, method, gamma), "seed": seed}


def _unavailable(cfg: HyperCleaningConfig, out_dir) -> dict:
    """``{dataset: reason}`` for the data sets that some run still needs but the data root lacks
    (the result files are consulted first: cached runs need no data)."""
    from ..data import DataNotFoundError
    out = {}
    for dataset in cfg.datasets:
        if dataset == "digits" or all(
                lookup(out_dir / f"{dataset}_p{p:g}_{_tag(m, g)}_s{s}.json", _run_cfg(cfg, dataset, p, m, g, s))
                for p in cfg.p_noise for m in cfg.methods
                for g in (cfg.gammas if m == "greedy" else (None,)) for s in cfg.seeds):
            continue
        try:
            load_dataset(dataset, cfg.data_root)
        except DataNotFoundError as err:
            out[dataset] = str(err).splitlines()[0]
    return out


def run(cfg: HyperCleaningConfig, *, progress: bool = False, force: bool = False) -> HyperCleaningResult:
    """Every (dataset, p_noise, method, γ, seed) run, each a cached JSON file under
    ``results_dir/<scale>/`` (its outer-loop checkpoint under ``checkpoint_dir``, resumable,
    removed once the result is saved). Finished runs are loaded, never recomputed; data are
    loaded only when some run must be computed."""
    start = time.perf_counter()
    out_dir = repo_root() / cfg.results_dir / cfg.scale
    ck_dir = repo_root() / cfg.checkpoint_dir / cfg.scale
    device = resolve_device(cfg.device)
    data, rows, curves = {}, [], []
    missing = {} if force else _unavailable(cfg, out_dir)
    fallback = None
    if missing:
        fallback = ("Skipped for want of data (their results are not all computed and the data root "
                    "lacks them): " + "; ".join(f"{d} ({why})" for d, why in missing.items())
                    + ". `metagrad fetch mnist` (or fashion-mnist) gets them.")
    for dataset in (d for d in cfg.datasets if d not in missing):
        for p in cfg.p_noise:
            for method in cfg.methods:
                for gamma in (cfg.gammas if method == "greedy" else (None,)):
                    for seed in cfg.seeds:
                        name = f"{dataset}_p{p:g}_{_tag(method, gamma)}_s{seed}"
                        run_cfg = _run_cfg(cfg, dataset, p, method, gamma, seed)

                        def compute():
                            if dataset not in data:
                                data[dataset] = load_dataset(dataset, cfg.data_root)
                            inst = build(cfg, dataset, p, seed, data=data[dataset], device=device)
                            return train(cfg, inst, method, seed, gamma=gamma, checkpoint=ck_dir / f"{name}.pt",
                                         progress=progress, run_config=run_cfg)
                        payload = cached(out_dir / f"{name}.json", run_cfg, compute, force=force, device=str(device))
                        (ck_dir / f"{name}.pt").unlink(missing_ok=True)
                        r = payload["result"]
                        key = dict(dataset=dataset, p_noise=p, method=method, gamma=gamma, seed=seed,
                                   label=label(cfg, method, gamma))
                        rows.append({**key, **{k: v for k, v in r.items() if k not in ("outer_loss", "curve")},
                                     "#JVPs": r["jvps"] + r["vjps"] + r["hvps"],
                                     "run_wall_time_s": payload["provenance"]["wall_time_s"]})
                        curves += [{**key, **c} for c in r["curve"]]
    runs = pd.DataFrame(rows)
    chosen = _choose_gamma(runs)
    return HyperCleaningResult(runs, pd.DataFrame(curves), chosen, _ranking(runs, chosen),
                               time.perf_counter() - start, cfg, fallback)


def _choose_gamma(runs: pd.DataFrame) -> dict:
    """γ of greedy chosen on validation accuracy, per (dataset, p_noise)."""
    return best_by(runs[runs.method == "greedy"], ["dataset", "p_noise"], "gamma", "val_acc")


def _reported(runs: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    keep = [(m != "greedy") or (chosen.get((d, float(p))) == g)
            for d, p, m, g in zip(runs.dataset, runs.p_noise, runs.method, runs.gamma)]
    return runs[keep]


def _ranking(runs: pd.DataFrame, chosen: dict, level: float = 0.05) -> pd.DataFrame:
    """greedy (chosen γ) against each other method, per (dataset, p_noise) and metric:
    one-sided Welch p-value over seeds; ``holds`` = p < ``level``."""
    rep = _reported(runs, chosen)
    rows = []
    for (d, p), g in rep.groupby(["dataset", "p_noise"], sort=False):
        greedy = g[g.method == "greedy"]
        if greedy.empty:
            continue
        for other in [m for m in METHODS if m in set(g.method) and m != "greedy"]:
            o = g[g.method == other]
            for metric in METRICS:
                a, b = greedy[metric].to_numpy(float), o[metric].to_numpy(float)
                with warnings.catch_warnings():  # constant samples (AUROC 0.5 at α = 0): scipy warns, p is still defined
                    warnings.simplefilter("ignore", RuntimeWarning)
                    pv = welch_greater(a, b)
                rows.append({"dataset": d, "p_noise": p, "metric": metric, "other": other,
                             "claim": f"greedy γ={chosen[(d, float(p))]:g} > {o.label.iloc[0]}",
                             "diff (points)": 100 * (a.mean() - b.mean()), "p": pv,
                             "holds": bool(pv < level)})
    return pd.DataFrame(rows, columns=["dataset", "p_noise", "metric", "other", "claim", "diff (points)",
                                       "p", "holds"])


def ranking_table(result: HyperCleaningResult, metrics=("val_acc", "test_acc")) -> pd.DataFrame:
    """The Welch tests on ``metrics``, rounded for display."""
    r = result.ranking[result.ranking.metric.isin(metrics)].copy()
    r["diff (points)"] = r["diff (points)"].round(2)
    r["p"] = r["p"].round(4)
    return r.drop(columns="other").reset_index(drop=True)


def check_rankings(result: HyperCleaningResult, expected) -> pd.DataFrame:
    """Raise ``AssertionError`` unless every ranking in ``expected`` holds (one-sided Welch,
    p < 0.05). Each entry is ``[dataset, p_noise, other, metric]``: the claim "greedy (chosen γ)
    > other on metric". A ranking that was not run is an error, not a silent pass."""
    r = result.ranking
    rows = []
    for dataset, p, other, metric in expected:
        hit = r[(r.dataset == dataset) & np.isclose(r.p_noise, p) & (r.other == other) & (r.metric == metric)]
        if hit.empty:
            raise ConfigError(f"no ranking greedy > {other} on {metric} for {dataset} p={p}: run that setting")
        rows.append(hit.iloc[0])
    out = pd.DataFrame(rows, columns=r.columns).reset_index(drop=True)
    if not out.holds.all():
        raise AssertionError(f"rankings that do not hold: {out[~out.holds].to_dict('records')}")
    return out


def expected_cost(cfg: HyperCleaningConfig, method: str) -> int:
    """Products per hypergradient by definition: none 0, T1−T2 1 VJP, IFT(K) K+1 HVPs,
    greedy T VJPs, full RMD T VJPs, (FG)²U T·b JVPs."""
    return {"none": 0, "t1t2": 1, "neumann": cfg.neumann_K + 1, "greedy": cfg.T, "rmd": cfg.T,
            "fg2u": cfg.T * cfg.fg2u_b}[method]


def cost_check(result: HyperCleaningResult) -> pd.DataFrame:
    """Measured products per hypergradient (library cost records) against :func:`expected_cost`."""
    r = result.runs.drop_duplicates(["method", "gamma"])
    exp = [expected_cost(result.config, m) for m in r.method]
    return pd.DataFrame({"method": r.label, "#JVPs measured": r["#JVPs"], "#JVPs by definition": exp,
                         "ok": r["#JVPs"].to_numpy() == np.array(exp)}).reset_index(drop=True)


def noise_check(result: HyperCleaningResult, z: float = 4.0) -> pd.DataFrame:
    """Fraction of corrupted training labels per (dataset, p_noise), pooled over seeds, against
    ``p_noise``: ``ok`` when within ``z`` binomial standard errors."""
    r = result.runs.drop_duplicates(["dataset", "p_noise", "seed"])
    rows = []
    for (d, p), g in r.groupby(["dataset", "p_noise"], sort=False):
        n = result.config.sizes[d][0] * len(g)
        frac = float(g.corrupted_fraction.mean())
        rows.append({"dataset": d, "p_noise": p, "corrupted fraction": round(frac, 4), "labels": n,
                     "ok": abs(frac - p) < z * math.sqrt(p * (1 - p) / n)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ presentation
def _summary(result: HyperCleaningResult) -> pd.DataFrame:
    rows = []
    for (d, p, m, g), grp in result.runs.groupby(["dataset", "p_noise", "method", "gamma"], sort=False, dropna=False):
        row = {"dataset": d, "p_noise": p, "method": m, "gamma": g, "label": grp.label.iloc[0],
               "#JVPs": int(grp["#JVPs"].iloc[0]), "seeds": len(grp),
               "chosen": m == "greedy" and result.chosen_gamma.get((d, float(p))) == g}
        for k in METRICS:
            mean, ci = mean_ci(grp[k].to_numpy(float) * (1 if k == "auroc" else 100))
            row[k], row[k + " ci"] = mean, ci
        rows.append(row)
    return pd.DataFrame(rows)


def paper_table() -> pd.DataFrame:
    """The paper's Table 2 as published (validation accuracy %, mean ± 95 % CI, 5 seeds)."""
    t = PAPER_TABLE.assign(cell=[fmt_mean_ci(m, c) for m, c in zip(PAPER_TABLE["val_acc (paper)"],
                                                                  PAPER_TABLE["ci (paper)"])])
    t["column"] = [f"{'MNIST' if d == 'mnist' else 'F-MNIST'} {p:g}" for d, p in zip(t.dataset, t.p_noise)]
    out = t.pivot(index=["method", "#JVPs (paper)"], columns="column", values="cell").reset_index()
    out["method"] = out["method"].map({"none": "no HPO (α = 0)", "t1t2": "T1−T2", "neumann": "IFT(5)",
                                       "greedy": "greedy γ=0.9"})
    order = ["no HPO (α = 0)", "T1−T2", "IFT(5)", "greedy γ=0.9"]
    out = out.set_index("method").loc[order].reset_index()
    out.columns.name = None
    return out[["method", "#JVPs (paper)", "MNIST 0.3", "MNIST 0.5", "F-MNIST 0.3", "F-MNIST 0.5"]]


def display_table(result: HyperCleaningResult, dataset: str | None = None) -> pd.DataFrame:
    """Ours (mean ± 95 % CI over seeds, accuracies in %) beside the paper's Table 2, for one
    dataset or (``None``) all. Each row's paper column is the paper's number for the same
    dataset; digits is not in the paper, so its rows show the paper's MNIST numbers for
    reference. ``*`` marks the γ chosen on validation accuracy."""
    s = _summary(result)
    if dataset is not None:
        s = s[s.dataset == dataset]
    out = []
    for _, r in s.iterrows():
        ref = "mnist" if r.dataset in ("digits", "mnist") else r.dataset
        pr = PAPER_TABLE[(PAPER_TABLE.dataset == ref) & (PAPER_TABLE.method == r.method)
                         & np.isclose(PAPER_TABLE.p_noise, r.p_noise)]
        if r.method == "greedy" and r.gamma != 0.9:
            pr = pr.iloc[0:0]
        out.append({"dataset": r.dataset, "p_noise": r.p_noise, "method": r.label + (" *" if r.chosen else ""),
                    "#JVPs (ours)": r["#JVPs"],
                    "val acc % (ours)": fmt_mean_ci(r.val_acc, r["val_acc ci"]),
                    "test acc % (ours)": fmt_mean_ci(r.test_acc, r["test_acc ci"]),
                    "AUROC (ours)": fmt_mean_ci(r.auroc, r["auroc ci"], 3),
                    "#JVPs (paper)": "" if pr.empty else str(int(pr["#JVPs (paper)"].iloc[0])),
                    "paper's data": "" if pr.empty else ref,
                    "val acc % (paper)": "" if pr.empty else
                    fmt_mean_ci(pr["val_acc (paper)"].iloc[0], pr["ci (paper)"].iloc[0])})
    return pd.DataFrame(out)


def plot_accuracy(result: HyperCleaningResult):
    """Validation and test accuracy (mean ± 95 % CI over seeds) per method, one panel per
    (dataset, p_noise); the paper's validation accuracy as black diamonds (MNIST numbers)."""
    import matplotlib.pyplot as plt
    s = _summary(result)
    panels = list(dict.fromkeys(zip(s.dataset, s.p_noise)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.5, 3.8), squeeze=False)
    for ax, (d, p) in zip(axes[0], panels):
        sp = s[(s.dataset == d) & (s.p_noise == p)].reset_index(drop=True)
        xs = np.arange(len(sp))
        ax.bar(xs - 0.2, sp.val_acc, 0.4, yerr=sp["val_acc ci"], capsize=2, label="validation (ours)", color="C0")
        ax.bar(xs + 0.2, sp.test_acc, 0.4, yerr=sp["test_acc ci"], capsize=2, label="test (ours)", color="C2")
        paper = PAPER_TABLE[(PAPER_TABLE.dataset == "mnist") & np.isclose(PAPER_TABLE.p_noise, p)].set_index("method")
        for x, m, g in zip(xs, sp.method, sp.gamma):
            if m in paper.index and (m != "greedy" or g == 0.9):
                ax.plot(x, paper.loc[m, "val_acc (paper)"], "kD", ms=5,
                        label="paper, MNIST (validation)" if x == xs[0] or m == "none" else None)
        ax.set_xticks(xs, [lab + (" *" if c else "") for lab, c in zip(sp.label, sp.chosen)],
                      rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{d}, p_noise = {p:g}")
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("accuracy %")
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[0][-1].legend(uniq.values(), uniq.keys(), fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_curves(result: HyperCleaningResult, metric: str = "val_acc"):
    """``metric`` against outer steps (mean over seeds), one panel per (dataset, p_noise)."""
    import matplotlib.pyplot as plt
    c = result.curves
    panels = list(dict.fromkeys(zip(c.dataset, c.p_noise))) if not c.empty else []
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)) + 1.5, 3.2), squeeze=False)
    none = result.runs[result.runs.method == "none"].groupby(["dataset", "p_noise"])[metric].mean()
    for ax, (d, p) in zip(axes[0], panels):
        cp = c[(c.dataset == d) & (c.p_noise == p)]
        for lab, g in cp.groupby("label", sort=False):
            m = g.groupby("step")[metric].mean()
            ax.plot(m.index, 100 * m.to_numpy() if metric != "auroc" else m.to_numpy(), lw=1.2, label=lab)
        if (d, p) in none.index:
            v = none.loc[(d, p)]
            ax.axhline(100 * v if metric != "auroc" else v, color="grey", ls=":", lw=1, label="no HPO (α = 0)")
        ax.set_title(f"{d}, p_noise = {p:g}")
        ax.set_xlabel("outer step")
    axes[0][0].set_ylabel(METRICS[metric] + (" %" if metric != "auroc" else ""))
    if panels:
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def setup_table(cfg: HyperCleaningConfig) -> pd.DataFrame:
    """Our settings beside the paper's (PAPERS.md B.3)."""
    sizes = "; ".join(f"{d}: {' / '.join(map(str, cfg.sizes[d]))}" for d in cfg.datasets)
    model = (f"MLP, one hidden layer of {cfg.hidden} ReLU units" if cfg.model == "mlp" else
             f"CNN: 3 conv layers (3×3, stride 2) × {cfg.channels} channels + linear head")
    rows = [
        ("data", ", ".join(cfg.datasets) + " (MNIST: its 10 000-image test split, cut disjointly)",
         "MNIST, Fashion-MNIST"),
        ("train / validation / test", sizes, "1 000 / whole test split / — (validation = test)"),
        ("label noise p_noise", ", ".join(f"{p:g}" for p in cfg.p_noise) + " (a random other class)", "0.3, 0.5"),
        ("network", model, "3-layer CNN, 8 channels"),
        ("inner loop", f"full-batch SGD lr {cfg.inner_lr:g}, momentum {cfg.inner_momentum:g}, T = {cfg.T}",
         "full-batch SGD lr 0.1, momentum 0.9, T = 10"),
        ("outer loop", f"Adam lr {cfg.outer_lr:g}, {cfg.steps} steps, α₀ = 0", "Adam lr 0.1, 200 steps"),
        ("γ grid (greedy)", ", ".join(f"{g:g}" for g in cfg.gammas), "0.9, 0.99, 0.999 (0.9 best)"),
        ("other methods", f"IFT({cfg.neumann_K}) = Neumann, (FG)²U b = {cfg.fg2u_b}, full RMD",
         "IFT(5)"),
        ("seeds", str(len(cfg.seeds)), "5"),
    ]
    return pd.DataFrame(rows, columns=["", "ours", "paper"])


def timings(result: HyperCleaningResult) -> str:
    """Mean wall time per outer step, per (dataset, method), from the result files."""
    r = result.runs[result.runs.steps > 0]
    t = (r.outer_wall_time_s / r.steps).groupby([r.dataset, r.label], sort=False).mean()
    return "\n".join(f"{d} {m}: wall time per outer step {x:.3f} s" for (d, m), x in t.items())


def facts(result: HyperCleaningResult) -> dict:
    """Numbers and sentences for the page's prose (to ``glue``)."""
    r, cfg = result.ranking, result.config
    core = r[r.other.isin(CORE) & r.metric.isin(["val_acc", "test_acc"])]
    fmt = lambda d: "; ".join(f"{c} on {METRICS[m]} ({ds}, p = {p:g}, p-value {pv:.3g})"  # noqa: E731
                              for c, m, ds, p, pv in zip(d.claim, d.metric, d.dataset, d.p_noise, d.p)) or "none"
    s = _summary(result)
    out = {"n_seeds": len(cfg.seeds), "steps": cfg.steps, "datasets": ", ".join(cfg.datasets),
           "gammas": "; ".join(f"{d} p = {p:g}: γ = {g:g}" for (d, p), g in result.chosen_gamma.items()) or "none",
           "n_holds": int(core.holds.sum()), "n_claims": len(core),
           "holds": fmt(core[core.holds]), "fails": fmt(core[~core.holds]),
           "corrupted": "; ".join(f"{r.dataset}, p = {r.p_noise:g}: {r['corrupted fraction']:.3f}"
                                  for _, r in noise_check(result).iterrows())}
    rep = s[(s.method != "greedy") | s.chosen]
    out["comparison"] = "; ".join(
        f"{d}, p = {p:g}: " + ", ".join(f"{lab} {acc:.1f} % (AUROC {au:.3f})" for lab, acc, au in zip(g.label, g.test_acc, g.auroc))
        for (d, p), g in rep.groupby(["dataset", "p_noise"], sort=False))
    for row in rep.itertuples():
        key = f"{row.dataset}_{round(100 * row.p_noise)}_{row.method}"
        out[f"test_{key}"] = round(row.test_acc, 1)
        out[f"auroc_{key}"] = round(row.auroc, 3)
    return out
