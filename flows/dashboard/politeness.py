"""The dashboard's "Politeness" table: the crawler's refusals, host by host.

Every refusal the fetcher makes for a host's sake has its own reject reason
(``curation.fetch.POLITENESS_REASONS``: robots.txt, its absence, X-Robots-Tag, TDM-Rep, the
host's rate, its breaker). A data team reads here which hosts opted out of the crawl, which
ones the crawl gave up on, and how many candidates each cost; ``http_429`` (the host asked us
to slow down) is counted beside them. Hosts come from the rejects' URLs (credentials are never
stored; an old version's user-info is cut here all the same).

One section of the dashboard package: ``flows.dashboard.collect`` calls :func:`host_refusals`
and ``flows.dashboard.render`` :func:`section_politeness`; it imports nothing of the package.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import duckdb

from curation.fetch import POLITENESS_REASONS

#: Reasons counted per host: the politeness refusals and the host's own "slow down".
COUNTED = (*POLITENESS_REASONS, "http_429")
#: Hosts shown, those with the most refusals first.
SHOWN_HOSTS = 50


@dataclass
class HostRefusals:
    host: str
    counts: dict[str, int] = field(default_factory=dict)  # reason -> rejects

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def host_refusals(con: duckdb.DuckDBPyConnection) -> list[HostRefusals]:
    """Refusals per host from the ``rejects`` view, the most refused hosts first."""
    reasons = ", ".join(f"'{reason}'" for reason in COUNTED)
    rows = con.execute(
        "SELECT lower(regexp_replace(regexp_extract(url, '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)', "
        "1), '^.*@', '')) AS host, reason, count(*) FROM rejects "
        f"WHERE reason IN ({reasons}) GROUP BY ALL"
    ).fetchall()
    hosts: dict[str, HostRefusals] = {}
    for host, reason, count in rows:
        hosts.setdefault(host or "?", HostRefusals(host or "?")).counts[reason] = int(count)
    return sorted(hosts.values(), key=lambda h: (-h.total, h.host))


def section_politeness(hosts: list[HostRefusals]) -> str:
    """The section's HTML; empty when the build refused nothing for any host's sake."""
    if not hosts:
        return ""
    columns = [reason for reason in COUNTED if any(reason in h.counts for h in hosts)]
    head = "<th>host</th>" + "".join(f'<th class="num">{_e(c)}</th>' for c in columns)
    head += '<th class="num">total</th>'
    body = []
    for h in hosts[:SHOWN_HOSTS]:
        cells = "".join(
            f'<td class="num" data-v="{h.counts.get(c, 0)}">{h.counts.get(c, 0):,}</td>'
            for c in columns
        )
        body.append(
            f"<tr><td>{_e(h.host)}</td>{cells}"
            f'<td class="num" data-v="{h.total}">{h.total:,}</td></tr>'
        )
    more = len(hosts) - SHOWN_HOSTS
    note = f" Showing the {SHOWN_HOSTS} hosts with the most; {more:,} more." if more > 0 else ""
    return (
        '<section id="politeness"><h2>Politeness: refusals per host</h2>'
        '<p class="note">Candidates not fetched, or not kept, for the host\'s sake: '
        "robots.txt (<code>robots_txt</code>; <code>robots_txt_unavailable</code> when it "
        "answered 5xx or nothing), opt-out headers (<code>x_robots_tag</code>, "
        "<code>tdm_reservation</code>), the host's rate (<code>host_rate_limited</code>), "
        "its breaker (<code>host_unresponsive</code>) and its own 429s. All but the opt-out "
        f"headers are tried again by the next build.{_e(note)}</p>"
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
