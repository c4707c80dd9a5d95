"""Fetch candidates' bytes: HTTP(S) for URL lists, fsspec for folder and object-store sources.

Built for millions of URLs from many hosts, and for the hosts' sake: called from a bounded
thread pool (the partition runner's), every request waits for its host's turn
(:mod:`curation.host_policy`: a request rate and a concurrency per host, ``Retry-After``
applied to the whole host, a breaker for hosts that stop answering); robots.txt is honoured
(:mod:`curation.robots`, RFC 9309), and so are the opt-out headers ``X-Robots-Tag`` and
``tdm-reservation`` (:mod:`curation.optout`). Retries only where a retry can help (429, 5xx;
a timeout once) with full-jitter exponential backoff, all under one deadline per URL
(``total_timeout_s``, enforced on every socket read: :mod:`curation.http_transport`);
redirects followed by hand so that every hop passes the SSRF guard
(:mod:`curation.address_guard`); a body cap enforced while streaming. The content type is
sniffed from the first bytes; the header is only reported. Credentials in a URL are sent as
HTTP Basic auth to that URL's origin and written nowhere (:mod:`curation.urls`).

Every failure raises :class:`~curation.records.Rejection` with stage ``fetch`` and a stable
reason (:mod:`curation.reasons` lists them, and which the next build retries):
``http_<status>``, ``timeout``, ``connection_error``, ``dns_error``, ``invalid_url``,
``bad_scheme``, ``blocked_address``, ``too_many_redirects``, ``too_large_bytes``,
``not_an_image``, ``not_found``, ``read_error``, ``tls_error``, ``unsupported_encoding``, and
the refusals of :data:`POLITENESS_REASONS`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

from curation.address_guard import AddressGuard
from curation.config import FetchConfig
from curation.host_policy import HostPolicy
from curation.http_transport import ConnectionPool, DeadlineResponse, request_target
from curation.optout import TdmRepRules, parse_tdmrep, tdm_reserved, x_robots_blocked
from curation.reasons import code, http_status
from curation.records import Candidate, Rejection
from curation.robots import RobotsRules, parse_robots
from curation.urls import split_credentials
from storage.uri import open_fs

__all__ = [
    "POLITENESS_REASONS",
    "AddressGuard",
    "Fetched",
    "Fetcher",
    "host_policy_for",
    "parse_retry_after",
    "sniff_image_type",
    "x_robots_blocked",
]

#: Reject reasons that are the crawler's politeness (a host's wish or its health), each its own
#: code; the dashboard counts them per host (``flows.dashboard.politeness``).
POLITENESS_REASONS = tuple(
    code(name, "fetch")
    for name in (
        "robots_txt",  # disallowed by the host's robots.txt
        "robots_txt_unavailable",  # robots.txt answered 5xx/429 or not at all: all disallowed
        "x_robots_tag",  # X-Robots-Tag: noai, noimageai, noindex... (for us or every crawler)
        "tdm_reservation",  # tdm-reservation: 1 (TDM-Rep)
        "host_rate_limited",  # no turn within max_host_wait_s (rate, Crawl-delay, Retry-After)
        "host_unresponsive",  # the host's breaker opened: consecutive timeouts/5xx/429/resets
    )
)

_REDIRECTS = (301, 302, 303, 307, 308)
_ROBOTS_MAX_BYTES = 512 * 1024
TDMREP_PATH = "/.well-known/tdmrep.json"


@dataclass(frozen=True)
class Fetched:
    """The bytes of one candidate and how they were obtained (kept as provenance)."""

    data: bytes
    final_url: str
    sniffed: str  # image type from the bytes: jpeg, png, webp, gif, tiff, bmp, avif
    content_type: str | None = None  # as the server declared it; not trusted
    status: int | None = None
    attempts: int = 1
    seconds: float = 0.0


def sniff_image_type(head: bytes) -> str | None:
    """Image type from the magic bytes, or None for anything else (HTML, JSON, empty...)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:2] == b"BM":
        return "bmp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "avif" if head[8:12].startswith(b"avi") else "heif"
    return None


