#!/usr/bin/env python3
"""Execute the book's notebooks with papermill, then build the HTML book strictly.

    scripts/build_book.py --scale {smoke,book,paper} [--only NAME ...] [--recompute NAME ...|all]
                          [--refresh-sources] [--no-html] [--force]

The notebooks are the `_toc.yml` entries `book/<name>` for which `notebooks/<name>.ipynb`
exists. Each one is executed by papermill (kernel `python3`, i.e. this interpreter; cwd =
repository root) with the parameters of `params/<name>.<scale>.yaml` when that file exists
(otherwise at the defaults of its `parameters` cell) into the scale's book folder. A notebook
is executed again only when the hash of its source cells, its parameters file, the library
(`src/metagrad/`) and `requirements.txt` differs from the hash stored in the metadata of
`book/<name>.ipynb`, or when its result files (`results/<name>/<scale>/`, or those of the page
it reads, `metagrad.evidence.SOURCES`) differ from what they were right after its last
execution — e.g. runs added by `scripts/*_units.py`; otherwise it is `reused` (`--force`
executes it anyway). The result files are compared after, not before, the execution because
notebooks write there. The scoreboard, which reads every page's results, follows its own
notebook, parameters and library only: rebuild it with `--only scoreboard --force`.

The HTML is then built by `jupyter-book build . -W -n --keep-going --all` (execution is off
in `_config.yml`: papermill already ran the notebooks), with MathJax served from
`book/_static/mathjax/` (the pinned npm package, installed on first use).

Where each scale goes (so that `make test`, at the smoke scale, never touches the published
book, and a `make book` after it reuses every page):

* `book` (the published book): executed notebooks in `book/<name>.ipynb`, HTML in `_build/html`;
* `smoke`, `paper`: a staging copy of the book's sources in `_build/<scale>/src/` (links to
  the hand-written pages), executed notebooks in `_build/<scale>/src/book/<name>.ipynb`,
  HTML in `_build/<scale>/_build/html`.

`--recompute NAME ...` (or `all`; `make book RECOMPUTE=...`) executes those notebooks with
`METAGRAD_RECOMPUTE_BEFORE` set to the build's start time: every result file they read that is
older than that is recomputed once (`metagrad.results.cached`), without deleting tracked files.

`--refresh-sources` re-executes `notebooks/<name>.ipynb` in place at its defaults (no
parameter injection) so that its stored outputs, which nbval compares, are current. Given
alone it stops there; with `--scale` the book is built afterwards.

Exit status: 0 on success; 1 when a notebook fails (the message names the notebook and the
cell), when the HTML build warns or fails, or when the built HTML references a remote asset.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("smoke", "book", "paper")
META_KEY = "metagrad_build"  # key of the build record in book/<name>.ipynb's metadata
HASH_VERSION = "1"  # bump to force re-execution of every notebook

# MathJax 3, served locally. Bump all three together (`npm view mathjax@3 dist.integrity`).
MATHJAX_VERSION = "3.2.2"
MATHJAX_INTEGRITY = (
    "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
)
MATHJAX_DIR = ROOT / "book" / "_static" / "mathjax"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # must match `mathjax_path` in _config.yml

# Keeps the kernel process's own log quiet (ipykernel's "running over TCP without
# encryption" warning, "KeyboardInterrupt caught" at shutdown); cell outputs are unaffected.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]

WORK_DIR = ROOT / "_build" / "papermill"  # papermill writes here; moved to the book folder on success
FAILED_DIR = ROOT / "_build" / "failed"  # executed notebooks that raised, for inspection


def source_root(scale: str) -> Path:
    """Where `jupyter-book build` reads the book of this scale from."""
    return ROOT if scale == "book" else ROOT / "_build" / scale / "src"


def book_dir(scale: str) -> Path:
    """Where the executed notebooks of this scale go."""
    return source_root(scale) / "book"


def html_dir(scale: str) -> Path:
    return ROOT / "_build" / "html" if scale == "book" else ROOT / "_build" / scale / "_build" / "html"


def stage_sources(scale: str) -> None:
    """Mirror the book's sources into _build/<scale>/src as symbolic links (the executed
    notebooks of that scale are written beside them, never into book/)."""
    if scale == "book":
        return
    root = source_root(scale)
    root.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():  # top level: configuration, and whatever a page may include
        if entry.name in ("book", "_build", ".git") or entry.name.startswith(".venv"):
            continue
        link = root / entry.name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(entry)
    stage_book = root / "book"
    stage_book.mkdir(exist_ok=True)
    for link in stage_book.iterdir():  # drop links to pages that were removed
        if link.is_symlink() and not link.exists():
            link.unlink()
    for entry in (ROOT / "book").iterdir():
        if entry.suffix == ".ipynb" or entry.name in ("_build",):
            continue
        link = stage_book / entry.name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(entry)

# A tag or attribute that makes the browser fetch a remote resource.
REMOTE_ASSET = re.compile(
    r"""<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?"""
    r"""\b(?:src|href|data)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""",
    re.IGNORECASE,
)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BuildError(Exception):
    """A failure with a message for the user (printed without a traceback)."""


def log(msg: str = "") -> None:
    print(msg, flush=True)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- environment


class _PapermillParameterNoise(logging.Filter):
    """papermill re-parses each `parameters` cell line by line to warn about unknown names, and
    cannot read a line with `=` inside a string or a multi-line literal ("Unable to parse line
    ...", then "Passed unknown parameter ..."). `load_params` already checks every name against
    the cell, parsed with ast, and refuses unknown ones: these two warnings carry nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Unable to parse line") or msg.startswith("Passed unknown parameter"))


def prepare_environment() -> None:
    """Environment every kernel inherits."""
    for name in ("papermill", "papermill.translators"):
        logging.getLogger(name).addFilter(_PapermillParameterNoise())
    if "MPLBACKEND" in os.environ:
        # With MPLBACKEND=Agg the inline backend is bypassed and no figure is stored.
        log(f"note: unsetting MPLBACKEND={os.environ['MPLBACKEND']} (figures would not be stored)")
        del os.environ["MPLBACKEND"]
    shared_data = ROOT.parent / "shared" / "data"
    if "METAGRAD_DATA" not in os.environ and shared_data.is_dir():
        os.environ["METAGRAD_DATA"] = str(shared_data.resolve())
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugpy warning


def ensure_mathjax() -> None:
    """Install the pinned MathJax npm package into book/_static/mathjax (gitignored)."""
    stamp = MATHJAX_DIR / ".version"
    if (MATHJAX_DIR / MATHJAX_ENTRY).is_file() and stamp.is_file():
        if stamp.read_text().strip() == MATHJAX_VERSION:
            return
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(
            "npm not found: it is needed once to fetch MathJax "
            f"{MATHJAX_VERSION} (install Node.js, e.g. `apt-get install -y npm`)"
        )
    log(f"installing mathjax@{MATHJAX_VERSION} (npm) into {rel(MATHJAX_DIR)}")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"],
            cwd=tmp, capture_output=True, text=True,
        )
        tarballs = list(Path(tmp).glob("mathjax-*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            raise BuildError(f"`npm pack mathjax@{MATHJAX_VERSION}` failed:\n{proc.stderr.strip()}")
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarballs[0].read_bytes()).digest()).decode()
        if digest != MATHJAX_INTEGRITY:
            raise BuildError(f"mathjax tarball integrity mismatch: {digest} != {MATHJAX_INTEGRITY}")
        staging = Path(tmp) / "staging"
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/es5/")]
            tar.extractall(staging, members=members, filter="data")
        if MATHJAX_DIR.exists():
            shutil.rmtree(MATHJAX_DIR)
        MATHJAX_DIR.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / "package" / "es5"), MATHJAX_DIR)
    stamp.write_text(MATHJAX_VERSION + "\n")


