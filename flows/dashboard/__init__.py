"""The dataset dashboard: one self-contained HTML page per published version.

``collect`` reads a version's Parquet with DuckDB into a :class:`DashboardData`;
``build_dashboard`` renders it and writes ``dashboard/index.html`` next to the version.

Modules: ``model`` (the dataclasses), ``collect`` (the DuckDB queries), ``thumbs`` (thumbnails
from shards), ``charts`` (SVG), ``sections`` (the page's own sections), ``render`` (the
Jinja2 page, ``templates/page.html.j2``, and ``build_dashboard``); ``rejects``,
``politeness``, ``since`` and ``stages`` each collect and render one more section.
"""

from flows.dashboard.collect import collect
from flows.dashboard.model import DashboardData, DashboardError
from flows.dashboard.render import build_dashboard

__all__ = ["DashboardData", "DashboardError", "build_dashboard", "collect"]
