"""The dataset dashboard: one self-contained HTML page per published version.

``collect`` reads a version's Parquet with DuckDB into a :class:`DashboardData`;
``build_dashboard`` renders it and writes ``dashboard.html`` next to the version.
"""

from flows.dashboard.page import DashboardError, build_dashboard, collect

__all__ = ["DashboardError", "build_dashboard", "collect"]