# --------------------------------------------------------------------------- notebooks


def toc_files() -> list[str]:
    """Every `file:`/`root:` entry of _toc.yml, in order, without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root") and isinstance(value, str):
                    found.append(re.sub(r"\.(md|ipynb)$", "", value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def toc_notebooks() -> list[str]:
    names = []
    for entry in toc_files():
        if entry.startswith("book/") and "/" not in entry[len("book/"):]:
            name = entry[len("book/"):]
            if (ROOT / "notebooks" / f"{name}.ipynb").is_file():
                names.append(name)
    return names


def params_file(name: str, scale: str) -> Path | None:
    path = ROOT / "params" / f"{name}.{scale}.yaml"
    return path if path.is_file() else None


def library_files() -> list[Path]:
    src = ROOT / "src" / "metagrad"
    if not src.is_dir():
        return []
    return sorted(
        p for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def build_hash(nb, params: Path | None, libs: list[Path]) -> str:
    h = hashlib.sha256(f"metagrad-book-v{HASH_VERSION}\0".encode())
    for cell in nb.cells:
        record = {
            "type": cell.cell_type,
            "source": cell.source,
            "tags": sorted(cell.get("metadata", {}).get("tags", [])),
        }
        h.update(json.dumps(record, sort_keys=True).encode() + b"\0")
    h.update(b"params\0" + (params.read_bytes() if params else b"<defaults>") + b"\0")
    for path in libs + [ROOT / "requirements.txt"]:
        if path.is_file():
            h.update(rel(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def stored_hash(path: Path, key: str = "hash") -> str | None:
    import nbformat

    if not path.is_file():
        return None
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # unreadable or truncated: execute again
        return None
    return nb.metadata.get(META_KEY, {}).get(key)


def results_digest(name: str, scale: str) -> str:
    """sha256 over the page's result files: every file below `results/<page>/<scale>/`, where
    <page> is the page whose results it reads (`metagrad.evidence.SOURCES`, else itself)."""
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from metagrad.evidence import SOURCES
    finally:
        sys.path.pop(0)
    folder = ROOT / "results" / SOURCES.get(name, name) / scale
    h = hashlib.sha256(b"results\0")
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def declared_parameters(src: Path) -> set[str]:
    """Names assigned at the top level of the cell tagged `parameters` (parsed with ast, which,
    unlike papermill's line-by-line inference, reads multi-line literals)."""
    import ast

    import nbformat

    nb = nbformat.read(src, as_version=4)
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign) else [])
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def load_params(name: str, path: Path | None, src: Path) -> dict:
    if path is None:
        return {}
    params = yaml.safe_load(path.read_text(encoding="utf8")) or {}
    if not isinstance(params, dict):
        raise BuildError(f"{rel(path)}: expected a mapping of parameter names to values")
    declared = declared_parameters(src)
    if not declared:
        raise BuildError(f"{rel(src)} has no cell tagged `parameters`, but {rel(path)} sets {sorted(params)}")
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise BuildError(
            f"{rel(path)} sets unknown parameter(s) {unknown}; "
            f"the `parameters` cell of {rel(src)} declares {sorted(declared)}"
        )
    return params


