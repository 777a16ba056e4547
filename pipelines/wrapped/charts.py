"""The Wrapped's charts, drawn with matplotlib into PNG bytes.

Figures are built with the object API and the Agg canvas (no pyplot, no display, no global figure state),
so rendering works headless and in threads. Names are drawn as text, never as mathtext: an artist called
"A$AP" must not be parsed as a formula.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipelines.wrapped.queries import Bucket, Ranked, minutes

# matplotlib logs font-cache and unit-guessing chatter at INFO, which the CLI's INFO logging would show.
logging.getLogger("matplotlib").setLevel(logging.WARNING)

ACCENT = "#1db954"
INK = "#f5f5f5"
MUTED = "#a7a7a7"
BACKGROUND = "#121212"
STYLE = {
    "text.parse_math": False,
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 11,
    "axes.facecolor": BACKGROUND,
    "figure.facecolor": BACKGROUND,
    "savefig.facecolor": BACKGROUND,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": INK,
    "text.color": INK,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(STYLE), warnings.catch_warnings():
        # Names in scripts DejaVu lacks (emoji, CJK) draw as boxes; that is not worth a warning per glyph.
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
        yield


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No timestamp or software metadata: the same data gives the same bytes.
    figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    return buffer.getvalue()


def minutes_by_month(by_month: list[Bucket]) -> bytes:
    """Bars of minutes listened per month of the period."""
    with _style():
        figure = Figure(figsize=(8, 3.2), layout="constrained")
        axes = figure.add_subplot()
        # a period across a new year needs the year under each month to stay unambiguous
        label = "%b\n%Y" if by_month[0].key.year != by_month[-1].key.year else "%b"
        positions = range(len(by_month))
        axes.bar(positions, [minutes(bucket.listened_ms) for bucket in by_month], color=ACCENT)
        axes.set_xticks(positions, [bucket.key.strftime(label) for bucket in by_month])
        axes.set_ylabel("minutes")
        axes.set_title("Minutes listened by month", loc="left", color=INK)
        return _png(figure)


def minutes_by_hour(by_hour: list[Bucket]) -> bytes:
    """Bars of minutes listened per hour of day (0-23)."""
    with _style():
        figure = Figure(figsize=(8, 3.2), layout="constrained")
        axes = figure.add_subplot()
        axes.bar([bucket.key for bucket in by_hour], [minutes(b.listened_ms) for b in by_hour], color=ACCENT)
        axes.set_xticks(range(0, 24, 3), [f"{hour:02d}:00" for hour in range(0, 24, 3)])
        axes.set_ylabel("minutes")
        axes.set_title("When you listen (hour of day)", loc="left", color=INK)
        return _png(figure)


def top_list(ranked: list[Ranked], title: str) -> bytes:
    """Horizontal bars of plays, the first entry on top."""
    with _style():
        figure = Figure(figsize=(8, 0.6 * max(len(ranked), 1) + 1.0), layout="constrained")
        axes = figure.add_subplot()
        names = [entry.name if len(entry.name) <= 40 else entry.name[:39] + "…" for entry in ranked]
        positions = range(len(ranked))
        axes.barh(positions, [entry.plays for entry in ranked], color=ACCENT)
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # plays are whole numbers
        axes.set_xlabel("plays")
        axes.set_title(title, loc="left", color=INK)
        return _png(figure)
