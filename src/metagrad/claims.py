"""Judge a page's registered claims (``claims/<page>.yaml``) on its result files.

The registry, written before the runs, fixes for each claim the metric, the arms ``a`` (the
claimed winner) and ``b`` (the baseline), the setting (``where``), the test, α, the smallest
effect of interest (SESOI) and whether it ranks hypergradient estimators
(``needs_sensitivity``). :func:`evaluate` applies the decision rule of ``claims/README.md``:

not run → baseline diverged → not testable at this scale → reproduced / contradicted (Holm
over the page's tested claims) → not detected at this scale (with the minimal detectable
effect).

The statistics are :mod:`metagrad.stats`; the evidence (one row per run, with its divergence
verdict) is :func:`metagrad.evidence.runs`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import stats
from .errors import ConfigError
from .results import repo_root

__all__ = ["VERDICTS", "registry_dir", "pages", "load", "evaluate", "sensitivity_table"]

VERDICTS = ("reproduced", "not detected at this scale", "contradicted", "not testable at this scale",
            "baseline diverged", "not run")
COLUMNS = ["id", "source", "claim", "paper", "ours", "metric", "test", "smallest_effect", "n",
           "effect", "ci_low", "ci_high", "p", "p_holm", "p_opposite_holm", "mde", "verdict", "detail"]
SEEDED = {"paired-t", "paired-t-log", "one-sample-t-log"}
TINY = 1e-12


def registry_dir() -> Path:
    return repo_root() / "claims"


def pages() -> list[str]:
    return sorted(p.stem for p in registry_dir().glob("*.yaml"))


def load(page: str, folder: str | Path | None = None) -> dict:
    """The registry of ``page`` with each claim's defaults filled in."""
    path = Path(folder or registry_dir()) / f"{page}.yaml"
    if not path.is_file():
        raise ConfigError(f"no claims registry {path}; the registered pages are {pages()}")
    reg = yaml.safe_load(path.read_text(encoding="utf8"))
    defaults = reg.get("defaults", {})
    reg["claims"] = [{**defaults, **c} for c in reg.get("claims", [])]
    for c in reg["claims"]:
        c.setdefault("direction", "greater")
        c.setdefault("smallest_effect", 0.0)
        c.setdefault("where", {})
        if c["direction"] in ("above", "below"):
            c.setdefault("a", "page")  # a page-level measurement (one row of arm "page")
            c.setdefault("b", None)
    return reg


# ----------------------------------------------------------------------------- selecting runs
def _select(runs: pd.DataFrame, where: dict) -> pd.DataFrame:
    sel = runs
    for k, v in where.items():
        if k not in sel:
            return sel.iloc[0:0]
        col = sel[k]
        sel = sel[np.isclose(col.astype(float), float(v))] if isinstance(v, (int, float)) else sel[col == v]
    return sel


