"""Credentials in URLs: used for the request, never written anywhere.

A URL list may hold ``http://user:secret@host/a.jpg`` (an image server behind HTTP Basic
auth). The user-info part is split off where candidates are read: the candidate's ``url`` (and
so its id, the manifest, the rejects, the reject thumbnails, the shard JSON, the logs and the
dashboard) holds the URL without it, and the credentials travel beside it, out of ``repr``,
to the fetcher, which sends them as an ``Authorization: Basic`` header to that origin only
(never to a redirect's other host, nor with robots.txt requests).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without user-info, ``"user:password"`` decoded, or None when it has none).

    Only http(s) URLs are split: a file path or object-store URI is returned unchanged.
    A URL that does not parse is returned unchanged too (the fetcher rejects it), unless it
    visibly holds an ``@`` before its path, which is then cut out all the same.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return url, None
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" not in authority:
        return url, None
    userinfo, _, hostport = authority.rpartition("@")
    try:
        parts = urlsplit(url)
        clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    except ValueError:
        clean = f"{scheme}://{hostport}{rest[len(authority) :]}"
    user, _, password = userinfo.partition(":")
    return clean, f"{unquote(user)}:{unquote(password)}"


def redact_url(url: str) -> str:
    """``url`` without its user-info: the form that may be written or printed."""
    return split_credentials(url)[0]
