"""Opt-out signals a response carries: ``X-Robots-Tag`` and TDM-Rep's ``tdm-reservation``.

- ``X-Robots-Tag`` (Google's and Bing's convention, used by image hosts for ``noai`` /
  ``noimageai``): a value may be scoped to one crawler, ``otherbot: noindex``; a scoped value
  applies to us only when the name is our product token (``million-ird``, the User-Agent up to
  its ``/``), never because the name happens to appear elsewhere in the User-Agent.
- TDM-Rep (W3C Community Group report, the EU DSM directive's machine-readable reservation of
  text and data mining rights): a ``tdm-reservation: 1`` header reserves the rights, and the
  image is refused. (The protocol's other carriers, ``/.well-known/tdmrep.json`` and HTML
  ``<meta>``, are not read.)
"""

from __future__ import annotations

from curation.robots import product_token

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
