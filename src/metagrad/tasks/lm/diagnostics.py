"""Why the arms behave as they do: the quality of (FG)²U's estimate against the exact
hypergradient at each depth, and of the float32 arithmetic of the runs against float64
(exploratory, not judged by the registry)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ... import hypergrad
from ..._tree import flatten
from ...errors import MetagradError
from ...results import cached, repo_root
from . import setup as S

__all__ = ["gradient_check", "gradient_table", "in_dtype"]


def in_dtype(base: S.Base, dtype: torch.dtype) -> S.Base:
    """A copy of the frozen base model (and its functional view) in ``dtype``; ``base`` is left as it is."""
    import copy
    import dataclasses

    from ... import from_module
    model = copy.deepcopy(base.model).to(dtype)
    return dataclasses.replace(base, model=model, net=from_module(model))


def gradient_check(cfg: S.LMConfig, base: S.Base, b: int, *, depths: tuple, draws: int = 8,
                   progress: bool = True) -> dict:
    """At α = 0 (uniform weights) on the first outer step's documents of seed 0, per depth:

    * the exact hypergradient by RGU in **float64** (the reference; also beyond the memory budget:
      CPU memory is not the limit here) and ``draws`` (FG)²U estimates with ``b`` directions in
      float64 — their cosines with it, against Lemma 3.1's prediction for N hyperparameters and b
      directions. An estimate ĝ = (1/b) Σ (g·vᵢ) vᵢ has ĝ·g = (1/b) Σ (g·vᵢ)² ≥ 0, so a negative
      float64 cosine would mean forward and reverse mode disagree (the page asserts it never is);
    * the same in **float32**, the arithmetic of the page's training runs: RGU's float32
      hypergradient against the float64 one (cosine, relative error) and the float32 (FG)²U
      estimates' cosines with the float64 reference (same directions).

    Cached; the inputs (documents, base weights) are the same in both precisions."""
    out = repo_root() / cfg.results_dir / cfg.scale / "gradient_check.json"
    key = {"run": cfg.run_key(), "b": b, "depths": list(depths), "draws": draws,
           "reference": "float64, float32 compared"}

    def compute():
        from ..condensation.quality import fg2u_expected_cosine
        cos = torch.nn.functional.cosine_similarity
        bases = {"float32": base, "float64": in_dtype(base, torch.float64)}
        rows = []
        for depth in depths:
            grads = {}
            for name, b_ in bases.items():
                wnet = S.weighter(cfg, b_)
                alpha = {k: v.to(torch.float64 if name == "float64" else v.dtype) for k, v in wnet.params.items()}
                problem = S.problem_at(cfg, b_, wnet, depth, 0, 0).problem
                n = sum(v.numel() for v in alpha.values())

                def grad(method, **opts):  # an overflowing hypergradient is recorded as NaN
                    try:
                        return flatten(hypergrad(problem, alpha, method, **opts).grad).double()
                    except MetagradError:
                        return torch.full((n,), float("nan"), dtype=torch.float64)
                grads[name] = (grad("rmd"), [grad("fg2u", b=b, chunk=b, seed=10_000 + i) for i in range(draws)])
            ref, est64 = grads["float64"]
            rmd32, est32 = grads["float32"]
            rows.append({"depth": depth, "exact_norm": float(ref.norm()),
                         "cosines": [float(cos(g, ref, dim=0)) for g in est64],
                         "cosines_float32": [float(cos(g, ref, dim=0)) for g in est32],
                         "rmd_float32_cosine": float(cos(rmd32, ref, dim=0)),
                         "rmd_float32_rel_err": float((rmd32 - ref).norm() / ref.norm()),
                         "predicted_cosine": fg2u_expected_cosine(n, b), "N": n, "b": b})
            if progress:
                r = rows[-1]
                print(f"gradient check depth {depth}: |grad| {r['exact_norm']:.3g} (float64), mean cosine "
                      f"{np.mean(r['cosines']):.3f}; float32 RGU relative error {r['rmd_float32_rel_err']:.2g}",
                      flush=True)
        return rows
    return cached(out, key, compute, device=str(base.device))


def gradient_table(payload: dict) -> pd.DataFrame:
    r = pd.DataFrame(payload["result"])
    return pd.DataFrame({"depth": r.depth, "norm of the exact hypergradient": r.exact_norm,
                         "cosine, mean": [float(np.mean(c)) for c in r.cosines],
                         "cosine, min": [float(np.min(c)) for c in r.cosines],
                         "cosine, max": [float(np.max(c)) for c in r.cosines],
                         "Lemma 3.1 prediction": r.predicted_cosine,
                         "float32 RGU: cosine": r.rmd_float32_cosine,
                         # below 1e-4 only the bound: its digits are machine- and thread-dependent rounding
                         "float32 RGU: relative error": [e if e >= 1e-4 else "< 1e-4" for e in r.rmd_float32_rel_err],
                         "float32 (FG)²U: mean cosine": [float(np.mean(c)) for c in r.cosines_float32]})
