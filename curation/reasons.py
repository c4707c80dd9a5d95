"""The one catalogue of reject reasons: every code a build writes to the rejects table.

Each :class:`Reason` says its code, the stages that produce it, whether it is transient (the
next incremental build tries the candidate again) or lasting (the candidate is final), and
what it means in one line. Two kinds of code are families: ``http_<status>`` and
``low_quality:<metric>``; :func:`http_status` and :func:`low_quality` spell their members.

Code that rejects names its reason through :func:`code` (or a constant made with it), which
raises :class:`UnknownReasonError` on a code missing here; :class:`curation.records.Rejection`
checks the code and stage it is raised with. So a new reason is added here first, and the
README's table of reasons is generated from this module (:func:`markdown_table`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Where a reject happens, in pipeline order.
STAGES = ("source", "fetch", "probe", "decode", "filter", "quality", "dedupe", "internal")


class UnknownReasonError(ValueError):
    """A reason code (or a stage for it) the catalogue does not list."""


@dataclass(frozen=True)
class Reason:
    """One catalogue entry. ``pattern`` (a regex) makes it a family of codes."""

    code: str
    stages: tuple[str, ...]
    transient: bool
    meaning: str
    pattern: str | None = None

    def matches(self, code: str) -> bool:
        if self.pattern is None:
            return code == self.code
        return re.fullmatch(self.pattern, code) is not None


def _r(code: str, stages: str, transient: bool, meaning: str, pattern: str | None = None) -> Reason:
    return Reason(code, tuple(stages.split()), transient, meaning, pattern)


T, L = True, False  # transient, lasting

REASONS: tuple[Reason, ...] = (
    _r("duplicate_url", "source", L, "the URL is listed earlier (this partition or another)"),
    _r("timeout", "fetch", T, "no answer within the read timeout or the URL's deadline"),
    _r("connection_error", "fetch", T, "refused, reset or cut off (incomplete body)"),
    _r("dns_error", "fetch", T, "the host name does not resolve"),
    _r("tls_error", "fetch", T, "the TLS handshake failed"),
    _r("read_error", "fetch", T, "a file of a folder or object-store source could not be read"),
    _r("http_429", "fetch", T, "Too Many Requests, still after the retries"),
    _r("http_5xx", "fetch", T, "a server error, still after the retries", r"http_5\d\d"),
    _r("http_<status>", "fetch", L, "any other status than 200 (403, 404, 410...)", r"http_\d{3}"),
    _r("invalid_url", "fetch", L, "the URL cannot be parsed or has no host"),
    _r("bad_scheme", "fetch", L, "neither http nor https"),
    _r("blocked_address", "fetch", L, "the host resolves to a private or loopback address"),
    _r("too_many_redirects", "fetch", L, "more redirects than fetch.max_redirects"),
    _r("too_large_bytes", "fetch", L, "the body is over fetch.max_body_bytes"),
    _r("unsupported_encoding", "fetch", L, "a Content-Encoding other than identity"),
    _r("not_found", "fetch", L, "the file of a folder or object-store source is gone"),
    _r("robots_txt", "fetch", T, "disallowed by the host's robots.txt"),
    _r("robots_txt_unavailable", "fetch", T, "robots.txt answered 5xx/429 or not at all"),
    _r("x_robots_tag", "fetch", L, "an X-Robots-Tag opt-out (noai, noimageai, noindex...)"),
    _r("tdm_reservation", "fetch", L, "TDM rights reserved (header or /.well-known/tdmrep.json)"),
    _r("host_rate_limited", "fetch", T, "no turn at the host within fetch.max_host_wait_s"),
    _r("host_unresponsive", "fetch", T, "the host's breaker opened (consecutive failures)"),
    _r("not_an_image", "fetch probe decode", L, "the bytes are not an image Pillow can read"),
    _r("unsupported_format", "probe", L, "an image format outside probe.formats"),
    _r("decompression_bomb", "probe decode", L, "more pixels than probe.max_pixels"),
    _r("too_small", "probe", L, "the shorter side is under probe.min_side"),
    _r("bad_aspect", "probe", L, "longer than probe.max_aspect times the shorter side"),
    _r("corrupt", "probe decode", L, "the image does not decode"),
    _r("truncated", "decode", L, "the image data ends early"),
    _r("too_dark", "filter", L, "underexposed or crushed blacks"),
    _r("document", "filter", L, "text lines on paper: a document or a screenshot of one"),
    _r("white_background", "filter", L, "a product shot or a cut-out on white"),
    _r("graphic", "filter", L, "drawn, not photographed: few colours, flat fills, renders"),
    _r("overexposed", "filter", L, "washed out or clipped highlights"),
    _r("grayscale", "filter", L, "no colour (filters.reject_grayscale)"),
    _r("flat", "filter", L, "almost no luma variation: nothing in the frame"),
    _r("blurry", "filter", L, "no region of the image in focus"),
    _r("noisy", "filter", L, "noise far above a usable photograph's"),
    _r(
        "low_quality:<metric>",
        "quality",
        L,
        "an IQA score past its threshold; the code names the first such metric",
        r"low_quality:[\w.+-]+",
    ),
    _r("duplicate_of", "dedupe", L, "byte-identical to a kept sample (detail: its key)"),
    _r("near_duplicate_of", "dedupe", L, "a near copy of a kept sample (detail: its key)"),
    _r("test_set_overlap", "dedupe", L, "a copy of a test image (detail: the test image)"),
    _r("internal_error", "internal", T, "a bug or an unforeseen input (detail: the exception)"),
)

_EXACT = {r.code: r for r in REASONS if r.pattern is None}
_FAMILIES = tuple(r for r in REASONS if r.pattern is not None)  # most specific first

#: Exact codes worth retrying in a later build; members of transient families (``http_5xx``)
#: are found by :func:`is_transient`.
TRANSIENT_REASONS = frozenset(code for code, r in _EXACT.items() if r.transient)


def lookup(code: str) -> Reason | None:
    """The entry of ``code`` (its family's for ``http_404``), or None when not listed."""
    found = _EXACT.get(code)
    if found is None:
        found = next((r for r in _FAMILIES if r.matches(code)), None)
    return found


def reason(code: str) -> Reason:
    """The entry of ``code``; :class:`UnknownReasonError` when the catalogue lacks it."""
    found = lookup(code)
    if found is None:
        raise UnknownReasonError(f"unknown reject reason {code!r}: add it to curation.reasons")
    return found


def code(name: str, stage: str | None = None) -> str:
    """``name`` once checked against the catalogue (and, given, the stage producing it)."""
    entry = reason(name)
    if stage is not None and stage not in entry.stages:
        raise UnknownReasonError(f"reject reason {name!r} is not produced by stage {stage!r}")
    return name


def http_status(status: int) -> str:
    """The code of an HTTP status that rejects: ``http_404``."""
    return code(f"http_{status}")


def low_quality(metric: str) -> str:
    """The code of an IQA threshold that rejects: ``low_quality:niqe``."""
    return code(f"low_quality:{metric}")


def is_transient(code: str) -> bool:
    """Whether a candidate rejected for ``code`` is tried again by the next build (a code the
    catalogue does not know, say from an older build, counts as lasting)."""
    found = lookup(code)
    return found is not None and found.transient


def describe(code: str) -> str:
    """One line on what ``code`` means (for the dashboard, ``mird explain``...); a family's
    own name (``http_5xx``) is described too."""
    found = lookup(code) or next((r for r in _FAMILIES if r.code == code), None)
    return found.meaning if found is not None else "not in the catalogue (an older build's code?)"


def entries() -> tuple[Reason, ...]:
    """Every entry, in pipeline order."""
    return REASONS


def markdown_table() -> str:
    """The README's table of reasons, generated (``tests/test_docs.py`` holds them equal)."""
    lines = ["| code | stage | next build | meaning |", "|---|---|---|---|"]
    for r in REASONS:
        retry = "retries" if r.transient else "skips"
        lines.append(f"| `{r.code}` | {', '.join(r.stages)} | {retry} | {r.meaning} |")
    return "\n".join(lines)
