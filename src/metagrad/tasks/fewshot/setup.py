"""Few-shot meta-learning: the paper's tables, the configuration and the data."""
from __future__ import annotations

from dataclasses import dataclass, asdict

import pandas as pd
import torch

from ...errors import check
from ...config import config_from_params


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


from ...config import resolve_device  # noqa: F401


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class FewShotConfig:
    """Everything that defines the experiment. ``settings`` are ``(shot, way)`` pairs; methods
    are names of :func:`metagrad.hypergrad` (plus ``"init"``: α₀ evaluated without training);
    ``greedy`` is run at every γ in ``gammas`` and the γ with the best ``select`` accuracy
    (mean over seeds) is reported. ``n_query`` is the paper's 10 query images per class.

    ``cells``: extra runs of one (shot, way) at other model settings, each a dict
    ``{"name": ..., "shot": ..., "way": ..., <field>: <value>, ...}`` whose fields override
    those of :data:`CELL_FIELDS` (e.g. ``{"name": "long", "shot": 1, "way": 5, "outer_steps":
    2000}``); the page's own ``settings`` form the cell ``"base"``."""
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
    cells: tuple = ()

    def __post_init__(self):
        check(self.depth >= 2 and self.depth % 2 == 0, f"depth must be even and >= 2, got {self.depth}")
        check(self.data in ("auto", "omniglot", "digits"), f"data must be auto/omniglot/digits, got {self.data!r}")
        unknown = sorted(set(self.methods) - set(METHODS))
        check(not unknown, f"unknown methods {unknown}; choose from {list(METHODS)}")
        check(all(0 < g <= 1 for g in self.gammas), f"gammas must be in (0, 1], got {self.gammas}")
        check(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}")
        names = [c.get("name") if isinstance(c, dict) else None for c in self.cells]
        for c, name in zip(self.cells, names):
            check(isinstance(c, dict) and isinstance(name, str) and name.replace("-", "").isalnum()
                  and name != "base" and {"shot", "way"} <= set(c),
                  f"each cell must be a dict with a name (letters, digits, '-'; not 'base'), shot and "
                  f"way, e.g. {{name: long, shot: 1, way: 5, outer_steps: 2000}}; got {c!r}")
            bad = sorted(set(c) - {"name", "shot", "way"} - set(CELL_FIELDS))
            check(not bad, f"cell {name!r}: {bad} cannot be set per cell; choose from {list(CELL_FIELDS)}")
        check(len(set(names)) == len(names), f"cell names must be unique, got {names}")

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
                  "checkpoint_every", "checkpoint_dir", "eval_chunk", "data", "cells"):
            d.pop(k)
        return d

    def cell_configs(self) -> list[tuple[int, int, str, "FewShotConfig"]]:
        """``(shot, way, cell, config)`` of every setting: the page's ``settings`` (cell
        ``"base"``, this configuration) and then each of ``cells`` (its fields overridden)."""
        from dataclasses import replace
        base = replace(self, cells=())
        out = [(int(s), int(w), "base", base) for s, w in self.settings]
        for c in self.cells:
            over = {k: v for k, v in c.items() if k not in ("name", "shot", "way")}
            out.append((int(c["shot"]), int(c["way"]), c["name"], replace(base, **over)))
        return out


#: Fields a cell may override: those of the model and the outer loop, and which methods (and
#: greedy γ) it runs (not the data or the evaluation episodes, which every cell shares).
CELL_FIELDS = ("depth", "width", "meta_batch", "T", "inner_lr", "inner_momentum", "outer_lr", "outer_steps",
               "neumann_K", "fg2u_b", "methods", "gammas")


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
    from ...data import load_omniglot, load_oneshot_runs, load_digits, split_classes, DataNotFoundError
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
        ways = [w for _, w, _, _ in cfg.cell_configs() if 2 * w <= images.shape[0]]
        frac = max([frac] + [w / images.shape[0] for w in ways])
    train, held = split_classes(images.shape[0], (1 - frac, frac), seed=cfg.split_seed)
    note += f"; {len(train)} meta-train and {len(held)} held-out classes (split seed {cfg.split_seed})"
    return FewShotData(images, train, held, runs, name, note)
