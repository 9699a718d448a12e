"""metagrad.stats against scipy and textbook values on known cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as ss

from metagrad import stats

A = np.array([0.81, 0.79, 0.84, 0.80, 0.83])
B = np.array([0.76, 0.78, 0.80, 0.74, 0.79])


def test_paired_t_matches_scipy_ttest_rel():
    t = stats.paired_t(A, B)
    ref_g = ss.ttest_rel(A, B, alternative="greater")
    ref_l = ss.ttest_rel(A, B, alternative="less")
    assert t.n == 5
    assert t.t == pytest.approx(ref_g.statistic)
    assert t.p_greater == pytest.approx(ref_g.pvalue)
    assert t.p_less == pytest.approx(ref_l.pvalue)
    d = A - B
    assert t.effect == pytest.approx(d.mean())
    half = ss.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (t.ci_low, t.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    ci = ss.ttest_rel(A, B).confidence_interval(0.95)
    assert (t.ci_low, t.ci_high) == pytest.approx((ci.low, ci.high))
    assert t.dz == pytest.approx(d.mean() / d.std(ddof=1))


def test_paired_t_drops_nonfinite_pairs_and_checks_length():
    t = stats.paired_t([1.0, 2.0, np.nan, 4.0], [0.5, 1.0, 3.0, 2.0])
    assert t.n == 3
    with pytest.raises(ValueError, match="equal-length"):
        stats.paired_t([1, 2, 3], [1, 2])


def test_identical_differences_decide_by_sign():
    t = stats.paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert (t.p_greater, t.p_less, t.sd) == (0.0, 1.0, 0.0)


def test_one_sample_t_matches_scipy():
    x = np.log10([0.002, 0.01, 0.004, 0.03, 0.006])
    t = stats.one_sample_t(x, math.log10(0.05))
    ref = ss.ttest_1samp(x, math.log10(0.05), alternative="less")
    assert t.p_less == pytest.approx(ref.pvalue)


def test_tost_is_the_larger_of_two_shifted_one_sided_tests():
    p, _ = stats.tost(A, B, 0.1)
    p1 = ss.ttest_rel(A + 0.1, B, alternative="greater").pvalue
    p2 = ss.ttest_rel(A - 0.1, B, alternative="less").pvalue
    assert p == pytest.approx(max(p1, p2))


def test_holm_known_values():
    # textbook example: p = (0.01, 0.04, 0.03, 0.005), m = 4
    # sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(stats.holm([0.01, np.nan])[1]) and stats.holm([0.01, np.nan])[0] == pytest.approx(0.01)
    assert stats.holm([0.9, 0.8]).max() <= 1.0


def test_holm_controls_fwer_under_the_null():
    rng = np.random.default_rng(0)
    rejections = 0
    for _ in range(2000):
        p = rng.uniform(size=6)
        rejections += bool((stats.holm(p) < 0.05).any())
    assert rejections / 2000 < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)


def test_mde_has_the_stated_power():
    sd, n, alpha = 0.02, 5, 0.01
    delta = stats.mde(sd, n, alpha)
    crit = ss.t.ppf(1 - alpha, n - 1)
    assert ss.nct.sf(crit, n - 1, delta * math.sqrt(n) / sd) == pytest.approx(0.8, abs=1e-6)
    # and by simulation
    rng = np.random.default_rng(1)
    d = rng.normal(delta, sd, size=(20000, n))
    p = ss.ttest_1samp(d, 0.0, axis=1, alternative="greater").pvalue
    assert (p < alpha).mean() == pytest.approx(0.8, abs=0.02)
    assert stats.mde(sd, 50, alpha) < delta  # more pairs, smaller detectable effect


def test_wilcoxon_cannot_reach_corrected_levels_with_five_seeds():
    assert stats.wilcoxon_min_p(5) == pytest.approx(0.0625)
    assert stats.wilcoxon_min_p(5, "greater") == pytest.approx(1 / 32)
    # while the paired t-test can
    assert stats.paired_t(A, B).p_greater < 0.05 / 6
