"""Wrapped: a year (or any period) of listening as one shareable, offline HTML page plus PNG charts.

`queries` reads the numbers from `analytics` (read-only), `charts` draws them with matplotlib, `render` lays them
out with jinja2. `write_report` puts the three together. `coverage` is the other report read from `analytics`:
per listener, what the stored history covers and its open gaps (`python -m pipelines coverage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.database import DatabaseUrl
from pipelines.wrapped import charts, queries, render
from pipelines.wrapped.period import Period

__all__ = ["Period", "Report", "write_report"]


@dataclass(frozen=True)
class Report:
    """What `write_report` wrote, and the numbers it showed."""

    html: Path
    charts: list[Path]
    data: queries.WrappedData


def write_report(
    database: DatabaseUrl, period: Period, output_dir: Path, user: str | None = None, *, account: str | None = None
) -> Report:
    """Write `index.html` and one PNG per chart into `output_dir` (created if needed).

    Args:
        database: Read only in `analytics`.
        period: The days to wrap.
        output_dir: Where the page and the charts go.
        user: The listener's Spotify user id; default: the only listener in analytics.
        account: The account `user` is, named in errors.
    """
    data = queries.fetch(database, period, user, account)
    pngs = {
        "top-artists": charts.top_list(data.top_artists, "Top artists (plays)"),
        "minutes-by-month": charts.minutes_by_month(data.by_month),
        "minutes-by-hour": charts.minutes_by_hour(data.by_hour),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    chart_files = []
    for name, png in pngs.items():
        path = output_dir / f"{name}.png"
        path.write_bytes(png)
        chart_files.append(path)
    page = output_dir / "index.html"
    page.write_text(render.html(data, pngs), encoding="utf-8")
    return Report(html=page, charts=chart_files, data=data)
