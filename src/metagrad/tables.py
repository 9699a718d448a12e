"""Tables for the book's pages: one helper, one look.

``table(df, columns={...})`` returns a :class:`Table`, which Jupyter shows as a small HTML table
(and as plain text elsewhere). House rules, applied here so that no page has to remember them:

* no index column: every column shown is a named column of ``df``;
* human headers, units in them (``columns`` maps each shown column to its header, in order);
* one number format per column, with ``digits`` significant digits: fixed decimals when the
  column spans a few orders of magnitude at most, scientific notation otherwise;
* ``mean ± CI`` pairs formatted alike (``ci={"mean column": "half-width column"}``): decimals
  from the half-widths (two significant digits), a † where the interval is wider than the mean;
* a missing value is shown as "–" and the table says why (``missing=``);
* at most ``max_rows`` rows per table: longer tables are split by ``facet=`` into small tables
  laid side by side, and what is still too long into consecutive blocks.

``settings(mapping)`` shows a mapping (a configuration, a parameter set) as a compact table of
name/value pairs instead of a raw ``dict`` / dataclass repr.
"""
from __future__ import annotations

import dataclasses
import html
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["Table", "table", "settings", "format_column", "format_mean_ci", "DASH"]

DASH = "–"
WIDE_CI = "†"
WIDE_CI_NOTE = (f"{WIDE_CI} the 95 % confidence interval is wider than the mean: the sign (or "
                "size) of this value is not resolved at this scale.")


_PM = re.compile(r"^\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*±\s*([\d.]+(?:e[-+]?\d+)?)")


def _wide_text(v) -> bool:
    """True for a preformatted ``"mean ± half"`` string whose half-width exceeds |mean|."""
    m = _PM.match(v) if isinstance(v, str) else None
    return bool(m) and float(m.group(2)) > abs(float(m.group(1)))


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _mag(x: float) -> int:
    return int(math.floor(math.log10(abs(x))))


def _use_sci(values: Sequence[float]) -> bool:
    nonzero = [abs(v) for v in values if v != 0 and math.isfinite(v)]
    if not nonzero:
        return False
    lo, hi = _mag(min(nonzero)), _mag(max(nonzero))
    return hi >= 6 or lo <= -4 or hi - lo > 3


def format_column(values: Sequence, digits: int = 3) -> list[str]:
    """Format one column of numbers alike: ``digits`` significant digits of the largest value
    (and at least two of the smallest), the same decimals in every row (or scientific notation for every row when the column spans
    more than three orders of magnitude or holds very large / very small numbers). Integers stay
    integers; booleans become ✓ / ✗; missing values become "–"."""
    vals = list(values)
    present = [v for v in vals if not _is_missing(v)]
    if all(isinstance(v, (bool, np.bool_)) for v in present) and present:
        return [DASH if _is_missing(v) else ("✓" if v else "✗") for v in vals]
    if not all(isinstance(v, (int, float, np.integer, np.floating)) for v in present):
        return [DASH if _is_missing(v) else _plain(v, digits) for v in vals]
    floats = [float(v) for v in present]
    finite = [v for v in floats if math.isfinite(v)]
    if all(float(v).is_integer() for v in finite) and all(abs(v) < 1e6 for v in finite):
        return [DASH if _is_missing(v) else (f"{int(v):d}" if math.isfinite(float(v)) else str(v))
                for v in vals]
    if _use_sci(finite):
        return [DASH if _is_missing(v) else f"{float(v):.{digits - 1}e}" for v in vals]
    nonzero = [abs(v) for v in finite if v != 0]
    # the largest value keeps `digits` significant digits, the smallest at least two
    decimals = max(0, digits - 1 - _mag(max(nonzero)), 1 - _mag(min(nonzero))) if nonzero else 0
    return [DASH if _is_missing(v) else f"{float(v):.{decimals}f}" for v in vals]


