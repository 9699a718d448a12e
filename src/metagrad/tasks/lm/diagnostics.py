"""Why the arms behave as they do: the quality of (FG)²U's estimate against the exact
hypergradient at each depth (exploratory, not judged by the registry)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ... import hypergrad
from ..._tree import flatten
from ...errors import MetagradError
from ...results import cached, repo_root
from . import setup as S

__all__ = ["gradient_check", "gradient_table"]


def gradient_check(cfg: S.LMConfig, base: S.Base, b: int, *, depths: tuple, draws: int = 8,
                   progress: bool = True) -> dict:
    """At α = 0 (uniform weights) on the first outer step's documents of seed 0: the exact
    hypergradient by RGU (also beyond the memory budget: CPU memory is not the limit here) and
    ``draws`` (FG)²U estimates with ``b`` directions; their cosines with the exact one, against
    Lemma 3.1's prediction for N hyperparameters and b directions (cached)."""
    out = repo_root() / cfg.results_dir / cfg.scale / "gradient_check.json"
    key = {"run": cfg.run_key(), "b": b, "depths": list(depths), "draws": draws}

    def compute():
        from ..condensation.quality import fg2u_expected_cosine
        wnet = S.weighter(cfg, base)
        alpha = wnet.params
        n = sum(v.numel() for v in alpha.values())
        rows = []
        for depth in depths:
            problem = S.problem_at(cfg, base, wnet, depth, 0, 0).problem

            def grad(method, **opts):  # an overflowing hypergradient is recorded as NaN
                try:
                    return flatten(hypergrad(problem, alpha, method, **opts).grad)
                except MetagradError:
                    return torch.full((n,), float("nan"))
            exact = grad("rmd")
            cos = []
            for i in range(draws):
                g = grad("fg2u", b=b, chunk=b, seed=10_000 + i)
                cos.append(float(torch.nn.functional.cosine_similarity(g, exact, dim=0)))
            rows.append({"depth": depth, "exact_norm": float(exact.norm()), "cosines": cos,
                         "predicted_cosine": fg2u_expected_cosine(n, b), "N": n, "b": b})
            if progress:
                print(f"gradient check depth {depth}: |grad| {rows[-1]['exact_norm']:.3g}, "
                      f"mean cosine {np.mean(cos):.3f}", flush=True)
        return rows
    return cached(out, key, compute, device=str(base.device))


def gradient_table(payload: dict) -> pd.DataFrame:
    r = pd.DataFrame(payload["result"])
    return pd.DataFrame({"depth": r.depth, "norm of the exact hypergradient": r.exact_norm,
                         "cosine, mean": [float(np.mean(c)) for c in r.cosines],
                         "cosine, min": [float(np.min(c)) for c in r.cosines],
                         "cosine, max": [float(np.max(c)) for c in r.cosines],
                         "Lemma 3.1 prediction": r.predicted_cosine})
