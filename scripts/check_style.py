"""House-style checks of a rendered page, run by scripts/check_book.py in the same browser.

A page fails when a reader would see

* a table with a default 0…n index (pandas' row labels: a first column of ``th`` cells, or of
  cells under an empty header, reading 0, 1, …, n−1);
* a line wider than the page: a code or output block, an output table or a display equation
  whose content is wider than its box (it would be cut or need a scroll bar);
* a figure whose smallest text renders below ``MIN_TEXT_PT`` points: the PNG written by
  ``metagrad.figures`` records its smallest text in image pixels (text chunk
  ``metagrad:min_font_px``); times the rendered / natural width of the image, in CSS pixels
  (1 pt = 4/3 CSS px). A figure without that record was not drawn in the house style and fails;
* a raw ``dict`` / ``list`` / ``tuple`` / dataclass repr longer than ``MAX_REPR_LINES`` lines in
  an output.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

MIN_TEXT_PT = 9.0
MAX_REPR_LINES = 4
PNG_KEY = "metagrad:min_font_px"  # written by metagrad.figures.png_bytes

STYLE_PROBE = r"""
const main = document.querySelector('main') || document.body;
const clip = (s) => (s || '').replace(/\s+/g, ' ').trim().slice(0, 100);
const out = {indexTables: [], overflows: [], reprs: [], images: []};
main.querySelectorAll('table').forEach((t) => {
  const rows = Array.from(t.querySelectorAll('tbody tr'));
  if (rows.length < 2) return;
  const first = rows.map((r) => r.cells[0]).filter((c) => c);
  const head = t.querySelector('thead tr');
  const emptyHead = head && head.cells[0] && head.cells[0].textContent.trim() === '';
  const isTh = first.every((c) => c.tagName === 'TH');
  const seq = first.every((c, i) => c.textContent.trim() === String(i));
  if (seq && (isTh || emptyHead)) out.indexTables.push(clip(t.textContent));
});
const wide = (el, what) => {
  if (el.scrollWidth > el.clientWidth + 2 && el.clientWidth > 0)
    out.overflows.push(`${what} ${el.scrollWidth}px in ${el.clientWidth}px: ${clip(el.textContent)}`);
};
main.querySelectorAll('div.cell_output pre, div.cell_input pre').forEach((e) => wide(e, 'code/output line'));
main.querySelectorAll('div.cell_output table').forEach((t) => {
  const box = t.closest('div.cell_output');
  if (t.getBoundingClientRect().width > box.getBoundingClientRect().width + 2)
    out.overflows.push(`table ${Math.round(t.getBoundingClientRect().width)}px in ` +
      `${Math.round(box.getBoundingClientRect().width)}px: ${clip(t.textContent)}`);
});
main.querySelectorAll('mjx-container[display="true"]').forEach((m) => wide(m, 'equation'));
main.querySelectorAll('div.math').forEach((m) => wide(m, 'equation'));
main.querySelectorAll('div.cell_output pre').forEach((p) => {
  const lines = p.textContent.split('\n').filter((l) => l.trim());
  if (lines.length > MAX_LINES && /^\s*([\[{(]|[A-Za-z_][\w.]*\()/.test(lines[0]))
    out.reprs.push(`${lines.length} lines: ${clip(lines.slice(0, 3).join(' '))}`);
});
main.querySelectorAll('div.cell_output img').forEach((img) => {
  out.images.push({src: img.currentSrc || img.src, natural: img.naturalWidth,
                   rendered: img.getBoundingClientRect().width});
});
return out;
""".replace("MAX_LINES", str(MAX_REPR_LINES))


def png_min_font_px(path: Path) -> float | None:
    """The smallest text (image pixels) recorded by metagrad.figures, or None."""
    from PIL import Image

    with Image.open(path) as im:
        raw = getattr(im, "text", {}).get(PNG_KEY)
    if raw is None:
        return None
    value = json.loads(raw)
    return float("inf") if value is None else float(value)


def image_problems(images: list[dict], html_dir: Path) -> list[str]:
    problems = []
    for img in images:
        name = unquote(urlsplit(img["src"]).path).lstrip("/")
        path = html_dir / name
        if not path.is_file() or path.suffix.lower() != ".png":
            continue  # other checks report images that did not load
        min_px = png_min_font_px(path)
        if min_px is None:
            problems.append(f"figure {name}: no text size recorded (not drawn with "
                            "metagrad.figures.subplots in a kernel that used the house style)")
            continue
        if not img["natural"]:
            continue
        pt = min_px * img["rendered"] / img["natural"] * 0.75
        if pt < MIN_TEXT_PT:
            problems.append(f"figure {name}: smallest text renders at {pt:.1f} pt < {MIN_TEXT_PT:g} pt "
                            f"(image {img['natural']} px shown at {img['rendered']:.0f} px)")
    return problems


def style_problems(driver, html_dir: Path) -> list[str]:
    """The house-style problems of the page open in ``driver``."""
    report = driver.execute_script(STYLE_PROBE)
    problems = [f"table with a default 0…n index: {t!r}" for t in report["indexTables"]]
    problems += [f"wider than the page: {o}" for o in report["overflows"]]
    problems += [f"raw repr in an output ({r})" for r in report["reprs"]]
    problems += image_problems(report["images"], html_dir)
    return problems


def screenshot_name(page: str) -> str:
    """book/theory_cost.html -> book__theory_cost.png"""
    return re.sub(r"\.html$", "", page).replace("/", "__") + ".png"
