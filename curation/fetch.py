"""Fetch candidates' bytes: HTTP(S) for URL lists, fsspec for folder and object-store sources.

Built for millions of URLs from many hosts: called from a bounded thread pool (the partition
runner's), with per-host limits, retries only where a retry can help (429, 5xx, timeouts) with
full-jitter exponential backoff and ``Retry-After``, redirects followed by hand so that every
hop passes the SSRF guard, and a body cap enforced while streaming. The content type is sniffed
from the first bytes; the header is only reported.

Transport: the standard library's ``http.client`` with a shared pool of keep-alive connections.
Measured on the 2-core dev box (2,000 bodies of 0.76 MB, 32 threads): httpx's sync client spent
2.7-2.9 CPU seconds, ``http.client`` 0.7, for the same bytes; on a machine where the fetch
shares two cores with decoding and hashing, that difference is the throughput.

Every failure raises :class:`~curation.records.Rejection` with stage ``fetch`` and a stable
reason: ``http_<status>``, ``timeout``, ``connection_error``, ``dns_error``, ``invalid_url``,
``bad_scheme``, ``blocked_address``, ``too_many_redirects``, ``too_large_bytes``,
``not_an_image``, ``x_robots_tag``, ``robots_txt``, ``not_found``, ``read_error``,
``tls_error``, ``unsupported_encoding``.

The guard resolves each host itself and the connection is then opened to exactly the
addresses it vetted (TLS still verifies the host name), so a DNS answer that changes between
the check and the connect (DNS rebinding) cannot redirect a request to an internal address.
"""

from __future__ import annotations

import http.client
import ipaddress
import random
import socket
import ssl
import threading
import time
import urllib.robotparser
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from curation.config import FetchConfig
from curation.records import Candidate, Rejection
from storage.uri import open_fs

_REDIRECTS = (301, 302, 303, 307, 308)
_DNS_TTL_S = 300.0
_ROBOTS_MAX_BYTES = 512 * 1024
# X-Robots-Tag directives written "name: value"; any other "name:" prefix names a crawler.
_VALUED_DIRECTIVES = {"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after"}


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


def x_robots_blocked(values: list[str], blocked: set[str], user_agent: str) -> str | None:
    """The first blocking X-Robots-Tag directive that applies to us, or None.

    A value may be scoped to one crawler (``googlebot: noindex, noai``); a scoped value applies
    only if that crawler name appears in our User-Agent.
    """
    agent = user_agent.lower()
    for value in values:
        tokens = [t.strip().lower() for t in value.split(",") if t.strip()]
        if tokens and ":" in tokens[0]:
            scope, first = (part.strip() for part in tokens[0].split(":", 1))
            if scope not in blocked and scope not in _VALUED_DIRECTIVES:  # a crawler's name
                if scope not in agent:
                    continue
                tokens[0] = first
        for token in tokens:
            if token in blocked:
                return token
    return None