def failing_cell(nb, source_nb=None) -> tuple[int, dict] | None:
    """(index in the source notebook, cell) of the first cell whose outputs hold an error."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            index = i
            if source_nb is not None and cell.get("id"):
                ids = [c.get("id") for c in source_nb.cells]
                index = ids.index(cell.id) if cell.id in ids else i
            return index, cell
    return None


def describe_failure(label: str, nb, source_nb, exc: Exception, saved: Path | None) -> str:
    found = failing_cell(nb, source_nb) if nb is not None else None
    lines = [f"FAILED: {label}"]
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc).strip().splitlines()[-1] if str(exc).strip() else "")
    if found is not None:
        index, cell = found
        cells = source_nb.cells if source_nb is not None else nb.cells
        code_index = sum(1 for c in cells[:index] if c.cell_type == "code")
        where = f"cell {index} (0-based; code cell {code_index}"
        where += f", id {cell.id!r})" if cell.get("id") else ")"
        lines.append(f"  {where} raised {ename}: {evalue}")
        snippet = "\n".join("  | " + line for line in cell.source.splitlines()[:12])
        lines.append(snippet)
    else:
        lines.append(f"  {ename}: {evalue}")
    if saved is not None:
        lines.append(f"  the executed notebook (with the traceback) is in {rel(saved)}")
    return "\n".join(lines)


def execute_for_book(name: str, scale: str, libs: list[Path], position: str, force: bool = False,
                     recompute_before: float | None = None) -> str:
    """Execute notebooks/<name>.ipynb into the scale's book folder; returns 'executed' or 'reused'.
    ``recompute_before``: a Unix time; result files older than it are recomputed."""
    import nbformat
    import papermill

    src = ROOT / "notebooks" / f"{name}.ipynb"
    out = book_dir(scale) / f"{name}.ipynb"
    pfile = params_file(name, scale)
    source_nb = nbformat.read(src, as_version=4)
    digest = build_hash(source_nb, pfile, libs)
    what = f"params {rel(pfile)}" if pfile else "defaults"
    if (recompute_before is None and not force and stored_hash(out) == digest
            and stored_hash(out, "results") == results_digest(name, scale)):
        log(f"{position} {name:<32} scale={scale} ({what}) reused [{digest[:12]}]")
        return "reused"
    params = load_params(name, pfile, src)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    work = WORK_DIR / f"{name}.ipynb"
    action = "recomputing its results" if recompute_before is not None else "executing"
    log(f"{position} {name:<32} scale={scale} ({what}) {action} ...")
    t0 = time.perf_counter()
    if recompute_before is not None:
        os.environ["METAGRAD_RECOMPUTE_BEFORE"] = repr(recompute_before)
    try:
        papermill.execute_notebook(
            str(src), str(work),
            parameters=params,
            kernel_name="python3",  # resolves to this interpreter (sys.executable)
            cwd=str(ROOT),
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            extra_arguments=KERNEL_ARGS,
        )
    except Exception as exc:  # PapermillExecutionError, dead kernel, timeout, ...
        os.environ.pop("METAGRAD_RECOMPUTE_BEFORE", None)
        executed = nbformat.read(work, as_version=4) if work.is_file() else None
        saved = None
        if executed is not None:
            FAILED_DIR.mkdir(parents=True, exist_ok=True)
            saved = FAILED_DIR / f"{name}.{scale}.ipynb"
            shutil.move(str(work), saved)
        raise BuildError(describe_failure(f"notebooks/{name}.ipynb at scale={scale} ({what})",
                                          executed, source_nb, exc, saved)) from None
    os.environ.pop("METAGRAD_RECOMPUTE_BEFORE", None)
    wall = time.perf_counter() - t0
    nb = nbformat.read(work, as_version=4)
    add_provenance_banner(nb, name, scale)
    nb.metadata[META_KEY] = {
        "hash": digest,
        "results": results_digest(name, scale),  # as the execution left them
        "scale": scale,
        "params_file": rel(pfile) if pfile else None,
        "parameters": params,
        "wall_time_s": round(wall, 1),
    }
    nbformat.write(nb, work)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work, out)
    log(f"{position} {name:<32} executed in {wall:.1f} s -> {rel(out)}")
    return "executed"


def add_provenance_banner(nb, name: str, scale: str) -> None:
    """Put, under the page's title, when and from what its result files were made (flagged when
    the library code they used has changed since): metagrad.provenance.banner_html."""
    import nbformat

    result_dir = ROOT / "results" / name / scale
    if not result_dir.is_dir():
        return
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from metagrad.provenance import banner_html
    finally:
        sys.path.pop(0)
    html = banner_html(result_dir)
    if html:
        first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
        cell = nbformat.v4.new_markdown_cell(html)
        cell.metadata["tags"] = ["provenance-banner"]
        nb.cells.insert(first_md + 1, cell)


def refresh_source(name: str, position: str) -> None:
    """Re-execute notebooks/<name>.ipynb in place at its defaults (what nbval compares)."""
    import nbformat
    from nbclient import NotebookClient

    src = ROOT / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(src, as_version=4)
    source_nb = nbformat.read(src, as_version=4)
    log(f"{position} {name:<32} refreshing source outputs (defaults) ...")
    t0 = time.perf_counter()
    client = NotebookClient(
        nb, kernel_name="python3", timeout=None, record_timing=False,
        resources={"metadata": {"path": str(ROOT)}}, extra_arguments=KERNEL_ARGS,
    )
    try:
        client.execute()
    except Exception as exc:
        raise BuildError(describe_failure(f"notebooks/{name}.ipynb (source, defaults); left unchanged",
                                          nb, source_nb, exc, None)) from None
    nbformat.write(nb, src)
    log(f"{position} {name:<32} refreshed in {time.perf_counter() - t0:.1f} s -> {rel(src)}")


def remove_stale_outputs(names: list[str], scale: str) -> None:
    """Delete executed notebooks in the scale's book folder whose entry left the toc."""
    import nbformat

    for path in sorted(book_dir(scale).glob("*.ipynb")):
        if path.stem in names:
            continue
        try:
            generated = META_KEY in nbformat.read(path, as_version=4).metadata
        except Exception:
            generated = False
        if generated:
            path.unlink()
            log(f"removed {rel(path)}: book/{path.stem} is no longer in _toc.yml")


