"""Tables and figures from result files: pure functions, DataFrames in, DataFrames/Figures out.
Never calls ``plt.show()``."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["mean_ci", "summarise", "fmt_mean_ci", "welch_greater", "best_by"]


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the t-based confidence interval (0 for a single value)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), 0.0
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


def fmt_mean_ci(mean: float, half: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def summarise(df: pd.DataFrame, by: list[str], value: str, *, confidence: float = 0.95,
              digits: int = 2) -> pd.DataFrame:
    """One row per group: n, mean, CI half-width and a 'mean ± ci' string."""
    rows = []
    for keys, g in df.groupby(by, sort=False):
        m, h = mean_ci(g[value], confidence)
        rows.append({**dict(zip(by, keys if isinstance(keys, tuple) else (keys,))),
                     "n": int(g[value].notna().sum()), "mean": m, "ci": h,
                     value: fmt_mean_ci(m, h, digits)})
    return pd.DataFrame(rows)



def welch_greater(a, b) -> float:
    """One-sided Welch t-test p-value for mean(a) > mean(b)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)


def best_by(df: pd.DataFrame, by: list[str], param: str, value: str) -> dict:
    """For each group of ``by``, the ``param`` whose mean ``value`` is largest (e.g. γ chosen on
    validation accuracy). Keys are tuples of plain Python values."""
    if df.empty:
        return {}
    means = df.groupby([*by, param])[value].mean().reset_index()
    best = means.loc[means.groupby(by)[value].idxmax()]
    plain = lambda x: x.item() if hasattr(x, "item") else x  # noqa: E731
    return {tuple(plain(r[c]) for c in by): float(r[param]) for _, r in best.iterrows()}