def _describe(head: bytes) -> str:
    text = head.lstrip()[:64].lower()
    if not head:
        return "an empty body"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML"
    if text.startswith((b"{", b"[")):
        return "JSON"
    if text.startswith(b"<"):
        return "XML/HTML"
    return f"unknown bytes {head[:8].hex()}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


class _Budget:
    """One URL's deadline: it starts with the URL's first request (waiting for the host's
    first turn is bounded separately, by ``max_host_wait_s``) and covers every attempt,
    redirect and backoff after it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None

    def start(self) -> float:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds
        return self.deadline

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()


def _host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _origin(url: str) -> str:
    """scheme://host:port, without user-info (what robots.txt and credentials are scoped to)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def host_policy_for(config: FetchConfig) -> HostPolicy:
    """The politeness of ``config`` for one fetcher or one build (hosts in ``allow_hosts``
    are exempt from the rate unless ``rate_limit_allow_listed``)."""
    guard = AddressGuard(config.block_private_addresses, config.allow_hosts)
    rate_all = config.rate_limit_allow_listed
    policy = HostPolicy(
        concurrency=config.per_host_limit,
        rate=config.per_host_rate,
        failure_limit=config.host_failure_limit,
        max_queue_s=config.max_host_wait_s,
        exempt=lambda host: not rate_all and guard.allow_listed(host),
    )
    policy.robots.size = config.robots_cache_size
    return policy