# --------------------------------------------------------------------------- html


def jupyter_book_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise BuildError("jupyter-book not found (run `make setup`)")


def build_html(scale: str) -> None:
    out = html_dir(scale)
    cmd = jupyter_book_cmd() + ["build", rel(source_root(scale)), "--builder", "html", "--all",
                                "--warningiserror", "--nitpick", "--keep-going"]
    if scale != "book":
        cmd += ["--path-output", rel(out.parents[1])]
    log("$ " + " ".join([Path(cmd[0]).name] + cmd[1:]))
    if out.exists():  # no page of an earlier build may survive (check_book opens all)
        shutil.rmtree(out)
    log_path = (ROOT / "_build" if scale == "book" else out.parents[1]) / "jupyter-book.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    problems = []
    with open(log_path, "w", encoding="utf8") as logf:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            plain = ANSI_ESCAPE.sub("", line)
            logf.write(plain)
            if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b:", plain):
                problems.append(plain.rstrip())
        rc = proc.wait()
    if rc != 0 or problems:
        summary = "\n".join("  " + p for p in problems) or "  (see the output above)"
        raise BuildError(
            f"HTML build failed (exit {rc}, {len(problems)} warning/error line(s); strict mode "
            f"turns every warning into a failure; full log in {rel(log_path)}):\n{summary}"
        )
    check_no_remote_assets(out)


