"""House style of the book's pages: metagrad.tables, metagrad.figures, scripts/page_style.py and
the figure check of scripts/check_style.py (the browser part runs in scripts/check_book.py)."""
import math
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from metagrad.tables import DASH, WIDE_CI, format_column, format_mean_ci, settings, table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def test_table_has_no_index_and_human_headers():
    df = pd.DataFrame({"method": ["a", "b"], "peak_MiB": [0.44, 12.5]})
    t = table(df, {"method": "method", "peak_MiB": "peak memory (MiB)"})
    html = t._repr_html_()
    assert "<th>" not in html.split("<tbody>")[1]  # no row labels in the body
    assert list(t.frame.columns) == ["method", "peak memory (MiB)"]
    assert "peak_MiB" not in html


def test_column_format_is_consistent():
    # one number of decimals per column; the largest keeps 3 digits, the smallest at least 2
    assert format_column([0.44, 12.5], 3) == ["0.44", "12.50"]
    # many orders of magnitude: scientific notation for every row
    assert format_column([8.99e-11, 1.0], 3) == ["8.99e-11", "1.00e+00"]
    assert format_column([1, 2, 3]) == ["1", "2", "3"]
    assert format_column([True, False]) == ["✓", "✗"]
    assert format_column([1.5, float("nan")]) == ["1.50", DASH]
    assert format_column(["ok", 0.123456, (32, 0)], 3) == ["ok", "0.123", "(32, 0)"]


def test_mean_ci_format_and_wide_flag():
    texts, wide = format_mean_ci([70.46, 51.2], [5.47, 0.61])
    assert texts == ["70.5 ± 5.5", "51.2 ± 0.6"] and not wide
    texts, wide = format_mean_ci([744.0, 10.0], [1075.0, 3.0])
    assert wide and texts[0].endswith(WIDE_CI) and not texts[1].endswith(WIDE_CI)
    t = table(pd.DataFrame({"m": [744.0], "h": [1075.0]}), {"m": "loss"}, ci={"m": "h"})
    assert any("wider than the mean" in n for n in t.notes)


def test_missing_values_are_explained():
    df = pd.DataFrame({"a": [1.0, np.nan]})
    t = table(df, {"a": "a (s)"}, missing="not measured at this scale.")
    assert t.frame["a (s)"].tolist()[1] == DASH
    assert any("not measured" in n for n in t.notes)
    assert "NaN" not in repr(t) and "nan" not in t._repr_html_()


def test_long_tables_are_faceted_or_split():
    df = pd.DataFrame({"g": ["x"] * 10 + ["y"] * 10, "v": range(20)})
    t = table(df, {"v": "v"}, facet="g")
    assert [len(p) for _, p in t.parts] == [10, 10]
    assert [title for title, _ in t.parts] == ["g: x", "g: y"]
    t = table(pd.DataFrame({"v": range(30)}), {"v": "v"}, max_rows=12)
    assert all(len(p) <= 12 for _, p in t.parts) and sum(len(p) for _, p in t.parts) == 30
    with pytest.raises(KeyError, match="no column"):
        table(df, {"nope": "x"})


def test_settings_is_compact():
    t = settings({"P": 2, "Ts": tuple(range(20)), "problems": {"q": {"P": 8}}}, pairs_per_row=2)
    text = repr(t)
    assert "{" not in text and "(20 values)" in text and len(t.frame) == 2


def test_figures_record_their_smallest_text(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from metagrad.figures import MAX_WIDTH_IN, MIN_FONT_PT, legend_outside, min_font_pt, png_bytes, subplots
    from check_style import image_problems, png_min_font_px

    fig, axes = subplots(4, panel=(4, 3))  # asks for 16 in: capped
    assert fig.get_size_inches()[0] <= MAX_WIDTH_IN
    for ax in axes[0]:
        ax.plot([1, 2], [1, 2], label="line")
        ax.set(xlabel="x (s)", ylabel="y (MiB)")
    legend_outside(fig)
    assert min_font_pt(fig) >= MIN_FONT_PT
    path = tmp_path / "_images" / "f.png"
    path.parent.mkdir()
    path.write_bytes(png_bytes(fig))
    px = png_min_font_px(path)
    assert math.isclose(px, min_font_pt(fig) * 100 / 72, rel_tol=1e-3)
    width = Image.open(path).size[0]
    ok = {"src": "http://127.0.0.1:1/_images/f.png", "natural": width, "rendered": width}
    assert image_problems([ok], tmp_path) == []
    shrunk = dict(ok, rendered=width * 0.6)  # the browser shrinks it: text below 9 pt
    assert "pt < 9 pt" in image_problems([shrunk], tmp_path)[0]
    import matplotlib.pyplot as plt

    plain = tmp_path / "_images" / "plain.png"
    f2 = plt.figure()
    f2.savefig(plain)
    assert "no text size recorded" in image_problems([dict(ok, src="/_images/plain.png")], tmp_path)[0]
    plt.close("all")


def test_page_style_hides_plumbing_and_tabulates_parameters():
    from page_style import MARK, style_notebook

    v4 = nbformat.v4
    params = v4.new_code_cell("P = 2\neta = 0.3\nTs = [1, 2, 3]", metadata={"tags": ["parameters"]})
    injected = v4.new_code_cell("P = 4\n", metadata={"tags": ["injected-parameters"]})
    imports = v4.new_code_cell("import torch\ntorch.set_num_threads(1)")
    work = v4.new_code_cell("res = 1 + 1")
    glued = v4.new_code_cell("glue('x', 1, display=False)")
    glued.outputs = [v4.new_output("display_data", data={"application/papermill.record/text/plain": "1"})]
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# t"), params, injected, imports, work, glued],
                         metadata={"metagrad_build": {"scale": "smoke", "params_file": "params/t.smoke.yaml"}})
    style_notebook(nb)
    style_notebook(nb)  # idempotent
    added = [c for c in nb.cells if MARK in c.metadata]
    assert len(added) == 1 and nb.cells.index(added[0]) == 1
    md = added[0].source
    assert "`P` \\*" in md and "`4`" in md and "`eta`" in md and "`0.3`" in md and "smoke" in md
    tags = {c.source: c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"}
    assert "remove-cell" in tags[params.source] and "remove-cell" in tags[injected.source]
    assert "remove-cell" in tags[glued.source]
    assert "hide-input" in tags[imports.source]
    assert tags[work.source] == []
    nbformat.validate(nb)


def test_meaningful_index_becomes_columns():
    df = pd.DataFrame({"verdict": ["reproduced", "not run"]}, index=pd.Index(["c1", "c2"], name="id"))
    t = table(df)
    assert list(t.frame.columns) == ["id", "verdict"] and t.frame["id"].tolist() == ["c1", "c2"]
