"""The dashboard page: the sections rendered into ``templates/page.html.j2`` and written.

``build_dashboard(ROOT/NAME)`` collects a version's data (``flows.dashboard.collect``) and
writes ``ROOT/NAME/dashboard/index.html`` atomically. The template holds the page's skeleton
(head, header, navigation, section order, footer) and inlines the CSS and JS of ``assets/``,
so the page fetches nothing: images are data: URIs, and its CSP forbids every network fetch.
The page is deterministic (no clock, seeded sampling): the same version gives the same bytes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from flows.dashboard import sections
from flows.dashboard.collect import collect, resolve_target
from flows.dashboard.model import DashboardData, DashboardError
from flows.dashboard.politeness import section_politeness
from flows.dashboard.since import section_since
from flows.dashboard.stages import section_stages
from storage.atomic import atomic_write_bytes
from storage.uri import join
from storage.versions import Dataset, PublishedVersion

ASSETS = Path(__file__).with_name("assets")


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("flows.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(d: DashboardData) -> str:
    """The whole page: CSS and JS inlined, images as data: URIs, nothing fetched."""
    # Markup: the assets are the package's own files, and every section function escapes
    # the texts it puts in its fragment; everything else the template escapes itself.
    parts = {
        "overview": sections.section_overview(d),
        "funnel": sections.section_funnel(d),
        "stages": section_stages(d.stages),
        "sources": sections.section_sources(d),
        "resolution": sections.section_resolution(d),
        "quality": sections.section_quality(d),
        "duplicates": sections.section_duplicates(d),
        "kept": sections.section_kept(d),
        "rejected": sections.section_rejected(d),
        "politeness": section_politeness(d.politeness),
        "since": section_since(d.since),
        "history": sections.section_history(d),
    }
    return (
        _environment()
        .get_template("page.html.j2")
        .render(
            name=d.name,
            version=d.version,
            parent=d.entry.get("parent"),
            created=d.entry.get("created", "?"),
            uri=d.uri,
            problems=d.problems,
            css=Markup((ASSETS / "dashboard.css").read_text(encoding="utf-8")),
            js=Markup((ASSETS / "dashboard.js").read_text(encoding="utf-8")),
            sections={name: Markup(html) for name, html in parts.items()},
        )
    )


def build_dashboard(
    target: str | Dataset | PublishedVersion,
    out_dir: str | None = None,
    *,
    version: str | None = None,
    seed: int = 0,
    kept_examples: int = 24,
    rejected_examples: int = 24,
    clusters: int = 6,
) -> str:
    """Build the dashboard of a dataset version; returns the URI of ``index.html``.

    ``target``: ``ROOT/NAME`` (latest version), ``ROOT/NAME/vN``, a Dataset or a
    PublishedVersion. ``out_dir`` defaults to ``ROOT/NAME/dashboard``.
    """
    for label, count in (
        ("kept_examples", kept_examples),
        ("rejected_examples", rejected_examples),
        ("clusters", clusters),
    ):
        if count < 0:
            raise DashboardError(f"{label} must be >= 0, got {count}")
    dataset, target_version = resolve_target(target)
    data = collect(
        dataset,
        version or target_version,
        seed=seed,
        kept_examples=kept_examples,
        rejected_examples=rejected_examples,
        clusters=clusters,
    )
    page = render_html(data).encode("utf-8")
    out = join(out_dir or join(dataset.uri, "dashboard"), "index.html")
    atomic_write_bytes(out, page)
    return out