class AddressGuard:
    """SSRF guard: only http(s), and only to globally routable addresses unless allowed."""

    def __init__(self, block_private: bool = True, allow_hosts: list[str] | None = None) -> None:
        self.block_private = block_private
        self.allowed_names: set[str] = set()
        self.allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow_hosts or []:
            try:
                self.allowed_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.allowed_names.add(entry.lower().rstrip("."))
        self._dns: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def check(self, url: str) -> list[str] | None:
        """Raise a Rejection for a URL we must not fetch; else the vetted addresses to connect
        to (None: the host is allow-listed by name or the guard is off; resolve normally)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise Rejection("fetch", "invalid_url", f"{exc}") from None
        if parts.scheme not in ("http", "https"):
            raise Rejection("fetch", "bad_scheme", f"scheme {parts.scheme or 'none'!r}")
        if not host:
            raise Rejection("fetch", "invalid_url", "no host")
        if not self.block_private or host.lower().rstrip(".") in self.allowed_names:
            return None
        addresses = self._resolve(host, port)
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if any(ip in net for net in self.allowed_networks):
                continue
            if not ip.is_global or ip.is_multicast:
                raise Rejection("fetch", "blocked_address", f"{host} resolves to {ip}")
        return addresses

    def _resolve(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        now = time.monotonic()
        with self._lock:
            cached = self._dns.get(host)
        if cached and cached[0] > now:
            return cached[1]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Rejection("fetch", "dns_error", f"{host}: {exc}") from None
        addresses = sorted({info[4][0] for info in infos})
        with self._lock:
            if len(self._dns) > 100_000:
                self._dns.clear()
            self._dns[host] = (now + _DNS_TTL_S, addresses)
        return addresses


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


class _HTTPConnection(http.client.HTTPConnection):
    """Connect under the connect timeout, then read under the (longer) read timeout."""

    read_timeout: float = 20.0

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    read_timeout: float = 20.0

    def connect(self) -> None:
        super().connect()  # TCP and TLS handshake under the connect timeout
        self.sock.settimeout(self.read_timeout)


_Key = tuple[str, str, int]


class _ConnectionPool:
    """Idle keep-alive connections, shared by the threads: a thread takes one out for a request
    (``http.client`` connections are not thread-safe) and puts it back when the response is
    fully read. At most ``idle_per_host`` idle connections are kept per host."""

    def __init__(self, connect_timeout: float, read_timeout: float, idle_per_host: int) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_per_host = idle_per_host
        self._tls = ssl.create_default_context()
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def get(
        self, key: _Key, addresses: list[str] | None, fresh: bool = False
    ) -> tuple[http.client.HTTPConnection, bool]:
        """(connection, reused): an idle kept-alive one (unless ``fresh``), or a new one (not
        yet connected) that will connect only to ``addresses`` when given (the SSRF guard's
        vetted answer)."""
        with self._lock:
            idle = self._idle.get(key)
            if idle and not fresh:
                return idle.pop(), True
        scheme, host, port = key
        if scheme == "https":
            conn: http.client.HTTPConnection = _HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=self._tls
            )
        else:
            conn = _HTTPConnection(host, port, timeout=self.connect_timeout)
        conn.read_timeout = self.read_timeout  # type: ignore[attr-defined]
        if addresses:
            # http.client opens its socket through this attribute (HTTP and HTTPS alike).
            conn._create_connection = _pinned_connect(addresses)  # type: ignore[attr-defined]
        return conn, False

    def put(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.idle_per_host:
                idle.append(conn)
                return
        conn.close()

    @staticmethod
    def discard(conn: http.client.HTTPConnection) -> None:
        conn.close()

    def drop_idle(self, key: _Key) -> None:
        """Close a host's idle connections: when one turned out closed by the server, the
        others, idle as long, usually are too."""
        with self._lock:
            idle = self._idle.pop(key, [])
        for conn in idle:
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _pinned_connect(addresses: list[str]) -> Any:
    def connect(address: tuple[str, int], timeout: float, source: Any = None) -> socket.socket:
        error: OSError | None = None
        for ip in addresses:  # the first that accepts, like socket.create_connection
            try:
                return socket.create_connection((ip, address[1]), timeout, source)
            except OSError as exc:
                error = exc
        raise error or OSError(f"no address to connect to for {address[0]}")

    return connect


def _request_target(url: str) -> tuple[_Key, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return (parts.scheme, parts.hostname or "", port), target


class Fetcher:
    """Thread-safe fetcher; one per worker process, shared by its threads. Use as a context
    manager (or call :meth:`close`) to release connections."""

    def __init__(self, config: FetchConfig | None = None) -> None:
        self.config = config or FetchConfig()
        cfg = self.config
        self.guard = AddressGuard(cfg.block_private_addresses, cfg.allow_hosts)
        self._blocked_directives = {d.lower() for d in cfg.x_robots_block}
        self._pool = _ConnectionPool(cfg.connect_timeout_s, cfg.read_timeout_s, cfg.per_host_limit)
        self._headers = {
            "User-Agent": cfg.user_agent,
            "Accept": "image/avif,image/webp,image/*;q=0.9,*/*;q=0.5",
            "Accept-Encoding": "identity",  # bytes as stored; no decompression bombs
        }
        self._host_slots: dict[str, threading.BoundedSemaphore] = {}
        self._robots: OrderedDict[str, urllib.robotparser.RobotFileParser | None] = OrderedDict()
        self._lock = threading.Lock()
        self._robots_locks: dict[str, threading.Lock] = {}

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
        return self.fetch_url(candidate.url)

    def fetch_url(self, url: str) -> Fetched:
        cfg = self.config
        started = time.monotonic()
        last: _Retryable | None = None
        for attempt in range(cfg.retries + 1):
            if last is not None:
                wait = last.retry_after
                if wait is None:
                    ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempt)
                    wait = random.uniform(0.0, ceiling)
                elif wait > cfg.max_retry_after_s:
                    raise Rejection(
                        "fetch", last.reason, f"Retry-After {wait:.0f} s exceeds the limit"
                    )
                time.sleep(wait)
            try:
                fetched = self._attempt(url, cfg.max_body_bytes, is_image=True)
            except _Retryable as exc:
                last = exc
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
        raise Rejection("fetch", last.reason, f"{last.detail} (after {cfg.retries + 1} attempts)")

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

    # -- one attempt: redirects, guard, headers, body -------------------------------------------

    def _attempt(self, url: str, cap: int, is_image: bool) -> Fetched:
        cfg = self.config
        deadline = time.monotonic() + cfg.total_timeout_s
        for _hop in range(cfg.max_redirects + 1):
            addresses = self.guard.check(url)
            if is_image and cfg.respect_robots_txt:
                self._check_robots(url)
            with self._host_slot(url):
                outcome = self._exchange(url, addresses, deadline, cap, is_image)
            if isinstance(outcome, Fetched):
                return outcome
            url = outcome  # a redirect: check the next hop like the first
        raise Rejection("fetch", "too_many_redirects", f"more than {cfg.max_redirects}, at {url}")

    def _exchange(
        self, url: str, addresses: list[str] | None, deadline: float, cap: int, is_image: bool
    ) -> Fetched | str:
        """One request/response on a pooled connection: the body, or a redirect's target."""
        try:
            key, target = _request_target(url)
        except ValueError as exc:
            raise Rejection("fetch", "invalid_url", str(exc)) from None
        conn, reused = self._pool.get(key, addresses)
        keep = False
        try:
            try:
                conn.request("GET", target, headers=self._headers)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                # A kept-alive connection the server had closed meanwhile: retry on a new one
                # (not the next idle one, likely closed as well), and drop the host's others.
                self._pool.discard(conn)
                self._pool.drop_idle(key)
                conn, reused = self._pool.get(key, addresses, fresh=True)
                conn.request("GET", target, headers=self._headers)
                response = conn.getresponse()
            location = response.getheader("location")
            if response.status in _REDIRECTS and location:
                return urljoin(url, location)
            fetched = self._read(url, response, deadline, cap, is_image)
            keep = not response.will_close
            return fetched
        except TimeoutError:
            raise _Retryable("timeout", "no data within the read timeout") from None
        except socket.gaierror as exc:
            raise Rejection("fetch", "dns_error", f"{key[1]}: {exc}") from None
        except ssl.SSLError as exc:
            raise Rejection("fetch", "tls_error", str(exc)) from None
        except (http.client.InvalidURL, UnicodeError) as exc:
            raise Rejection("fetch", "invalid_url", str(exc)) from None
        except (http.client.HTTPException, OSError) as exc:  # refused, reset, incomplete body
            raise Rejection("fetch", "connection_error", f"{type(exc).__name__}: {exc}") from None
        finally:
            if keep:
                self._pool.put(key, conn)
            else:
                self._pool.discard(conn)

    def _read(
        self,
        url: str,
        response: http.client.HTTPResponse,
        deadline: float,
        cap: int,
        is_image: bool,
    ) -> Fetched:
        status = response.status
        if status == 429 or 500 <= status < 600:
            retry_after = parse_retry_after(response.getheader("retry-after"))
            raise _Retryable(f"http_{status}", f"HTTP {status}", retry_after)
        if status != 200:
            raise Rejection("fetch", f"http_{status}", f"HTTP {status}")
        if is_image and self.config.respect_x_robots_tag:
            directive = x_robots_blocked(
                response.headers.get_all("x-robots-tag") or [],
                self._blocked_directives,
                self.config.user_agent,
            )
            if directive:
                raise Rejection("fetch", "x_robots_tag", f"X-Robots-Tag: {directive}")
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
            if time.monotonic() > deadline:
                raise _Retryable("timeout", f"body not complete in {self.config.total_timeout_s} s")
        data = b"".join(chunks)
        if is_image and sniffed is None:
            sniffed = sniff_image_type(data[:32])
            if sniffed is None:
                raise Rejection("fetch", "not_an_image", self._not_image_detail(data, response))
        return Fetched(data, url, sniffed or "", response.getheader("content-type"), status)

    @staticmethod
    def _not_image_detail(head: bytes, response: Any) -> str:
        declared = response.getheader("content-type") or "no Content-Type"
        return f"bytes are {_describe(head)} (declared {declared})"

    @contextmanager
    def _host_slot(self, url: str) -> Iterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            slot = self._host_slots.get(host)
            if slot is None:
                slot = self._host_slots[host] = threading.BoundedSemaphore(
                    self.config.per_host_limit
                )
        with slot:
            yield

    # -- robots.txt -----------------------------------------------------------------------------

    def _check_robots(self, url: str) -> None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:  # one fetch of robots.txt per host, however many threads ask
            with self._lock:
                known = origin in self._robots
                parser = self._robots.get(origin)
                if known:
                    self._robots.move_to_end(origin)
            if not known:
                parser = self._load_robots(origin)
                with self._lock:
                    self._robots[origin] = parser
                    while len(self._robots) > self.config.robots_cache_size:
                        evicted, _ = self._robots.popitem(last=False)
                        self._robots_locks.pop(evicted, None)
        if parser is None:
            raise Rejection("fetch", "robots_txt", f"{origin}/robots.txt unavailable (5xx/error)")
        if not parser.can_fetch(self.config.user_agent, url):
            raise Rejection("fetch", "robots_txt", f"disallowed by {origin}/robots.txt")

    def _load_robots(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        """RFC 9309: 4xx means no rules; 5xx or unreachable means disallow all (None)."""
        parser = urllib.robotparser.RobotFileParser()
        try:
            body = self._attempt(f"{origin}/robots.txt", _ROBOTS_MAX_BYTES, is_image=False).data
        except Rejection as rejection:
            if rejection.reason.startswith("http_4"):
                parser.parse([])
                return parser
            return None
        except _Retryable:
            return None
        parser.parse(body.decode("utf-8", "replace").splitlines())
        return parser