class Fetcher:
    """Thread-safe fetcher; one per worker process, shared by its threads. Use as a context
    manager (or call :meth:`close`) to release connections. ``hosts``: a policy shared with
    other fetchers (a build's partitions share one, ``curation.host_policy.shared_policy``)."""

    def __init__(self, config: FetchConfig | None = None, hosts: HostPolicy | None = None) -> None:
        self.config = config or FetchConfig()
        cfg = self.config
        self.guard = AddressGuard(cfg.block_private_addresses, cfg.allow_hosts)
        self.hosts = hosts or host_policy_for(cfg)
        self.user_agent = cfg.user_agent.replace("{contact}", cfg.contact or "<unset>")
        self._blocked_directives = {d.lower() for d in cfg.x_robots_block}
        self._pool = ConnectionPool(cfg.connect_timeout_s, cfg.read_timeout_s, cfg.per_host_limit)
        self._headers = {
            "User-Agent": self.user_agent,
            "Accept": "image/avif,image/webp,image/*;q=0.9,*/*;q=0.5",
            "Accept-Encoding": "identity",  # bytes as stored; no decompression bombs
        }

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close_all()

    # -- public -------------------------------------------------------------------------------

    def fetch(self, candidate: Candidate) -> Fetched:
        """Bytes of ``candidate`` or a :class:`Rejection`; never another exception type."""
        if candidate.is_file:
            return self.fetch_file(candidate.url)
        return self.fetch_url(candidate.url, candidate.credentials)

    def fetch_url(self, url: str, credentials: str | None = None) -> Fetched:
        """The image at ``url``. ``credentials`` (``user:password``, or user-info in ``url``)
        go as Basic auth to the URL's origin only; nothing returned or raised contains them."""
        cfg = self.config
        url, embedded = split_credentials(url)
        credentials = credentials or embedded
        started = time.monotonic()
        budget = _Budget(cfg.total_timeout_s)
        last: _Retryable | None = None
        timeouts = 0
        for attempt in range(cfg.retries + 1):
            if last is not None:
                wait = 0.0  # a Retry-After paused the whole host: the next turn waits for it
                if last.retry_after is None:
                    ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempt)
                    wait = random.uniform(0.0, ceiling)
                elif last.retry_after > cfg.max_retry_after_s:
                    raise Rejection(
                        "fetch",
                        last.reason,
                        f"Retry-After {last.retry_after:.0f} s exceeds the limit",
                    )
                if max(wait, last.retry_after or 0.0) >= budget.left():
                    raise Rejection(
                        "fetch",
                        last.reason,
                        f"{last.detail} (URL deadline of {cfg.total_timeout_s:g} s, "
                        f"{attempt} attempts)",
                    )
                time.sleep(wait)
            try:
                fetched = self._attempt(url, cfg.max_body_bytes, True, budget, credentials)
            except _Retryable as exc:
                last = exc
                timeouts += exc.reason == "timeout"
                if timeouts > 1 or budget.left() <= 0:  # a read timeout is retried once
                    break
                continue
            return Fetched(
                fetched.data,
                fetched.final_url,
                fetched.sniffed,
                fetched.content_type,
                fetched.status,
                attempt + 1,
                time.monotonic() - started,
            )
        assert last is not None
        raise Rejection("fetch", last.reason, f"{last.detail} (after {attempt + 1} attempts)")

    def fetch_file(self, uri: str) -> Fetched:
        """Read a file through fsspec with the same size cap and sniffing as HTTP bodies."""
        started = time.monotonic()
        try:
            fs, path = open_fs(uri)
            size = fs.size(path)
            if size is not None and size > self.config.max_body_bytes:
                raise Rejection("fetch", "too_large_bytes", f"{size} bytes")
            data = fs.cat_file(path)
        except Rejection:
            raise
        except FileNotFoundError:
            raise Rejection("fetch", "not_found", uri) from None
        except (OSError, ValueError) as exc:
            raise Rejection("fetch", "read_error", f"{type(exc).__name__}: {exc}") from None
        if len(data) > self.config.max_body_bytes:  # the file grew after fs.size
            raise Rejection("fetch", "too_large_bytes", f"{len(data)} bytes")
        sniffed = sniff_image_type(data[:32])
        if sniffed is None:
            raise Rejection("fetch", "not_an_image", f"bytes are {_describe(data[:64])}")
        return Fetched(data, uri, sniffed, seconds=time.monotonic() - started)

    # -- one attempt: redirects, guard, politeness, headers, body ------------------------------

    def _attempt(
        self, url: str, cap: int, is_image: bool, budget: _Budget, credentials: str | None = None
    ) -> Fetched:
        cfg = self.config
        origin = _origin(url)
        for _hop in range(cfg.max_redirects + 1):
            addresses = self.guard.check(url)
            host = _host_of(url)
            self.hosts.check(host)
            if is_image and cfg.respect_robots_txt:
                self._check_robots(url)
            if is_image and cfg.respect_tdm_reservation:
                self._check_tdmrep(url)
            headers = self._headers
            if credentials is not None and _origin(url) == origin:  # never to another host
                token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
                headers = {**headers, "Authorization": f"Basic {token}"}
            with self.hosts.turn(host, budget.deadline):
                deadline = budget.start()
                outcome = self._exchange(url, addresses, deadline, cap, is_image, headers)
            if isinstance(outcome, Fetched):
                return outcome
            url = outcome  # a redirect: check the next hop like the first
        raise Rejection("fetch", "too_many_redirects", f"more than {cfg.max_redirects}, at {url}")

    def _exchange(
        self,
        url: str,
        addresses: list[str] | None,
        deadline: float,
        cap: int,
        is_image: bool,
        headers: dict[str, str],
    ) -> Fetched | str:
        """One request/response on a pooled connection: the body, or a redirect's target.
        Its outcome goes to the host's breaker: an answer resets it, a failure counts."""
        try:
            key, target = request_target(url)
        except ValueError as exc:
            raise Rejection("fetch", "invalid_url", str(exc)) from None
        host = key[1].lower()
        aborted = threading.Event()
        conn, reused = self._connection(key, addresses, deadline, aborted)

        def abort() -> None:  # the host's breaker opened: end this request now
            aborted.set()
            with contextlib.suppress(OSError, AttributeError):
                conn.sock.shutdown(socket.SHUT_RDWR)

        keep = False
        try:
            with self.hosts.watch(host, abort):
                try:
                    conn.request("GET", target, headers=headers)
                    response = conn.getresponse()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    if not reused or aborted.is_set():
                        raise
                    # A kept-alive connection the server had closed meanwhile: retry on a new
                    # one (not the next idle one, likely closed as well); drop the host's others.
                    self._pool.discard(conn)
                    self._pool.drop_idle(key)
                    conn, reused = self._connection(key, addresses, deadline, aborted, True)
                    conn.request("GET", target, headers=headers)
                    response = conn.getresponse()
                failed = response.status == 429 or response.status >= 500
                self.hosts.record(host, f"HTTP {response.status}" if failed else None)
                location = response.getheader("location")
                if response.status in _REDIRECTS and location:
                    return split_credentials(urljoin(url, location))[0]  # user-info dropped
                fetched = self._read(url, response, cap, is_image)
            keep = not response.will_close
            return fetched
        except (http.client.HTTPException, OSError, UnicodeError) as exc:  # TimeoutError too
            if aborted.is_set():
                self.hosts.check(host)  # raises host_unresponsive
            raise self._failure(exc, host, deadline) from None
        finally:
            if keep:
                self._pool.put(key, conn)
            else:
                self._pool.discard(conn)

    def _failure(self, exc: Exception, host: str, deadline: float) -> Exception:
        """The Rejection (or retryable failure) for an exchange that raised ``exc``; failures
        that say the host is unwell go to its breaker."""
        if isinstance(exc, TimeoutError):
            self.hosts.record(host, "timeout")
            detail = "no answer within the read timeout"
            if time.monotonic() >= deadline:
                detail = f"URL deadline of {self.config.total_timeout_s:g} s reached"
            return _Retryable("timeout", detail)
        if isinstance(exc, socket.gaierror):
            return Rejection("fetch", "dns_error", f"{host}: {exc}")
        if isinstance(exc, ssl.SSLError):
            return Rejection("fetch", "tls_error", str(exc))
        if isinstance(exc, (http.client.InvalidURL, UnicodeError)):
            return Rejection("fetch", "invalid_url", str(exc))
        self.hosts.record(host, type(exc).__name__)  # refused, reset, incomplete body
        return Rejection("fetch", "connection_error", f"{type(exc).__name__}: {exc}")

    def _connection(
        self,
        key: Any,
        addresses: list[str] | None,
        deadline: float,
        cancelled: threading.Event,
        fresh: bool = False,
    ) -> tuple[http.client.HTTPConnection, bool]:
        """A pooled connection whose connect and reads end at ``deadline`` (or ``cancelled``)."""
        conn, reused = self._pool.get(key, addresses, fresh)
        left = max(0.001, deadline - time.monotonic())
        if not reused:
            conn.timeout = min(self.config.connect_timeout_s, left)
        conn.response_class = partial(  # type: ignore[assignment]
            DeadlineResponse,
            deadline=deadline,
            read_timeout=self.config.read_timeout_s,
            cancelled=cancelled,
        )
        return conn, reused

    def _read(
        self, url: str, response: http.client.HTTPResponse, cap: int, is_image: bool
    ) -> Fetched:
        status = response.status
        if status == 429 or 500 <= status < 600:
            retry_after = parse_retry_after(response.getheader("retry-after"))
            if retry_after is not None:  # for every thread and partition, not only this URL
                self.hosts.pause(_host_of(url), min(retry_after, self.config.max_retry_after_s))
            raise _Retryable(http_status(status), f"HTTP {status}", retry_after)
        if status != 200:
            raise Rejection("fetch", http_status(status), f"HTTP {status}")
        if is_image:
            self._check_opt_outs(response)
        length = response.getheader("content-length")
        if length and length.strip().isdigit() and int(length) > cap:
            raise Rejection("fetch", "too_large_bytes", f"Content-Length {length} > {cap}")
        encoding = (response.getheader("content-encoding") or "identity").strip().lower()
        if encoding != "identity":  # we asked for identity; decoding would invite bombs
            raise Rejection("fetch", "unsupported_encoding", f"Content-Encoding: {encoding}")
        chunks: list[bytes] = []
        received = 0
        sniffed: str | None = None
        while chunk := response.read(min(self.config.chunk_bytes, cap + 1 - received)):
            chunks.append(chunk)
            received += len(chunk)
            if received > cap:
                raise Rejection("fetch", "too_large_bytes", f"body over {cap} bytes")
            if is_image and sniffed is None and received >= 32:
                head = b"".join(chunks)[:64]
                sniffed = sniff_image_type(head)
                if sniffed is None:  # stop downloading an HTML page at its first bytes
                    raise Rejection("fetch", "not_an_image", self._not_image_detail(head, response))
        data = b"".join(chunks)
        if is_image and sniffed is None:
            sniffed = sniff_image_type(data[:32])
            if sniffed is None:
                raise Rejection("fetch", "not_an_image", self._not_image_detail(data, response))
        return Fetched(data, url, sniffed or "", response.getheader("content-type"), status)

    def _check_opt_outs(self, response: http.client.HTTPResponse) -> None:
        cfg = self.config
        if cfg.respect_x_robots_tag:
            directive = x_robots_blocked(
                response.headers.get_all("x-robots-tag") or [],
                self._blocked_directives,
                self.user_agent,
            )
            if directive:
                raise Rejection("fetch", "x_robots_tag", f"X-Robots-Tag: {directive}")
        if cfg.respect_tdm_reservation and tdm_reserved(response.getheader("tdm-reservation")):
            raise Rejection("fetch", "tdm_reservation", "tdm-reservation: 1 (TDM rights reserved)")

    @staticmethod
    def _not_image_detail(head: bytes, response: Any) -> str:
        declared = response.getheader("content-type") or "no Content-Type"
        return f"bytes are {_describe(head)} (declared {declared})"

    # -- robots.txt -----------------------------------------------------------------------------

    def _check_robots(self, url: str) -> None:
        origin = _origin(url)
        rules = self.hosts.robots.get(origin, partial(self._load_robots, origin, _host_of(url)))
        if rules is None:
            raise Rejection(
                "fetch",
                "robots_txt_unavailable",
                f"{origin}/robots.txt answered 5xx or not at all: disallowed for this build",
            )
        if not rules.allowed(request_target(url)[1]):
            raise Rejection("fetch", "robots_txt", f"disallowed by {origin}/robots.txt")

    def _check_tdmrep(self, url: str) -> None:
        origin = _origin(url)
        rules = self.hosts.tdmrep.get(origin, partial(self._load_tdmrep, origin))
        reserved = rules.reservation(request_target(url)[1]) if rules is not None else None
        if reserved is not None:
            location, policy = reserved
            detail = f"{origin}/.well-known/tdmrep.json reserves TDM rights for {location}"
            raise Rejection(
                "fetch", "tdm_reservation", detail + (f" (policy {policy})" * bool(policy))
            )

    def _load_tdmrep(self, origin: str) -> TdmRepRules:
        """The origin's TDM-Rep file; any failure to read one means no rules from it."""
        budget = _Budget(self.config.total_timeout_s)
        try:
            body = self._attempt(f"{origin}{TDMREP_PATH}", _ROBOTS_MAX_BYTES, False, budget).data
        except Rejection as rejection:
            if rejection.reason in ("host_unresponsive", "host_rate_limited"):
                raise  # not an answer about the file: not cached
            return TdmRepRules()
        except _Retryable:
            return TdmRepRules()
        return parse_tdmrep(body.decode("utf-8", "replace"))

    def _load_robots(self, origin: str, host: str) -> RobotsRules | None:
        """RFC 9309: 4xx means no rules; 5xx (and 429), or no answer, means disallow all
        (None). Its Crawl-delay becomes the host's interval if longer than the rate's."""
        budget = _Budget(self.config.total_timeout_s)
        try:
            body = self._attempt(f"{origin}/robots.txt", _ROBOTS_MAX_BYTES, False, budget).data
        except Rejection as rejection:
            if rejection.reason in ("host_unresponsive", "host_rate_limited"):
                raise  # not an answer about robots.txt: not cached
            if rejection.reason.startswith("http_4"):
                return RobotsRules()
            return None
        except _Retryable:
            return None
        rules = parse_robots(body.decode("utf-8", "replace"), self.user_agent)
        self.hosts.set_crawl_delay(host, rules.crawl_delay)
        return rules
