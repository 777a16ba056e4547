"""The Wrapped page: one HTML file with its charts inlined as PNG data URIs, so it opens offline and can be
sent as a single attachment. Rendered with jinja2, autoescaped (track names are user data)."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from pipelines.wrapped.queries import WrappedData, minutes

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["minutes"] = minutes
    env.filters["thousands"] = lambda number: f"{number:,}"
    env.filters["long_date"] = lambda day: f"{day:%a %-d %b %Y}"
    return env


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html(data: WrappedData, charts: dict[str, bytes]) -> str:
    """The page for `data`; `charts` maps chart names (file stems) to PNG bytes."""
    template = _environment().get_template("wrapped.html.j2")
    return template.render(data=data, charts={name: data_uri(png) for name, png in charts.items()})
