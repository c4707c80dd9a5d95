"""Opt-out signals a response carries: ``X-Robots-Tag`` and TDM-Rep's ``tdm-reservation``.

- ``X-Robots-Tag`` (Google's and Bing's convention, used by image hosts for ``noai`` /
  ``noimageai``): a value may be scoped to one crawler, ``otherbot: noindex``; a scoped value
  applies to us only when the name is our product token (``million-ird``, the User-Agent up to
  its ``/``), never because the name happens to appear elsewhere in the User-Agent.
- TDM-Rep (W3C Community Group report, the EU DSM directive's machine-readable reservation of
  text and data mining rights): a ``tdm-reservation: 1`` header reserves the rights, and the
  image is refused; so is an image whose path matches a rule with ``"tdm-reservation": 1`` in
  the origin's ``/.well-known/tdmrep.json`` (a JSON array of ``{"location": pattern,
  "tdm-reservation": 0|1, "tdm-policy": URL}``; patterns as in robots.txt; the first rule that
  matches applies, in the file's order). The file is read once per origin and build; when it
  is missing, unreadable or not such an array, no reservation is read from it (the header
  still counts). HTML ``<meta>`` carriers do not apply to image URLs and are not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from curation.robots import path_matches, product_token

# X-Robots-Tag directives written "name: value"; any other "name:" prefix names a crawler.
_VALUED_DIRECTIVES = {"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after"}


def x_robots_blocked(values: list[str], blocked: set[str], user_agent: str) -> str | None:
    """The first blocking X-Robots-Tag directive that applies to us, or None."""
    token = product_token(user_agent)
    for value in values:
        tokens = [t.strip().lower() for t in value.split(",") if t.strip()]
        if tokens and ":" in tokens[0]:
            scope, first = (part.strip() for part in tokens[0].split(":", 1))
            if scope not in blocked and scope not in _VALUED_DIRECTIVES:  # a crawler's name
                if scope != token:
                    continue
                tokens[0] = first
        for token_value in tokens:
            if token_value in blocked:
                return token_value
    return None


def tdm_reserved(value: str | None) -> bool:
    """True for a ``tdm-reservation`` header value that reserves the rights (``1``)."""
    return (value or "").strip() == "1"


@dataclass
class TdmRepRules:
    """An origin's ``/.well-known/tdmrep.json``: (location, reserved, policy) in file order."""

    rules: list[tuple[str, bool, str | None]] = field(default_factory=list)

    def reservation(self, path_and_query: str) -> tuple[str, str | None] | None:
        """(location, policy) of the first rule that matches and reserves, else None (a first
        match that does not reserve means not reserved)."""
        for location, reserved, policy in self.rules:
            if path_matches(location, path_and_query):
                return (location, policy) if reserved else None
        return None


def parse_tdmrep(text: str) -> TdmRepRules:
    """The rules of a tdmrep.json document; entries that are not well formed are skipped, and
    a document that is not a JSON array has no rules."""
    try:
        document = json.loads(text)
    except ValueError:
        return TdmRepRules()
    if not isinstance(document, list):
        return TdmRepRules()
    rules: list[tuple[str, bool, str | None]] = []
    for entry in document:
        if not isinstance(entry, dict):
            continue
        location, reservation = entry.get("location"), entry.get("tdm-reservation")
        if not isinstance(location, str) or not location.startswith("/"):
            continue
        if reservation not in (0, 1) or isinstance(reservation, bool):
            continue
        policy = entry.get("tdm-policy")
        rules.append((location, reservation == 1, policy if isinstance(policy, str) else None))
    return TdmRepRules(rules)
