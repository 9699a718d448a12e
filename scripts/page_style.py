#!/usr/bin/env python3
"""House style of the book's pages, applied to the executed notebooks under book/.

    scripts/page_style.py book/<name>.ipynb ...      (scripts/build_book.py calls apply())

Run on each executed notebook before the Jupyter Book build; idempotent. It

* removes the plumbing from the page (Jupyter Book cell tags): the ``parameters`` cell and
  papermill's ``injected-parameters`` cell (``remove-cell``), cells that only ``glue(...)``
  numbers into the text (``remove-cell``, or ``remove-input`` when they also show something),
  and collapses cells that only import modules or set up the kernel (``hide-input``);
* shows, in place of the parameter cells, the parameters in use as one compact table (values
  set by ``params/<name>.<scale>.yaml`` are marked *), computed from the two cells' sources.

Tags already present in a source notebook are kept.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "metagrad_page_style"  # metadata key of the cells this module adds
VISIBLE_MIME = ("text/plain", "text/html", "text/markdown", "image/png", "image/jpeg",
                "image/svg+xml", "text/latex")
SETUP_CALLS = {"set_num_threads", "filterwarnings", "simplefilter", "manual_seed", "seed",
               "set_printoptions", "set_option", "use_style"}


def _tags(cell) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _add_tag(cell, tag: str) -> None:
    tags = _tags(cell)
    if tag not in tags:
        tags.append(tag)


def assigned_values(source: str) -> dict:
    """Top-level ``name = <literal>`` assignments of a cell, evaluated with ast.literal_eval
    (a value that is not a literal is shown as its source text)."""
    values = {}
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return values
    for node in body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError):
                value = ast.get_source_segment(source, node.value)
            for t in targets:
                if isinstance(t, ast.Name):
                    values[t.id] = value
    return values


def _compact(value) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from metagrad.tables import _compact as compact

    return compact(value)


def parameters_markdown(defaults: dict, injected: dict, meta: dict) -> str:
    """The parameters in use as one markdown table of name/value pairs."""
    merged = {**defaults, **injected}
    items = []
    for name, value in merged.items():
        text = _compact(value).replace("|", "¦").replace("`", "'")
        star = " \\*" if name in injected and injected[name] != defaults.get(name, object()) else ""
        items.append((f"`{name}`{star}", f"`{text}`" if text else "–"))
    longest = max((len(v) for _, v in items), default=0)
    per_row = 3 if longest <= 24 else 2 if longest <= 70 else 1
    n_rows = -(-len(items) // per_row)
    columns = [items[j * n_rows:(j + 1) * n_rows] for j in range(per_row)]
    columns = [c + [("", "")] * (n_rows - len(c)) for c in columns if c]
    header = "| " + " | ".join(["parameter | value"] * len(columns)) + " |"
    rule = "|" + "---|---|" * len(columns)
    rows = ["| " + " | ".join(f"{k} | {v}" for k, v in (c[i] for c in columns)) + " |"
            for i in range(n_rows)]
    scale = meta.get("scale")
    pfile = meta.get("params_file")
    where = (f"scale **{scale}**, " if scale else "") + (
        f"values marked \\* from `{pfile}`, the others are the notebook's defaults" if injected
        else "the notebook's defaults")
    return "\n".join([":::{container} mg-params", f"**Parameters in use** ({where}):", "",
                      header, rule, *rows, ":::"])


def _visible(cell) -> bool:
    for out in cell.get("outputs", []):
        if out.get("output_type") in ("stream", "error"):
            return True
        if any(k in VISIBLE_MIME for k in out.get("data", {})):
            return True
    return False


def _is_setup_only(source: str) -> bool:
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    if not body:
        return False
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr in SETUP_CALLS):
            continue
        return False
    return True


def style_notebook(nb) -> None:
    """Tag the plumbing cells of ``nb`` and insert the parameter table (in place)."""
    import nbformat

    nb.cells = [c for c in nb.cells if MARK not in c.get("metadata", {})]
    defaults, injected, first = {}, {}, None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = _tags(cell)
        if "parameters" in tags or "injected-parameters" in tags:
            (defaults if "parameters" in tags else injected).update(assigned_values(cell.source))
            first = i if first is None else first
            _add_tag(cell, "remove-cell")
        elif "glue(" in cell.source and "remove-input" not in tags:
            _add_tag(cell, "remove-input" if _visible(cell) else "remove-cell")
        elif not _visible(cell) and _is_setup_only(cell.source):
            _add_tag(cell, "hide-input")
    if first is not None and (defaults or injected):
        meta = nb.metadata.get("metagrad_build", {})
        md = nbformat.v4.new_markdown_cell(parameters_markdown(defaults, injected, meta))
        md.metadata[MARK] = "parameters"
        md.pop("id", None)
        nb.cells.insert(first, md)
    for i, cell in enumerate(nb.cells):  # ids unique and valid after the insertion
        if MARK in cell.metadata:
            cell["id"] = f"mg-page-style-{i}"


def apply(paths) -> None:
    import nbformat

    for path in paths:
        nb = nbformat.read(path, as_version=4)
        style_notebook(nb)
        nbformat.write(nb, path)


if __name__ == "__main__":
    apply([Path(p) for p in sys.argv[1:]])
