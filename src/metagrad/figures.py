"""Figures for the book's pages: one style, legible at the page's width.

Every plotting function of the library makes its figure with :func:`subplots`, which

* applies the house style once (seaborn ``whitegrid``, the colour-blind palette, text of at
  least :data:`MIN_FONT_PT` points);
* caps the figure's width at :data:`MAX_WIDTH_IN` inches, the width of the book's content
  column at :data:`DPI` dots per inch, so that a figure is never shrunk by the browser and its
  text stays at the size it was drawn (more panels make narrower panels, not smaller text);
* uses matplotlib's constrained layout, so labels are not clipped and :func:`legend_outside`
  can place one legend for the whole figure beside or below the data.

In a Jupyter kernel the style also registers the PNG renderer of figures: it writes the
figure at :data:`DPI` and records, in the PNG's text chunk ``metagrad:min_font_px``, the
smallest text of the figure in image pixels, which ``scripts/check_book.py`` compares with
the size the browser renders the image at.
"""
from __future__ import annotations

import json
from binascii import b2a_base64
from io import BytesIO

__all__ = ["DPI", "MAX_WIDTH_IN", "MIN_FONT_PT", "PALETTE", "use_style", "subplots",
           "legend_outside", "min_font_pt", "png_bytes", "colors", "quality_vs_cost"]

DPI = 100
MAX_WIDTH_IN = 7.2  # the content column is ~780 CSS px wide at a 1400 px window
MIN_FONT_PT = 9.0
PALETTE = "colorblind"
PNG_KEY = "metagrad:min_font_px"
_RC = {
    "font.size": 10, "axes.labelsize": 10, "axes.titlesize": 10.5, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9.5,
    "figure.titlesize": 11, "figure.dpi": DPI, "savefig.dpi": DPI, "axes.titleweight": "normal",
    "legend.frameon": False, "figure.constrained_layout.use": True,
}
_state = {"styled": False}


def use_style() -> None:
    """Apply the house style (idempotent) and, inside IPython, register the PNG renderer."""
    if not _state["styled"]:
        import matplotlib as mpl
        import seaborn as sns

        sns.set_theme(context="paper", style="whitegrid", palette=PALETTE)
        mpl.rcParams.update(_RC)
        _state["styled"] = True
    _register_png()


def colors(n: int) -> list:
    """``n`` colours of the colour-blind palette."""
    import seaborn as sns

    return sns.color_palette(PALETTE, n)


def subplots(ncols: int = 1, nrows: int = 1, *, panel: tuple[float, float] = (3.6, 2.7),
             width: float | None = None, **kwargs):
    """``plt.subplots`` in the house style: ``(fig, axes)`` with ``axes`` a 2-D array.
    Each panel is ``panel`` inches (width, height); the figure is at most ``MAX_WIDTH_IN``
    wide (``width`` overrides the total width, also capped)."""
    import matplotlib.pyplot as plt

    use_style()
    w = min(width or panel[0] * ncols, MAX_WIDTH_IN)
    h = panel[1] * nrows * (w / (panel[0] * ncols) if width is None else 1.0) ** 0.5
    kwargs.setdefault("squeeze", False)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), layout="constrained", **kwargs)
    _register_png()  # again: the first figure of a kernel activates the inline backend,
    return fig, axes  # which installs its own PNG renderer


def legend_outside(fig, *, where: str = "right", ncols: int | None = None, title: str | None = None,
                   axes=None):
    """One legend for the whole figure, outside the axes (``where``: "right" or "below"),
    built from the labelled artists of every axes (duplicates dropped); per-axes legends are
    removed."""
    handles, labels = {}, []
    for ax in (axes if axes is not None else fig.axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles and not lab.startswith("_"):
                handles[lab] = h
                labels.append(lab)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not labels:
        return None
    if where == "below":
        loc, ncols = "outside lower center", ncols or min(len(labels), 4)
    else:
        loc, ncols = "outside right upper", ncols or 1
    return fig.legend([handles[lab] for lab in labels], labels, loc=loc, ncols=ncols, title=title)


#: The two costs of the equal-compute view: column of a runs table -> axis label.
COSTS = {"products": "hypergradient products per run\n(JVP + VJP + HVP, log scale)",
         "wall_s": "outer-loop wall-clock per run (s, log scale)"}


def quality_vs_cost(runs, y: str, *, ylabel: str, label: str = "label", panel: str | None = None,
                    costs: dict | None = None, scale: float = 1.0):
    """The equal-compute view of a comparison: each method's quality (mean over seeds, 95 %
    t-interval as an error bar) against what its run cost, one row of panels per value of
    ``panel`` and one column per cost (default :data:`COSTS`: total hypergradient products
    and outer-loop wall-clock, both per run, on log axes). ``runs``: one row per (method,
    seed) with the columns ``label``, ``y`` and the cost columns; rows whose cost is 0 (no
    hypergradient, e.g. "no HPO") are drawn as a horizontal dotted line. A method is better
    at equal compute when it sits above another at the same abscissa."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .report import mean_ci
    costs = dict(COSTS if costs is None else costs)
    keys = [None] if panel is None else list(dict.fromkeys(runs[panel]))
    fig, axes = subplots(len(costs), len(keys), panel=(3.6, 2.6))
    labels = list(dict.fromkeys(runs[label]))
    pal = dict(zip(labels, colors(len(labels))))
    for row, key in zip(axes, keys):
        sub = runs if key is None else runs[runs[panel] == key]
        for ax, (col, xlabel) in zip(row, costs.items()):
            for lab, g in sub.groupby(label, sort=False):
                m, ci = mean_ci(scale * g[y].to_numpy(float))
                x = float(np.nanmean(g[col].to_numpy(float)))
                if not x > 0:
                    ax.axhline(m, color=pal[lab], ls=":", lw=1.2, label=lab)
                    continue
                ax.errorbar([x], [m], yerr=[ci], fmt="o", ms=5, capsize=3, color=pal[lab], label=lab)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if key is not None:
                ax.set_title(str(key))
    legend_outside(fig, where="below", ncols=3)
    return fig


def min_font_pt(fig) -> float:
    """The smallest font size (points) of any visible, non-empty text of ``fig``."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    return float(min(sizes)) if sizes else float("inf")


def png_bytes(fig, dpi: int = DPI) -> bytes:
    """The figure as PNG with its smallest text size (image pixels) in a text chunk."""
    fig.canvas.draw()
    min_px = min_font_pt(fig) * dpi / 72.0
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white",
                metadata={PNG_KEY: json.dumps(round(min_px, 2) if min_px != float("inf") else None)})
    return buf.getvalue()


def _png_formatter(fig):
    if not fig.axes:
        return None
    return b2a_base64(png_bytes(fig), newline=False).decode("ascii")


def _register_png() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or not hasattr(ip, "display_formatter"):
        return
    from matplotlib.figure import Figure

    ip.display_formatter.formatters["image/png"].for_type(Figure, _png_formatter)
