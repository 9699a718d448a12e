"""The claims protocol: planted effects get the right verdicts; divergence is detected."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from metagrad import claims, divergence, evidence

SEEDS = [0, 1, 2, 3, 4]


def _registry(**claim):
    base = {"id": "C", "metric": "acc", "test": "paired-t", "direction": "greater", "a": "new",
            "b": "old", "smallest_effect": 0.01, "where": {}}
    return {"page": "planted", "seeds": SEEDS, "alpha": 0.05,
            "sensitivity": [{"id": "S", "where": {}, "metric": "acc", "a": "exact", "b": "crude",
                             "smallest_effect": 0.01}],
            "claims": [{**base, **claim}]}


def _runs(effect: float, *, noise: float = 0.005, diverge: dict | None = None, exact_gain: float = 0.1,
          seeds=SEEDS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for s in seeds:
        base = 0.7 + 0.05 * rng.standard_normal()  # the seed moves every arm together
        for arm, shift in (("old", 0.0), ("new", effect), ("crude", 0.0), ("exact", exact_gain)):
            d = (diverge or {}).get((arm, s))
            rows.append({"arm": arm, "seed": s, "acc": base + shift + noise * rng.standard_normal(),
                         "diverged": d is not None, "diverged_reason": d, "diverged_at": 30 if d else None})
    return pd.DataFrame(rows)


def _verdict(runs, **claim):
    return claims.evaluate("planted", runs, registry=_registry(**claim)).iloc[0]


def test_planted_effect_is_reproduced():
    v = _verdict(_runs(0.05))
    assert v.verdict == "reproduced" and v.effect == pytest.approx(0.05, abs=0.01)
    assert v.ci_low < v.effect < v.ci_high


def test_planted_reversed_effect_is_contradicted():
    assert _verdict(_runs(-0.05)).verdict == "contradicted"


def test_planted_null_effect_is_not_detected_with_its_mde():
    v = _verdict(_runs(0.0))
    assert v.verdict == "not detected at this scale"
    assert 0 < v.mde < 0.05 and "minimal detectable effect" in v.detail


def test_significant_but_smaller_than_sesoi_is_not_reproduced():
    v = _verdict(_runs(0.004, noise=0.0005))
    assert v.p_holm < 0.05 and v.verdict == "not detected at this scale"


def test_planted_diverged_baseline_is_not_a_win():
    runs = _runs(0.3, diverge={("old", 2): "exploded"})
    v = _verdict(runs)
    assert v.verdict == "baseline diverged" and "old seed 2: exploded" in v.detail


def test_diverged_winner_is_data_not_excused():
    runs = _runs(-0.2, diverge={("new", 1): "at chance"})
    assert _verdict(runs).verdict == "contradicted"


def test_insensitive_scale_makes_estimator_rankings_untestable():
    v = _verdict(_runs(0.05, exact_gain=0.0), needs_sensitivity=True)
    assert v.verdict == "not testable at this scale"
    assert _verdict(_runs(0.05, exact_gain=0.1), needs_sensitivity=True).verdict == "reproduced"


def test_missing_seeds_are_not_run_with_provisional_numbers():
    v = _verdict(_runs(0.05, seeds=[0, 1, 2]))
    assert v.verdict == "not run" and "provisional" in v.detail and "[3, 4]" in v.detail


def test_holm_is_applied_across_the_page():
    reg = _registry()
    reg["claims"] = [dict(reg["claims"][0], id=f"C{i}") for i in range(10)]
    runs = _runs(0.012, noise=0.006)
    out = claims.evaluate("planted", runs, registry=reg)
    assert (out.p_holm >= out.p).all() and out.p_holm.iloc[0] == pytest.approx(min(1, 10 * out.p.iloc[0]))


def test_every_registered_page_loads_and_every_claim_gets_a_verdict():
    for page in claims.pages():
        reg = claims.load(page)
        out = claims.evaluate(page, evidence.runs(page), registry=reg)
        assert len(out) == len(reg["claims"]) and out.verdict.isin(claims.VERDICTS).all(), page


# ------------------------------------------------------------------------------ divergence
def test_divergence_nonfinite_exploded_at_chance_and_healthy():
    assert divergence.detect([1.0, 0.9, math.nan]).reason == "non-finite"
    d = divergence.detect([1.457, 3.88, 1.62, 1.618, 1.617, 1.62], n_classes=5, steps=300)
    assert (d.diverged, d.reason, d.at_step) == (True, "exploded", 50)
    # the fewshot IFT(2) seed-1 history: never 1.5x its start, but settles at ln 5
    d = divergence.detect([1.534, 2.162, 1.619, 1.624, 1.618, 1.617, 1.616, 1.626, 1.623, 1.620],
                          n_classes=5, steps=300)
    assert (d.reason, d.at_step) == ("at chance", 30)
    assert not divergence.detect([1.55, 1.43, 1.22, 1.14, 1.10], n_classes=5).diverged
    assert divergence.detect([0.5], final_metrics=[math.inf]).reason == "non-finite"


def test_stored_fewshot_ift_runs_are_detected_as_diverged():
    runs = evidence.runs("greedy_fewshot")
    if runs.empty:
        pytest.skip("no book-scale few-shot results in results/greedy_fewshot/book")
    # the three histories the audit of issue 9 read by hand (1-shot 5-way): IFT(2) blew up or sat at ln 5
    runs = runs[(runs.shot == 1) & (runs.way == 5) & (runs.cell == "base")]
    ift = runs[(runs.arm == "neumann") & runs.seed.isin([0, 1, 2])]
    assert len(ift) == 3 and ift.diverged.all()
    assert not runs[runs.arm.isin(["rmd", "greedy", "t1t2", "fo"])].diverged.any()


def test_theory_checks_file_is_rewritten_only_when_its_checks_change(tmp_path, monkeypatch):
    """A rebuild of a theory page with unchanged checks leaves its tracked checks.json byte for
    byte (no churn of dates and commits in the tree); changed checks are written."""
    import pandas as pd
    from metagrad import scoreboard
    monkeypatch.setattr(scoreboard, "repo_root", lambda: tmp_path)
    v = pd.DataFrame({"claim": ["a", "b"], "measured": [1.5, None], "holds": [True, False]})
    path = scoreboard.save_checks("theory_x", "book", v)
    first = path.read_bytes()
    os.utime(path, ns=(0, 0))   # a rewrite (atomic replace) would give the file a new mtime
    assert scoreboard.save_checks("theory_x", "book", v.copy()).read_bytes() == first
    assert path.stat().st_mtime_ns == 0
    v2 = v.assign(measured=[1.5 * (1 + 1e-4), None], claim=["a", "b"])   # measured again: noise
    assert scoreboard.save_checks("theory_x", "book", v2).read_bytes() == first
    assert scoreboard.save_checks("theory_x", "book", v.assign(measured=[1.6, None])).read_bytes() != first
    first = path.read_bytes()
    v.loc[1, "holds"] = True
    v.loc[0, "measured"] = 1.6
    assert scoreboard.save_checks("theory_x", "book", v).read_bytes() != first
    assert json.loads(path.read_text())["result"][1]["holds"] is True


def test_checks_compare_numbers_within_texts_with_a_tolerance():
    from metagrad.scoreboard import _same_checks
    assert _same_checks([{"m": "slope 1.000 at T=256", "holds": True}], [{"m": "slope 1.001 at T=256", "holds": True}])
    assert not _same_checks([{"m": "slope 1.0 at T=256"}], [{"m": "slope 1.5 at T=256"}])
    assert not _same_checks([{"m": "slope 1.0 at T=256"}], [{"m": "ratio 1.0 at T=256"}])
    assert not _same_checks([{"holds": True}], [{"holds": False}])
    assert not _same_checks([{"holds": True}], [{"holds": True}, {"holds": True}])
