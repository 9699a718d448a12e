"""Which code made a result, and whether that code has changed since.

A result file's provenance (:func:`metagrad.results.provenance`) records ``code``: the
SHA-256 (12 hex digits) of every library module loaded in the process when the result was
saved — the core (problem, optimisers, unroll, estimators), the data loaders and the
experiment's own ``tasks`` modules — except the modules that only present results (report,
statistics, claims, tables). A result is **stale** when one of those files differs today.

Result files from before code hashes were recorded carry only a git commit: they are judged
by ``git diff <commit> -- src/metagrad`` (again without the presentation modules); a file made
from a modified tree (``git_dirty``) cannot be verified and is reported as such.

``python -m metagrad.provenance [results/...]`` lists every result file that is stale or
unverifiable, with the files that changed (``make stale``).
"""
from __future__ import annotations

import functools
import hashlib
import html
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["code_hashes", "check", "page_summary", "banner_html", "fallback_banner", "main"]

#: Modules that only render results: a change there never makes a result stale.
PRESENTATION = ("report", "stats", "claims", "tables", "style", "provenance", "scoreboard", "results",
                "evidence", "divergence", "figures",
                "bench", "cli")


def _src_root() -> Path:
    return Path(__file__).resolve().parent  # .../src/metagrad


def _presentation(rel: str) -> bool:
    stem = Path(rel).stem
    return any(stem == p or stem.startswith(p + "_") or stem.endswith("_" + p) for p in PRESENTATION)


@functools.lru_cache(maxsize=None)
def _file_hash(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _hash(path: Path) -> str:
    return _file_hash(str(path), path.stat().st_mtime_ns)


def code_hashes() -> dict[str, str]:
    """``{"metagrad/<module path>": sha256[:12]}`` of every non-presentation library module
    loaded in this process."""
    root = _src_root()
    out = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not f:
            continue
        p = Path(f).resolve()
        try:
            rel = p.relative_to(root.parent).as_posix()
        except ValueError:
            continue
        if p.suffix == ".py" and p.is_file() and not _presentation(rel):
            out[rel] = _hash(p)
    return dict(sorted(out.items()))


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=_src_root(), capture_output=True, text=True,
                              timeout=20, check=True).stdout
    except Exception:
        return None


#: For result files without a code record: which ``tasks`` modules (by name prefix) each result
#: folder depends on; a change in any other experiment's module does not make it stale.
LEGACY_TASKS = {"greedy_toy": ("toy",), "greedy_hypercleaning": ("hypercleaning",),
                "greedy_fewshot": ("fewshot",), "fg2u_condensation": ("condensation",),
                "fg2u_gradient_quality": ("condensation",), "fg2u_two_phase": ("condensation",),
                "fg2u_memory_time": ("memory_time", "bench_problem"), "fg2u_pde": ("pde",)}


def _relevant(rel: str, tasks: tuple[str, ...] | None) -> bool:
    """Is ``metagrad/...`` a file an experiment with these task modules depends on? Core files
    always; under ``tasks/``, the module or package whose name starts with one of ``tasks``."""
    if tasks is None or not rel.startswith("metagrad/tasks/"):
        return True
    name = rel.split("/")[2].removesuffix(".py")  # tasks/<module>.py or tasks/<package>/...
    return name.startswith(tasks)


@functools.lru_cache(maxsize=None)
def _changed_since(commit: str) -> tuple[str, ...] | None:
    """Library files (non-presentation) that differ between ``commit`` and the working tree."""
    out = _git("diff", "--name-only", commit, "--", ".")
    if out is None:
        return None
    files = []
    for line in out.splitlines():
        rel = line.split("src/", 1)[-1]
        if rel.startswith("metagrad/") and rel.endswith(".py") and not _presentation(rel):
            files.append(rel)
    return tuple(sorted(files))


def check(prov: dict, experiment: str | None = None) -> dict:
    """Staleness of one result's provenance: ``{"status": "current" | "stale" | "unverifiable",
    "changed": [files], "why": str}``. ``experiment`` (the result folder's name) narrows the
    check of a file without a code record to its own ``tasks`` modules (:data:`LEGACY_TASKS`)."""
    code = prov.get("code")
    if isinstance(code, dict) and code:
        root = _src_root().parent
        changed = []
        for rel, digest in code.items():
            p = root / rel
            if not p.is_file():
                changed.append(rel + " (removed)")
            elif _hash(p) != digest:
                changed.append(rel)
        if changed:
            return {"status": "stale", "changed": changed,
                    "why": "library code changed since: " + ", ".join(changed)}
        return {"status": "current", "changed": [], "why": "every library module it used is unchanged"}
    commit = prov.get("git_commit")
    if not commit:
        return {"status": "unverifiable", "changed": [], "why": "no code hash and no commit recorded"}
    changed = _changed_since(commit)
    if changed is not None:
        changed = [c for c in changed if _relevant(c, LEGACY_TASKS.get(experiment or ""))]
    if changed is None:
        return {"status": "unverifiable", "changed": [],
                "why": f"commit {commit[:8]} is not in this repository's history"}
    if changed:
        return {"status": "stale", "changed": list(changed),
                "why": f"made at {commit[:8]}; library code changed since: " + ", ".join(changed)}
    if prov.get("git_dirty"):
        return {"status": "unverifiable", "changed": [],
                "why": f"made at {commit[:8]} from a tree with uncommitted library changes"}
    return {"status": "current", "changed": [], "why": f"made at {commit[:8]}; library unchanged since"}


