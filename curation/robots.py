"""robots.txt as RFC 9309 reads it: groups by product token, longest match, ``*`` and ``$``.

The standard library's ``urllib.robotparser`` predates the RFC: it applies the first matching
rule rather than the most specific one, and knows neither ``*`` nor ``$`` in paths, so a
common file such as ``Disallow: /`` + ``Allow: /images/`` would block every image. This
module implements the matching rules of the RFC (section 2.2):

- the crawler obeys the groups whose ``User-agent`` equals its product token (the User-Agent
  up to its first ``/`` or space, case-insensitively), all such groups merged; if none, the
  ``*`` groups; if none either, everything is allowed;
- the rule with the longest matching path pattern wins; on a tie ``Allow`` wins; an empty
  ``Disallow`` is no rule; ``/robots.txt`` itself is always allowed;
- ``Crawl-delay`` (not in the RFC, but widely used) is read from the same groups.

What a fetch of robots.txt means (section 2.3.1) is the fetcher's: 2xx is parsed, 4xx means no
rules, 5xx or no answer means "disallow everything" (:mod:`curation.fetch`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, unquote

# Characters kept as they are when paths and patterns are normalised (RFC 3986 reserved
# and unreserved, plus the two pattern characters).
_SAFE = "/?=&;:@!$'()*+,~-._"


def product_token(user_agent: str) -> str:
    """``million-ird`` from ``million-ird/0.1 (dataset builder; ...)``, lower case."""
    return re.split(r"[/\s]", user_agent.strip(), maxsplit=1)[0].lower()


def _normalise(path: str) -> str:
    return quote(unquote(path), safe=_SAFE)


@lru_cache(maxsize=4096)
def _pattern(path: str) -> re.Pattern[str]:
    anchored = path.endswith("$")
    body = path[:-1] if anchored else path
    regex = ".*".join(re.escape(piece) for piece in _normalise(body).split("*"))
    return re.compile(regex + (r"\Z" if anchored else ""))


def path_matches(pattern: str, path_and_query: str) -> bool:
    """robots.txt path matching (``*`` any run, ``$`` the end), also used by TDM-Rep's
    ``location`` patterns."""
    return bool(_pattern(pattern).match(_normalise(path_and_query or "/")))


@dataclass
class RobotsRules:
    """The rules that apply to one crawler on one origin."""

    rules: list[tuple[bool, str]] = field(default_factory=list)  # (allow, path pattern)
    crawl_delay: float | None = None

    def allowed(self, path_and_query: str) -> bool:
        path = _normalise(path_and_query or "/")
        if path == "/robots.txt":
            return True
        best_length, allow = -1, True
        for rule_allows, pattern in self.rules:
            if _pattern(pattern).match(path):
                length = len(pattern)
                if length > best_length or (length == best_length and rule_allows):
                    best_length, allow = length, rule_allows
        return allow


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """The rules of ``text`` (a robots.txt body) that apply to ``user_agent``."""
    token = product_token(user_agent)
    groups: list[tuple[list[str], list[tuple[bool, str]], list[float]]] = []
    agents: list[str] = []
    rules: list[tuple[bool, str]] = []
    delays: list[float] = []
    in_rules = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        key = key.lower()
        if key == "user-agent":
            if in_rules:  # a user-agent line after rules starts a new group
                groups.append((agents, rules, delays))
                agents, rules, delays, in_rules = [], [], [], False
            agents.append(value.lower())
        elif key in ("allow", "disallow") and agents:
            in_rules = True
            if value:
                rules.append((key == "allow", value))
        elif key == "crawl-delay" and agents:
            in_rules = True
            try:
                delays.append(max(0.0, float(value)))
            except ValueError:
                pass
    if agents:
        groups.append((agents, rules, delays))
    chosen = [g for g in groups if token in g[0]] or [g for g in groups if "*" in g[0]]
    merged = RobotsRules()
    for _, group_rules, group_delays in chosen:
        merged.rules.extend(group_rules)
        if group_delays and merged.crawl_delay is None:
            merged.crawl_delay = group_delays[0]
    return merged
