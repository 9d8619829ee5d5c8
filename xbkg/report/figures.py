"""Figures of the HTML report drawn cheaply: fixed layout, one draw, plain-text log labels.

matplotlib's constrained layout measures every tick label of every axes before each draw,
and ``savefig`` draws a figure with a layout engine twice; log axes make a tick object for
each minor tick of every decade around the view, and label ticks with mathtext (a parser
run per label). On the 3D DR1 report those took about three quarters of its time. Here the
axes are placed once with fixed margins in inches (:func:`place`), the figure is drawn once
(:func:`png_tag`), log tick labels are plain Unicode text (10⁻³ instead of mathtext's
10^{-3}, the same picture) and minor ticks outside the view are not made. matplotlib is
imported inside the functions.
"""

from __future__ import annotations

import base64
import functools
import io
import re

import numpy as np

__all__ = ["figure_context", "new_figure", "place", "plain_math", "light_ticks", "fit",
           "png_tag"]

_SUPERSCRIPTS = str.maketrans("-−0123456789", "⁻⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def figure_context():
    """matplotlib settings of the report's figures (a context manager): titles at a fixed
    height (no report figure has tick labels on top; the automatic placement measures the
    axes' tick labels at every draw) and no warning for many open figures."""
    import matplotlib

    return matplotlib.rc_context({"axes.titley": 1.0, "figure.max_open_warning": 0})


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` (not registered with pyplot) for :func:`place` to lay out.

    Its placeholder layout engine does nothing at draw time; it tells :mod:`xbkg.plots.model`
    the figure is laid out already and lets colour bars take room from their axes.
    """
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    fig = Figure(figsize=(width, height))
    fig.set_layout_engine(PlaceHolderLayoutEngine(adjust_compatible=True, colorbar_gridspec=True))
    return fig


def place(fig, grid: tuple[int, int] = (1, 1), *, left: float = 0.7, right: float = 0.15,
          bottom: float = 0.5, top: float = 0.3, wspace: float = 0.0,
          hspace: float = 0.0) -> None:
    """Fixed margins around, and gaps between, the panels of a ``grid`` (rows, columns) of
    ``fig``, all in inches (axes made by ``fig.subplots`` before or after follow them)."""
    width, height = fig.get_size_inches()
    nrows, ncols = grid
    panel_w = (width - left - right - (ncols - 1) * wspace) / ncols
    panel_h = (height - bottom - top - (nrows - 1) * hspace) / nrows
    if panel_w <= 0 or panel_h <= 0:
        raise ValueError(f"margins leave no room for a {nrows}x{ncols} grid in a "
                         f"{width:g}x{height:g} in figure")
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace / panel_w, hspace=hspace / panel_h)


def plain_math(label: str) -> str:
    """A log-axis tick label of matplotlib's as plain text, when it is a plain power.

    >>> plain_math(r"$\\mathdefault{10^{-3}}$"), plain_math(r"$\\mathdefault{2\\times10^{1}}$")
    ('10⁻³', '2×10¹')
    >>> plain_math(r"$\\alpha$")  # anything else is left to mathtext
    '$\\\\alpha$'
    """
    match = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
    if not match:
        return label
    body = match.group(1).replace(r"\times", "×")
    body = re.sub(r"\^\{([-−]?\d+)\}", lambda m: m.group(1).translate(_SUPERSCRIPTS), body)
    return label if re.search(r"[\\{}^$]", body) else body


@functools.cache
def _light_classes():
    """Subclasses of matplotlib's log formatter and locator with the same state."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    class PlainLogFormatter(LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            return plain_math(super().__call__(x, pos))

    class InViewLogLocator(LogLocator):
        def __call__(self):
            locs = np.asarray(super().__call__())
            lo, hi = sorted(self.axis.get_view_interval())
            return locs[(locs >= lo * (1 - 1e-9)) & (locs <= hi * (1 + 1e-9))]

    return {LogFormatterSciNotation: PlainLogFormatter, LogLocator: InViewLogLocator}


def light_ticks(fig) -> None:
    """On every log axis of ``fig``: plain-text labels and minor ticks only inside the view
    (what is drawn does not change). matplotlib's own formatter and locator objects become
    the subclasses above, keeping their settings."""
    swap = _light_classes()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not axis.label.get_text():
                # nothing to place: skips measuring the tick labels of the axis and of all
                # the axes it is shared with, at every draw
                axis.set_label_coords(0.5, 0.5)
            if axis.get_scale() != "log":
                continue
            for obj in (axis.get_major_formatter(), axis.get_minor_formatter(),
                        axis.get_minor_locator()):
                if type(obj) in swap:
                    obj.__class__ = swap[type(obj)]


def fit(fig, pad: float = 0.15) -> None:
    """Margins and gaps from the figure's own labels, measured once (matplotlib's tight
    layout), for figures whose tick labels depend on the data.

    Only what can stand outside the axes is measured (tick and axis labels, titles, legends,
    colour bars): artists clipped to their axes are left out of the layout, which they cannot
    change, and whose extents would cost most of the measurement.
    """
    from matplotlib.axis import Axis
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    light_ticks(fig)
    for ax in fig.axes:
        for child in ax.get_children():
            if child.get_clip_on() and not isinstance(child, (Text, Axis, Legend)):
                child.set_in_layout(False)
    fig.tight_layout(pad=pad)


def png_tag(fig, dpi: float, *, fit_layout: bool = True) -> str:
    """``<img>`` tag of ``fig`` as an embedded PNG at ``dpi``, drawn once (the figure's layout
    engine is removed first: with one, ``savefig`` draws twice). With ``fit_layout``, the
    margins are first fitted to the labels (:func:`fit`); otherwise they stay as placed."""
    light_ticks(fig)
    if fit_layout:
        fit(fig)
    fig.set_layout_engine(None)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'
