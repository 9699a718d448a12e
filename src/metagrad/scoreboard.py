"""Verdict tables for a page, the book's scoreboard of every claim, and the README section.

* :func:`page_report` — what an experiment page shows: its registered claims judged on its
  result files (:mod:`metagrad.claims`), the sensitivity preconditions, the diverged runs, and
  a validity check for its assert cell (every claim evaluated; never a verdict's value).
* :func:`scoreboard` — every claim of both papers (experiment registries, the theory pages'
  checks, the slides' feature table) with its verdict and a link to its page.
* ``python -m metagrad.scoreboard`` prints the README's "What reproduces" section.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import claims, evidence
from .results import repo_root

__all__ = ["PageReport", "page_report", "scoreboard", "counts", "board_markdown", "readme_markdown",
           "save_checks",
           "THEORY_PAGES"]

#: theory pages whose `verdict` table (one row per checked statement, column `holds`) is saved
THEORY_PAGES = {"theory_exactness": "greedy", "theory_fg2u_variance": "fg2u",
                "theory_fg2u_convergence": "fg2u", "theory_greedy_limit": "greedy",
                "theory_greedy_descent": "greedy", "theory_cost": "both"}


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}g}"


@dataclass
class PageReport:
    page: str
    registry: dict
    runs: pd.DataFrame
    verdicts: pd.DataFrame
    sensitivity: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """One row per claim: the claim, the paper's numbers beside ours, the effect in the
        claimed direction with its 95 % CI, p (one-sided, Holm-adjusted) and the verdict."""
        v = self.verdicts
        ci = [f"[{_fmt(lo)}, {_fmt(hi)}]" if _fmt(lo) else "" for lo, hi in zip(v.ci_low, v.ci_high)]
        return pd.DataFrame({"claim": v.claim, "source": v.source, "paper": v.paper, "ours": v.ours.fillna(""),
                             "effect": [_fmt(e) for e in v.effect], "95 % CI": ci,
                             "p (Holm)": [_fmt(p) for p in v.p_holm], "verdict": v.verdict,
                             "detail": v.detail.fillna("")}).set_index(pd.Index(v.id, name="id"))

    def diverged(self) -> pd.DataFrame:
        """The diverged runs: arm, seed, setting, criterion and the outer step it fired at."""
        r = self.runs
        if r.empty or "diverged" not in r:
            return pd.DataFrame(columns=["arm", "seed", "reason", "at step"]).set_index(["arm", "seed"])
        d = r[r.diverged.fillna(False).astype(bool)]
        keys = [k for k in ("dataset", "p_noise", "ipc", "shot", "way", "T", "equation") if k in d]
        return d[["arm", "seed", *keys, "diverged_reason", "diverged_at"]].rename(
            columns={"diverged_reason": "reason", "diverged_at": "at step"}).set_index(["arm", "seed"])

    def counts(self) -> pd.Series:
        return self.verdicts.verdict.value_counts().reindex(claims.VERDICTS, fill_value=0)

    def summary_md(self) -> str:
        parts = []
        for verdict in claims.VERDICTS:
            ids = self.verdicts[self.verdicts.verdict == verdict].claim.tolist()
            if ids:
                parts.append(f"**{verdict}** ({len(ids)}): " + "; ".join(ids))
        return "\n\n".join(parts)

    def check(self) -> None:
        """Measurement validity only: every registered claim was evaluated and got one of the
        verdicts of the protocol (whichever)."""
        ids = [c["id"] for c in self.registry["claims"]]
        assert list(self.verdicts.id) == ids, (list(self.verdicts.id), ids)
        assert self.verdicts.verdict.isin(claims.VERDICTS).all(), self.verdicts[["id", "verdict"]]


def page_report(page: str, folder: str | Path | None = None, *, scale: str = "book",
                seeds=None) -> PageReport:
    reg = claims.load(page)
    runs = evidence.runs(page, folder, scale=scale)
    verdicts = claims.evaluate(page, runs, scale=scale, seeds=seeds, registry=reg)
    sens = claims.sensitivity_table(reg, runs, scale=scale, seeds=seeds) if not runs.empty else pd.DataFrame()
    if not sens.empty:
        sens = sens.set_index("id")
    return PageReport(page, reg, runs, verdicts, sens)


# ----------------------------------------------------------------------------- theory pages
def save_checks(page: str, scale: str, verdict: pd.DataFrame) -> Path:
    """Write a theory page's checks (its `verdict` table) to results/<page>/<scale>/checks.json,
    so the scoreboard lists them."""
    from .results import _code_hashes, save_result
    path = repo_root() / "results" / page / scale / "checks.json"
    rows = json.loads(verdict.astype(object).where(verdict.notna(), None).to_json(orient="records",
                                                                                   default_handler=str))
    try:   # same checks from the same library code: keep the file (a rebuild leaves the tree clean)
        old = json.loads(path.read_text())
        if _same_checks(old.get("result"), rows) and old["provenance"].get("code") == _code_hashes():
            return path
    except (OSError, ValueError, KeyError, TypeError):
        pass
    save_result(path, {"page": page, "scale": scale}, rows)
    return path


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _same_checks(a, b, rel: float = 0.02) -> bool:
    """The same checks, measured again: equal verdicts and texts, numbers (also inside texts)
    within ``rel`` of each other (timings, memory exponents and rounding move from run to run)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_checks(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_checks(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        na, nb = _NUMBER.findall(a), _NUMBER.findall(b)
        return (_NUMBER.sub("#", a) == _NUMBER.sub("#", b) and len(na) == len(nb)
                and all(math.isclose(float(x), float(y), rel_tol=rel, abs_tol=1e-9) for x, y in zip(na, nb)))
    return a == b


def _theory_rows(scale: str) -> list[dict]:
    rows = []
    for page, paper in THEORY_PAGES.items():
        path = repo_root() / "results" / page / scale / "checks.json"
        if not path.is_file():
            rows.append({"paper": paper, "registry": page, "page": page, "id": page, "source": "theory",
                         "claim": page.replace("_", " "), "verdict": "not run", "ours": "",
                         "detail": f"no {path.relative_to(repo_root())}"})
            continue
        for i, r in enumerate(json.loads(path.read_text())["result"]):
            text = r.get("claim") or r.get("check") or r.get("statement") or next(iter(r.values()))
            rows.append({"paper": paper, "registry": page, "page": page, "id": f"{page}#{i}", "source": "theory",
                         "claim": str(text), "ours": str(r.get("measured", "")),
                         "verdict": "reproduced" if r.get("holds") else "contradicted", "detail": ""})
    return rows


# ----------------------------------------------------------------------------- the scoreboard
def scoreboard(scale: str = "book") -> pd.DataFrame:
    """Every registered claim of both papers with its verdict, ours beside the paper's, and its page."""
    rows = []
    for page in claims.pages():
        rep = page_report(page, scale=scale)
        paper = rep.registry.get("paper", "")
        for _, v in rep.verdicts.iterrows():
            link = evidence.SOURCES.get(page, page) if page in evidence.ADAPTERS else ""
            rows.append({"paper": paper, "registry": page, "page": link,
                         "id": v.id, "source": v.source, "claim": v.claim, "paper_says": v.paper,
                         "ours": v.ours if isinstance(v.ours, str) else "", "verdict": v.verdict,
                         "detail": v.detail if isinstance(v.detail, str) else ""})
    rows += [{**r, "paper_says": ""} for r in _theory_rows(scale)]
    return pd.DataFrame(rows)


def _cell(x) -> str:
    return str(x if isinstance(x, str) else "").replace("|", "\\|").replace("\n", " ")


def board_markdown(board: pd.DataFrame) -> str:
    """The scoreboard as Markdown tables, one per paper, each claim linked to its page."""
    names = {"fg2u": "(FG)²U (Shen et al. 2024)", "greedy": "Generalized greedy (Yakovlev 2024)",
             "both": "Both papers (cost of every estimator)"}
    out = []
    for paper, g in board.groupby("paper", sort=False):
        out += [f"### {names.get(paper, paper)}", "",
                "| claim | source | paper | ours | verdict | page |", "|---|---|---|---|---|---|"]
        for r in g.itertuples():
            page = f"[{r.page}]({r.page}.ipynb)" if r.page else "—"
            out.append(f"| {_cell(r.claim)} | {_cell(r.source)} | {_cell(r.paper_says)} | {_cell(r.ours)} | "
                       f"**{r.verdict}** | {page} |")
        out.append("")
    return "\n".join(out)


def counts(board: pd.DataFrame) -> pd.DataFrame:
    """Verdict counts per registry page (rows) and verdict (columns), with a total row."""
    t = board.groupby(["registry", "verdict"]).size().unstack(fill_value=0)
    t.loc["total"] = t.sum()
    return t.reindex(columns=list(claims.VERDICTS), fill_value=0)


def readme_markdown(scale: str = "book") -> str:
    """The README's "What reproduces" section, generated from the registries and result files."""
    board = scoreboard(scale)
    lines = ["## What reproduces", "",
             "Generated by `python -m metagrad.scoreboard` from `claims/*.yaml` and `results/` "
             "(the book's scoreboard page shows the same table with every claim). Verdicts: paired "
             "one-sided t-tests over seeds, Holm-corrected per page, α = 0.05, each with its "
             "registered smallest effect of interest (`claims/README.md`).", "",
             "| paper | page | " + " | ".join(claims.VERDICTS) + " |",
             "|---|---|" + "---|" * len(claims.VERDICTS)]
    for (paper, page), g in board.groupby(["paper", "registry"], sort=True):
        c = g.verdict.value_counts()
        lines.append(f"| {paper} | {page} | "
                     + " | ".join(str(int(c.get(v, 0))) for v in claims.VERDICTS) + " |")
    lines += ["", "Reproduced:", ""]
    lines += [f"* {r.claim} ({r.page or r.paper}; {r.source})" for r in board.itertuples()
              if r.verdict == "reproduced" and r.source != "theory"]
    lines += ["", "Contradicted (significant in the opposite direction):", ""]
    lines += [f"* {r.claim} ({r.page}; {r.ours})" for r in board.itertuples() if r.verdict == "contradicted"]
    for verdict in ("baseline diverged", "not testable at this scale"):
        lines += ["", f"{verdict[0].upper()}{verdict[1:]}:", ""]
        lines += [f"* {r.claim} ({r.page})" for r in board.itertuples() if r.verdict == verdict] or ["* none"]
    not_run = board[board.verdict == "not run"]
    lines += ["", f"Not run ({len(not_run)}): settings, data or seeds this scale does not have — the "
              "scoreboard page gives the reason of each (pages with fewer seeds than registered show "
              "provisional statistics)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_markdown())