def format_mean_ci(means: Sequence, halves: Sequence) -> tuple[list[str], bool]:
    """``mean ± half`` for a column, the half-width with two significant digits and the mean
    to the same decimals: one number of decimals for the whole column when its half-widths are
    within three orders of magnitude of each other, else per row (the same two significant
    digits of the CI in every row). Returns the strings and whether any interval is wider than
    its mean (marked †)."""
    pairs = [(float(m), float(h)) for m, h in zip(means, halves)]
    good = [(m, h) for m, h in pairs if math.isfinite(m) and math.isfinite(h)]
    pos = [h for _, h in good if h > 0]
    shared = None
    if pos and _mag(max(pos)) - _mag(min(pos)) <= 3:
        shared = max(0, 1 - _mag(sorted(pos)[len(pos) // 2]))
    wide, out = False, []
    for m, h in pairs:
        if not math.isfinite(m):
            out.append(DASH)
            continue
        if not math.isfinite(h) or h == 0:
            d = shared if shared is not None else (max(0, 2 - _mag(m)) if m else 0)
            out.append(f"{m:.{min(d, 6)}f}" + ("" if not math.isfinite(h) else f" ± {0:.{min(d, 6)}f}"))
            continue
        d = shared if shared is not None else max(0, 1 - _mag(h))
        if d > 6 or abs(m) >= 1e6:
            text = f"{m:.1e} ± {h:.1e}"
        else:
            text = f"{m:.{d}f} ± {h:.{d}f}"
        if h > abs(m):
            text += f" {WIDE_CI}"
            wide = True
        out.append(text)
    return out, wide


def _plain(v, digits: int) -> str:
    """One value of a column of mixed types: floats with ``digits`` significant digits."""
    if isinstance(v, (bool, np.bool_)):
        return "✓" if v else "✗"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_plain(x, digits) for x in v) + ")"
    return str(v)


class Table:
    """A formatted table (strings only), possibly in several facets, with caption and notes."""

    def __init__(self, parts: list[tuple[str | None, pd.DataFrame]], *, caption: str | None = None,
                 notes: Sequence[str] = (), numeric: Sequence[str] = ()):
        self.parts, self.caption, self.notes = parts, caption, list(notes)
        self.numeric = set(numeric)

    @property
    def frame(self) -> pd.DataFrame:
        """All facets in one DataFrame of strings (for tests and for text output)."""
        return pd.concat([p for _, p in self.parts], ignore_index=True)

    def _part_html(self, title: str | None, df: pd.DataFrame) -> str:
        esc = html.escape
        cls = {c: ' class="num"' if c in self.numeric else "" for c in df.columns}
        head = "".join(f"<th{cls[c]}>{esc(str(c))}</th>" for c in df.columns)
        rows = []
        for row in df.itertuples(index=False):
            cells = "".join(f"<td{cls[c]}>{esc(str(v))}</td>" for c, v in zip(df.columns, row))
            rows.append(f"<tr>{cells}</tr>")
        title_html = f'<p class="mg-part-title">{esc(title)}</p>' if title else ""
        return (f'<div class="mg-part">{title_html}<table class="mg-table">'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")

    def _repr_html_(self) -> str:
        esc = html.escape
        cap = f'<p class="mg-caption">{esc(self.caption)}</p>' if self.caption else ""
        parts = "".join(self._part_html(t, d) for t, d in self.parts)
        notes = "".join(f'<p class="mg-note">{esc(n)}</p>' for n in self.notes)
        return f'<div class="mg-tables">{cap}<div class="mg-facets">{parts}</div>{notes}</div>'

    def __repr__(self) -> str:
        out = [self.caption] if self.caption else []
        for title, df in self.parts:
            if title:
                out.append(title)
            # unpadded rows: the text does not change width with measured values (nbval)
            out += [" | ".join(map(str, df.columns))]
            out += [" | ".join(map(str, row)) for row in df.itertuples(index=False)]
        return "\n".join(out + self.notes)


def table(df: pd.DataFrame, columns: Mapping[str, str] | None = None, *, digits: int | Mapping = 3,
          ci: Mapping[str, str] | None = None, caption: str | None = None,
          missing: str | None = None, facet: str | Sequence[str] | None = None, max_rows: int | None = 12,
          notes: Sequence[str] = ()) -> Table:
    """The page's view of ``df``.

    ``columns`` maps each column to show to its header (with units), in display order; without
    it every column is shown, underscores turned into spaces. ``digits`` (significant digits)
    is one number or a mapping column -> digits. ``ci`` maps a mean column to the column of its
    CI half-width: the two are shown as one ``mean ± half`` column. ``missing`` says why a value
    can be absent. ``facet`` (a column or a list of columns) splits the rows by their values
    into separate small tables; a table still longer than ``max_rows`` (``None``: no limit) is
    split into consecutive blocks of at most that many rows.
    """
    if isinstance(df, pd.Series):
        df = df.to_frame()
    if any(n is not None for n in df.index.names):
        df = df.reset_index()  # a meaningful index (id, (arm, seed), ...) becomes columns
    ci = dict(ci or {})
    facets = [facet] if isinstance(facet, str) else list(facet or [])
    if columns is None:
        columns = {c: str(c).replace("_", " ") or "setting" for c in df.columns
                   if c not in ci.values() and c not in facets}
    unknown = [c for c in [*columns, *ci, *ci.values(), *facets] if c not in df.columns]
    if unknown:
        raise KeyError(f"table: no column(s) {unknown} in the data; it has {list(df.columns)}")
    out = pd.DataFrame(index=range(len(df)))
    numeric, wide, any_missing = [], False, False
    for col, header in columns.items():
        d = digits.get(col, 3) if isinstance(digits, Mapping) else digits
        values = list(df[col])
        if col in ci:
            texts, w = format_mean_ci(values, list(df[ci[col]]))
            wide |= w
        else:
            texts = format_column(values, d)
            flags = [_wide_text(t) for t in texts]  # preformatted "mean ± CI" strings
            if any(flags):
                wide = True
                texts = [f"{t} {WIDE_CI}" if f else t for t, f in zip(texts, flags)]
        any_missing |= any(_is_missing(v) for v in values)
        if any(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
               for v in values):
            numeric.append(header)
        out[header] = texts
    all_notes = list(notes)
    if wide:
        all_notes.append(WIDE_CI_NOTE)
    if any_missing:
        all_notes.append(f"{DASH} {missing}" if missing else
                         f"{DASH} no value: not applicable to this row.")
    if facets:
        keys = list(dict.fromkeys(zip(*(df[f] for f in facets))))
        parts = []
        for key in keys:
            mask = np.logical_and.reduce([(df[f] == k).to_numpy() for f, k in zip(facets, key)])
            title = ", ".join(f"{str(f).replace('_', ' ')}: {_plain(k, 4)}" for f, k in zip(facets, key))
            parts.append((title, out[mask].reset_index(drop=True)))
    else:
        parts = [(None, out)]
    if max_rows is not None:  # split what is still too long into consecutive blocks
        split = []
        for title, part in parts:
            n = len(part)
            k = math.ceil(n / max_rows) if n else 1
            size = math.ceil(n / k) if n else 0
            for j in range(k):
                block = part.iloc[j * size:(j + 1) * size].reset_index(drop=True)
                label = f"rows {j * size + 1}–{min(n, (j + 1) * size)} of {n}" if k > 1 else None
                split.append((", ".join(x for x in (title, label) if x) or None, block))
        parts = split
    return Table(parts, caption=caption, notes=all_notes, numeric=numeric)


def _compact(value, digits: int = 4) -> str:
    """A short human form of a parameter value (no brackets or quotes where avoidable)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        inner = [f"{k}=({_compact(v, digits)})" if isinstance(v, Mapping) else f"{k}={_compact(v, digits)}"
                 for k, v in value.items()]
        return ", ".join(inner) or "(none)"
    if isinstance(value, (list, tuple)):
        items = [_compact(v, digits) for v in value]
        if len(items) > 8:
            items = items[:3] + ["…"] + items[-2:] + [f"({len(value)} values)"]
        return ", ".join(items) if items else "(none)"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def settings(mapping, *, caption: str | None = None, pairs_per_row: int = 2,
             digits: int = 4) -> Table:
    """A mapping (or a dataclass instance) as a compact table of name/value pairs,
    ``pairs_per_row`` pairs side by side."""
    if dataclasses.is_dataclass(mapping) and not isinstance(mapping, type):
        mapping = {f.name: getattr(mapping, f.name) for f in dataclasses.fields(mapping)}
    if isinstance(mapping, pd.Series):
        mapping = mapping.to_dict()
    items = [(str(k), _compact(v, digits)) for k, v in dict(mapping).items()]
    n_rows = math.ceil(len(items) / pairs_per_row) if items else 0
    cols: dict[str, list[str]] = {}
    for j in range(pairs_per_row):
        chunk = items[j * n_rows:(j + 1) * n_rows]
        if not chunk and j:
            break
        chunk += [("", "")] * (n_rows - len(chunk))
        pad = "\u2009" * j  # distinct header names for the repeated pair
        cols[f"setting{pad}"] = [k for k, _ in chunk]
        cols[f"value{pad}"] = [v for _, v in chunk]
    return Table([(None, pd.DataFrame(cols))], caption=caption)