def check_no_remote_assets(out: Path) -> None:
    """Static check: the built HTML must not load anything from another host."""
    offenders = []
    for page in sorted(out.rglob("*.html")):
        text = page.read_text(encoding="utf8", errors="replace")
        for match in REMOTE_ASSET.finditer(text):
            offenders.append(f"  {rel(page)}: {match.group(1)}")
    if offenders:
        raise BuildError("the built HTML loads remote assets (the book must work offline):\n"
                         + "\n".join(offenders[:50]))
    if not (out / "_static" / "mathjax" / MATHJAX_ENTRY).is_file():
        raise BuildError(f"MathJax is missing from {rel(out)}/_static/mathjax/")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=SCALES,
                    help="scale to execute the book's notebooks at (default: book; "
                         "with --refresh-sources alone, no book is built)")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="execute only these notebooks (the others must already be built)")
    ap.add_argument("--refresh-sources", action="store_true",
                    help="re-execute notebooks/<name>.ipynb in place at its defaults (for nbval)")
    ap.add_argument("--no-html", action="store_true", help="execute notebooks only, skip the HTML")
    ap.add_argument("--force", action="store_true",
                    help="execute even the notebooks whose hash is unchanged (e.g. after "
                         "replacing committed result files, which the hash does not cover)")
    ap.add_argument("--recompute", nargs="+", metavar="NAME",
                    help="recompute the results of these notebooks (or `all`) instead of "
                         "reusing the result files (make book RECOMPUTE=...)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    prepare_environment()
    names = toc_notebooks()
    selected = names
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise BuildError(f"--only {' '.join(unknown)}: not a notebook of the book; "
                             f"the notebooks in _toc.yml are: {', '.join(names) or '(none)'}")
        selected = [n for n in names if n in args.only]
    recompute = set()
    if args.recompute:
        wanted = [n for r in args.recompute for n in re.split(r"[,\s]+", r) if n]
        recompute = set(names) if "all" in wanted else set(wanted)
        unknown = sorted(recompute - set(names))
        if unknown:
            raise BuildError(f"RECOMPUTE / --recompute {' '.join(unknown)}: not a notebook of the book; "
                             f"use `all` or some of: {', '.join(names) or '(none)'}")

    if args.refresh_sources:
        t0 = time.perf_counter()
        for i, name in enumerate(selected, 1):
            refresh_source(name, f"[{i}/{len(selected)}]")
        log(f"sources: {len(selected)} refreshed in {time.perf_counter() - t0:.1f} s")
        if args.scale is None:
            return 0
    scale = args.scale or "book"

    libs = library_files()
    stage_sources(scale)
    counts = {"executed": 0, "reused": 0}
    t0 = time.perf_counter()
    for i, name in enumerate(selected, 1):
        counts[execute_for_book(name, scale, libs, f"[{i}/{len(selected)}]", args.force,
                                recompute_before=time.time() if name in recompute else None)] += 1
    t_nb = time.perf_counter() - t0
    log(f"notebooks: {counts['executed']} executed, {counts['reused']} reused in {t_nb:.1f} s")
    if args.only:
        import nbformat

        for name in (n for n in names if n not in selected):
            src = ROOT / "notebooks" / f"{name}.ipynb"
            digest = build_hash(nbformat.read(src, as_version=4), params_file(name, scale), libs)
            if stored_hash(book_dir(scale) / f"{name}.ipynb") != digest:
                log(f"note: {rel(book_dir(scale))}/{name}.ipynb is not current for scale={scale} (not in --only)")

    if args.no_html:
        return 0
    remove_stale_outputs(names, scale)
    missing = [n for n in names if not (book_dir(scale) / f"{n}.ipynb").is_file()]
    if missing:
        raise BuildError("not executed yet (run without --only, or with --no-html): "
                         + ", ".join(f"{rel(book_dir(scale))}/{n}.ipynb" for n in missing))
    __import__("page_style").apply(book_dir(scale) / f"{n}.ipynb" for n in names)  # house style
    ensure_mathjax()
    t0 = time.perf_counter()
    build_html(scale)
    t_html = time.perf_counter() - t0
    log(f"html: {rel(html_dir(scale))}/index.html built in {t_html:.1f} s "
        f"(total {time.perf_counter() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as err:
        print(f"\nbuild_book: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
