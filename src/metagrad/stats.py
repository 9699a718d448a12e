r"""The statistics every experiment page uses to judge a claim (on :mod:`scipy.stats`).

**Paired tests.** Every method of a page runs on the same seeds, and a seed fixes the data
split, the label noise and the initialisation for every method: the natural unit is the
per-seed difference :math:`d_s = a_s - b_s`. We test its mean with the **paired t-test**
(``scipy.stats.ttest_rel``), one-sided in the claimed direction, and not with the Wilcoxon
signed-rank test, for one reason that decides it at our sample size: with n = 5 pairs the
smallest p-value Wilcoxon can return is :math:`1/2^5 = 0.031` one-sided (0.0625 two-sided,
:func:`wilcoxon_min_p`), so once Holm's correction divides α between more than one claim no
Wilcoxon test can reject, whatever the data: a page would be blind by construction. The
t-test assumes roughly normal differences of a smooth metric (accuracies over hundreds of
test examples, log-errors), which is mild; every p is reported with the effect and its 95 %
confidence interval, so a reader can judge the size, not only the sign.

**Multiplicity.** :func:`holm` adjusts the p-values of a page's claims (Holm's step-down,
strong control of the family-wise error rate at α).

**Power.** :func:`mde` is the minimal detectable effect: the true mean difference that a
one-sided paired t-test at level α detects with the given power (noncentral t), for the
measured standard deviation of the differences. A "not detected" verdict is reported with it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

__all__ = ["PairedTest", "paired_t", "one_sample_t", "tost", "holm", "mde", "mean_ci",
           "wilcoxon_min_p"]


@dataclass(frozen=True)
class PairedTest:
    """Result of a test on differences ``d = a - b`` (or ``x - threshold``).

    ``p_greater`` / ``p_less``: one-sided p-values for mean(d) > 0 / < 0. ``effect``: mean(d);
    ``ci_low``, ``ci_high``: its two-sided 95 % t interval; ``sd``: standard deviation of d
    (ddof 1); ``dz``: standardised effect mean/sd (Cohen's d_z); ``n``: number of pairs."""
    n: int
    effect: float
    ci_low: float
    ci_high: float
    sd: float
    dz: float
    t: float
    p_greater: float
    p_less: float

    def as_dict(self) -> dict:
        return asdict(self)


def _clean(x) -> np.ndarray:
    return np.asarray(x, dtype=float).ravel()


def mean_ci(x, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of its t confidence interval (NaN ends for fewer than 2 values)."""
    x = _clean(x)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def _from_differences(d: np.ndarray) -> PairedTest:
    n = len(d)
    m, lo, hi = mean_ci(d)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        return PairedTest(n, m, lo, hi, sd, math.nan, math.nan, math.nan, math.nan)
    if sd == 0.0:  # every difference identical: the sign decides, with certainty
        pg = 0.0 if m > 0 else (1.0 if m < 0 else 0.5)
        pl = 0.0 if m < 0 else (1.0 if m > 0 else 0.5)
        t = math.copysign(math.inf, m) if m != 0 else math.nan
        return PairedTest(n, m, m, m, 0.0, t, t, pg, pl)
    res_g = stats.ttest_1samp(d, 0.0, alternative="greater")
    res_l = stats.ttest_1samp(d, 0.0, alternative="less")
    return PairedTest(n, m, lo, hi, sd, m / sd, float(res_g.statistic), float(res_g.pvalue),
                      float(res_l.pvalue))


def paired_t(a, b) -> PairedTest:
    """Paired t-test of ``a`` against ``b`` (equal-length sequences, element i of each from the
    same seed). Pairs with a non-finite value are dropped (a diverged run's NaN metric is
    handled by the claim's decision rule before this)."""
    a, b = _clean(a), _clean(b)
    if a.shape != b.shape:
        raise ValueError(f"paired_t needs equal-length samples, got {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    return _from_differences(a[keep] - b[keep])


def one_sample_t(x, threshold: float) -> PairedTest:
    """One-sample t-test of mean(x) against ``threshold`` (the differences are ``x - threshold``)."""
    x = _clean(x)
    return _from_differences(x[np.isfinite(x)] - threshold)


def tost(a, b, margin: float) -> tuple[float, PairedTest]:
    """Two one-sided paired tests for equivalence within ``±margin``: returns (p, test) with
    p = max(p[d > -margin], p[d < margin]); equivalence is shown when p < α."""
    t = paired_t(a, b)
    if t.n < 2:
        return math.nan, t
    d = _clean(a) - _clean(b)
    d = d[np.isfinite(d)]
    p_low = _from_differences(d + margin).p_greater
    p_high = _from_differences(d - margin).p_less
    return float(max(p_low, p_high)), t


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as given; NaN stays NaN and is not counted).

    The i-th smallest of m p-values is multiplied by (m - i + 1), made monotone and capped at 1;
    rejecting the adjusted values below α controls the family-wise error rate at α."""
    p = _clean(pvalues)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal detectable effect of a one-sided paired (or one-sample) t-test: the true mean
    difference δ at which the test at level ``alpha`` on ``n`` pairs with standard deviation
    ``sd`` rejects with probability ``power`` (noncentral t with noncentrality δ√n/sd)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0.0:
        return 0.0
    df = n - 1
    crit = stats.t.ppf(1 - alpha, df)

    def gap(nc):
        return stats.nct.sf(crit, df, nc) - power

    nc = optimize.brentq(gap, 0.0, 100.0)
    return float(nc * sd / math.sqrt(n))


def wilcoxon_min_p(n: int, alternative: str = "two-sided") -> float:
    """The smallest p-value the exact Wilcoxon signed-rank test can give with ``n`` pairs (every
    difference of the same sign): 2/2^n two-sided, 1/2^n one-sided."""
    p = float(stats.wilcoxon(np.arange(1.0, n + 1), alternative="greater" if alternative != "two-sided"
                             else "two-sided", method="exact").pvalue)
    return p