def _values(sel: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    g = sel[sel.arm == arm]
    if metric not in g:
        return pd.Series(dtype=float)
    return g.set_index("seed")[metric].astype(float).groupby(level=0).first()


def _diverged(sel: pd.DataFrame, arm: str, seeds) -> list[str]:
    g = sel[(sel.arm == arm) & sel.seed.isin(seeds)]
    g = g[g.diverged.fillna(False).astype(bool)] if "diverged" in g else g.iloc[0:0]
    return [f"{arm} seed {int(s)}: {r} at step {a}" for s, r, a in
            zip(g.seed, g.diverged_reason, g.diverged_at)]


# ----------------------------------------------------------------------------- one comparison
def _compare(c: dict, sel: pd.DataFrame, seeds) -> dict:
    """Effect in the claimed direction, its CI, one-sided p for the claim and for the opposite,
    and the data used. For ``exact`` tests p is None."""
    metric, test, direction = c["metric"], c.get("test", "paired-t"), c["direction"]
    a = _values(sel, c["a"], metric)
    if direction in ("above", "below"):  # against a threshold
        x = a.reindex(seeds) if test in SEEDED else a
        sign = 1.0 if direction == "above" else -1.0
        if test == "one-sample-t-log":
            t = stats.one_sample_t(np.log10(x.to_numpy()), math.log10(c["threshold"]))
            return _from_test(t, sign, a_mean=float(x.mean()), b_mean=c["threshold"])
        e = sign * (float(x.iloc[0]) - c["threshold"])
        return {"effect": e, "a_mean": float(x.iloc[0]), "b_mean": c["threshold"], "n": 1}
    bs = c["b"] if isinstance(c["b"], list) else [c["b"]]
    if direction == "best_lower":  # exact: a beats every b by the smallest relative margin
        la = float(a.iloc[0])
        lbs = {b: float(_values(sel, b, metric).iloc[0]) for b in bs}
        best_b = min(lbs, key=lbs.get)
        e = (lbs[best_b] - la) / max(abs(la), abs(lbs[best_b])) if c.get("relative") else lbs[best_b] - la
        return {"effect": e, "a_mean": la, "b_mean": lbs[best_b], "n": 1, "b_best": best_b}
    b = _values(sel, bs[0], metric)
    if test in SEEDED:
        a, b = a.reindex(seeds), b.reindex(seeds)
        xa, xb = a.to_numpy(), b.to_numpy()
        if test == "paired-t-log":
            xa, xb = np.log10(xa), np.log10(xb)
        if direction == "equivalent":
            margin = c["smallest_effect"]
            p, t = stats.tost(xa, xb, margin)
            out = _from_test(t, 1.0, a_mean=float(a.mean()), b_mean=float(b.mean()))
            beyond = min(stats.paired_t(xa - margin, xb).p_greater, stats.paired_t(xa + margin, xb).p_less)
            out.update(p_claim=p, p_opposite=min(1.0, 2 * beyond), equivalence=True)
            return out
        sign = 1.0 if direction == "greater" else -1.0
        return _from_test(stats.paired_t(xa, xb), sign, a_mean=float(a.mean()), b_mean=float(b.mean()))
    la, lb = float(a.iloc[0]), float(b.iloc[0])
    if direction == "equivalent":
        return {"effect": abs(la - lb), "a_mean": la, "b_mean": lb, "n": 1}
    sign = 1.0 if direction == "greater" else -1.0
    e = sign * (la - lb) / (max(abs(la), abs(lb)) if c.get("relative") else 1.0)
    return {"effect": e, "a_mean": la, "b_mean": lb, "n": 1}


def _from_test(t: stats.PairedTest, sign: float, **extra) -> dict:
    lo, hi = sorted((sign * t.ci_low, sign * t.ci_high))
    return {"effect": sign * t.effect, "ci_low": lo, "ci_high": hi, "sd": t.sd, "n": t.n,
            "p_claim": t.p_greater if sign > 0 else t.p_less,
            "p_opposite": t.p_less if sign > 0 else t.p_greater, **extra}


def _exact_verdict(c: dict, r: dict) -> str:
    """A measured-once quantity: reproduced when the effect reaches the SESOI, contradicted when
    it is at least the SESOI the other way. Against a threshold a SESOI of 0 means "on the
    right side of it (inclusive)"; between two arms a difference must be non-zero."""
    if c["direction"] == "equivalent":
        return "reproduced" if r["effect"] <= c["smallest_effect"] else "contradicted"
    if c["direction"] in ("above", "below") and c["smallest_effect"] == 0:
        return "reproduced" if r["effect"] >= 0 else "contradicted"
    margin = max(c["smallest_effect"], TINY)
    if r["effect"] >= margin:
        return "reproduced"
    if r["effect"] <= -margin:
        return "contradicted"
    return "not detected at this scale"


# ----------------------------------------------------------------------------- a page
def _seeds(reg: dict, runs: pd.DataFrame, scale: str, seeds) -> list:
    if reg.get("units") and "seed" in runs:  # pairing units other than seeds (all of them)
        return sorted(runs[runs.arm != "page"].seed.unique())
    if scale == "book" and reg.get("seeds"):
        return list(reg["seeds"])
    if seeds is not None:
        return list(seeds)
    return sorted(runs.seed.unique()) if "seed" in runs else []


def sensitivity_table(reg: dict, runs: pd.DataFrame, *, scale: str = "book", seeds=None) -> pd.DataFrame:
    """The page's sensitivity preconditions: does the exact hypergradient beat the crude
    baseline by at least the SESOI (one-sided p < α, uncorrected) in each setting?"""
    seeds = _seeds(reg, runs, scale, seeds)
    rows = []
    for s in reg.get("sensitivity", []):
        s = {"direction": "greater", "test": "paired-t", **s}
        sel = _select(runs, s.get("where", {}))
        row = {"id": s["id"], "where": s.get("where", {}), "exact": s["a"], "crude": s["b"],
               "metric": s["metric"], "smallest_effect": s["smallest_effect"]}
        try:
            r = _compare(s, sel, seeds)
        except (IndexError, KeyError):
            rows.append({**row, "passes": False, "detail": "not run"})
            continue
        ok = r["effect"] >= s["smallest_effect"] and (r.get("p_claim") is None or r["p_claim"] < reg["alpha"])
        rows.append({**row, "effect": r["effect"], "p": r.get("p_claim"), "passes": bool(ok),
                     "detail": "" if math.isfinite(r["effect"]) else "not run"})
    return pd.DataFrame(rows)


def evaluate(page: str, runs: pd.DataFrame, *, scale: str = "book", seeds=None,
             registry: dict | None = None) -> pd.DataFrame:
    """One row per registered claim: the verdict, ours beside the paper's, the effect in the
    claimed direction with its 95 % CI, p and Holm-adjusted p, the MDE and a detail."""
    reg = registry or load(page)
    alpha = reg.get("alpha", 0.05)
    seeds = _seeds(reg, runs, scale, seeds)
    sens = sensitivity_table(reg, runs, scale=scale, seeds=seeds) if not runs.empty else pd.DataFrame()
    sens_ok = dict(zip(sens.id, sens.passes)) if not sens.empty else {}
    rows = []
    for c in reg["claims"]:
        row = {"id": c["id"], "source": c.get("source", ""), "claim": c.get("statement", ""),
               "paper": c.get("paper", ""), "metric": c.get("metric"), "test": c.get("test"),
               "smallest_effect": c["smallest_effect"], "verdict": None, "detail": ""}
        rows.append(row)
        if c.get("not_run"):
            row.update(verdict="not run", detail=c["not_run"])
            continue
        sel = _select(runs, c["where"]) if not runs.empty else runs
        arms = [c["a"]] + ([] if c.get("b") is None else (c["b"] if isinstance(c["b"], list) else [c["b"]]))
        have = {arm: set(sel[sel.arm == arm].seed) if not sel.empty else set() for arm in arms}
        seeded = c.get("test") in SEEDED
        need = set(seeds) if seeded else {min(seeds, default=0)}
        missing = {arm: sorted(need - h) for arm, h in have.items() if need - h}
        if missing or sel.empty:
            row.update(verdict="not run", detail="missing seeds " + "; ".join(
                f"{a}: {m}" for a, m in missing.items()) if missing else "no result files")
            if seeded and not sel.empty and all(have.values()):
                common = sorted(set.intersection(*have.values()))
                r = _compare(c, sel, common)
                row.update(ours=_ours(r, c), effect=r["effect"],
                           detail=row["detail"] + f" (provisional on seeds {common}: effect "
                           f"{r['effect']:.3g}, p {r.get('p_claim', math.nan):.3g})")
            continue
        div = [d for b in arms[1:] for d in _diverged(sel, b, need)]
        r = _compare(c, sel, sorted(need))
        row.update(ours=_ours(r, c), effect=r["effect"], ci_low=r.get("ci_low"),
                   ci_high=r.get("ci_high"), p=r.get("p_claim"), n=r.get("n"), _r=r)
        if div:
            row.update(verdict="baseline diverged", detail="; ".join(div))
            continue
        need_s = c.get("needs_sensitivity")
        if need_s:
            sid = need_s if isinstance(need_s, str) else next(
                (s["id"] for s in reg.get("sensitivity", []) if s.get("where", {}) == c["where"]), None)
            if sid is None or not sens_ok.get(sid, False):
                row.update(verdict="not testable at this scale",
                           detail=f"sensitivity {sid}: the exact hypergradient does not beat the crude "
                                  f"baseline by ≥ its SESOI at α (p and effect in the sensitivity table)")
                continue
        if not seeded:
            row["verdict"] = _exact_verdict(c, r)
            if row["verdict"] == "not detected at this scale":
                row["mde"] = c["smallest_effect"]
                row["detail"] = "deterministic: |effect| below the smallest effect of interest"
    _holm(rows, alpha)
    return pd.DataFrame(rows).drop(columns="_r", errors="ignore").reindex(columns=COLUMNS)


def _holm(rows: list[dict], alpha: float) -> None:
    tested = [r for r in rows if r["verdict"] is None]
    m = len(tested)
    if not m:
        return
    pc = stats.holm([r["_r"].get("p_claim", math.nan) for r in tested])
    po = stats.holm([r["_r"].get("p_opposite", math.nan) for r in tested])
    for r, a, o in zip(tested, pc, po):
        res = r["_r"]
        r["p_holm"], r["p_opposite_holm"] = a, o
        if a < alpha and (res.get("equivalence") or res["effect"] >= r["smallest_effect"]):
            r["verdict"] = "reproduced"
        elif o < alpha:
            r["verdict"] = "contradicted"
        else:
            r["verdict"] = "not detected at this scale"
            if np.isfinite(res.get("sd", math.nan)):
                r["mde"] = stats.mde(res["sd"], res["n"], alpha / m)
                r["detail"] = (f"minimal detectable effect {r['mde']:.3g} (80 % power, one-sided "
                               f"α/m = {alpha / m:.3g}, n = {res['n']})")


def _ours(r: dict, c: dict) -> str:
    def f(x):
        return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4g}"
    b = c.get("b")
    b = r.get("b_best", b if not isinstance(b, list) else "best other")
    if b is None:
        return f"{c['a']} {f(r.get('a_mean'))} (threshold {f(r.get('b_mean'))})"
    return f"{c['a']} {f(r.get('a_mean'))} vs {b} {f(r.get('b_mean'))}"