def _experiment(f: Path) -> str | None:
    """``results/<experiment>/<scale>/<file>.json`` → ``<experiment>``."""
    parts = f.resolve().parts
    return parts[-3] if len(parts) >= 3 else None


def _iter_results(paths):
    for p in paths:
        p = Path(p)
        files = sorted(p.rglob("*.json")) if p.is_dir() else [p]
        for f in files:
            try:
                payload = json.loads(f.read_text(encoding="utf8"))
                prov = payload["provenance"]
            except Exception:
                continue  # not a result file (e.g. benchmark output)
            if isinstance(prov, dict):
                yield f, prov


def page_summary(result_dir: str | Path) -> dict:
    """What the result files of one page were made from: counts, dates, commits, total
    compute time, and how many are current / stale / unverifiable (with the changed files)."""
    from .results import repo_root
    d = Path(result_dir)
    if not d.is_absolute():
        d = repo_root() / d
    rows = [(f, prov, check(prov, _experiment(f))) for f, prov in _iter_results([d])]
    status = Counter(c["status"] for _, _, c in rows)
    changed = Counter(ch for _, _, c in rows for ch in c["changed"])
    dates = sorted(p.get("date", "")[:10] for _, p, _ in rows if p.get("date"))
    commits = Counter((p.get("git_commit") or "?")[:8] for _, p, _ in rows)
    wall = sum(float(p.get("wall_time_s") or 0) for _, p, _ in rows)
    return {"dir": str(d), "n": len(rows), "status": dict(status), "changed": dict(changed),
            "dates": (dates[0], dates[-1]) if dates else None, "commits": dict(commits),
            "wall_time_s": wall}


def banner_html(result_dir: str | Path) -> str:
    """HTML for the top of a page: when and from what its results were made, flagged when the
    library code they used has changed since (empty when the folder holds no result file)."""
    s = page_summary(result_dir)
    if not s["n"]:
        return ""
    when = s["dates"][0] if s["dates"][0] == s["dates"][1] else f"{s['dates'][0]} to {s['dates'][1]}"
    commits = ", ".join(f"<code>{c}</code> ({n})" for c, n in sorted(s["commits"].items(), key=lambda kv: -kv[1]))
    text = (f"{s['n']} result files made {when}, at commits {commits}; "
            f"{s['wall_time_s'] / 60:.1f} CPU-minutes of compute in all. ")
    stale, unver = s["status"].get("stale", 0), s["status"].get("unverifiable", 0)
    if not (stale or unver):
        return _admonition("note", "Provenance of these results",
                           text + "Every one was made with the library code of this build.")
    files = ", ".join(f"<code>{html.escape(f)}</code>" for f in sorted(s["changed"])) or "–"
    text += (f"<b>{stale} stale</b> (library code they used has changed since: {files})"
             + (f" and <b>{unver} unverifiable</b> (made from a modified tree)" if unver else "")
             + "; recompute them with <code>make book RECOMPUTE=&lt;page&gt;</code>, list them with "
               "<code>make stale</code>.")
    return _admonition("caution", "Provenance of these results", text)


def fallback_banner(sentence: str | None):
    """A visible warning that a page ran on fallback data (``None``: nothing is shown)."""
    from IPython.display import HTML
    return HTML(_admonition("warning", "Fallback data", html.escape(sentence)) if sentence else "")


def _admonition(kind: str, title: str, body: str) -> str:
    return (f'<div class="admonition {kind}"><p class="admonition-title">{title}</p>'
            f"<p>{body}</p></div>")


def main(argv: list[str] | None = None) -> int:
    import argparse
    from .results import repo_root
    ap = argparse.ArgumentParser(prog="python -m metagrad.provenance",
                                 description="List result files whose library code has changed.")
    ap.add_argument("paths", nargs="*", help="result folders or files (default: results/)")
    ap.add_argument("--all", action="store_true", help="also list current results")
    args = ap.parse_args(argv)
    paths = args.paths or [repo_root() / "results"]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    counts = Counter()
    for f, prov in _iter_results(paths):
        c = check(prov, _experiment(f))
        counts[c["status"]] += 1
        if args.all or c["status"] != "current":
            try:
                shown = f.resolve().relative_to(repo_root())
            except ValueError:
                shown = f
            print(f"{c['status']:<13} {shown}: {c['why']}")
    print(f"{sum(counts.values())} result files: " +
          ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if counts else "no result files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
