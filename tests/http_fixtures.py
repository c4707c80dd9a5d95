"""A real HTTP server on 127.0.0.1 for fetch tests: routes serve bytes or misbehave on purpose.

``FaultServer`` is a ``ThreadingHTTPServer`` on an ephemeral port. A route is a function of the
request handler and the route's hit count (1 for the first request), so a route can fail first
and succeed later. Helpers build the usual faults: status codes, ``Retry-After``, stalled and
reset bodies, redirects, oversized bodies with and without ``Content-Length``.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

Route = Callable[[BaseHTTPRequestHandler, int], None]


def send(
    handler: BaseHTTPRequestHandler,
    body: bytes,
    status: int = 200,
    content_type: str = "image/jpeg",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def body(data: bytes, content_type: str = "image/jpeg", **headers: str) -> Route:
    return lambda h, hit: send(h, data, 200, content_type, headers)


def status(code: int, **headers: str) -> Route:
    return lambda h, hit: send(h, f"status {code}".encode(), code, "text/plain", headers)


def fail_then(first: Route, then: Route, failures: int = 1) -> Route:
    """``first`` for the first ``failures`` hits, ``then`` afterwards."""
    return lambda h, hit: (first if hit <= failures else then)(h, hit)


def redirect(location: str, code: int = 302) -> Route:
    return lambda h, hit: send(h, b"", code, "text/plain", {"Location": location})


def _send_head(handler: BaseHTTPRequestHandler, head: bytes, declared: int) -> None:
    """Headers for a ``declared``-byte JPEG body, then only its first bytes, ``head``."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(declared))
    handler.end_headers()
    handler.wfile.write(head)
    handler.wfile.flush()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients in these tests abort connections on purpose (oversized bodies, timeouts).
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FaultServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.stop_event = threading.Event()  # releases stalled handlers at shutdown
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.hits[path] += 1
                    hit = server.hits[path]
                route = server.routes.get(path)
                try:
                    if route is None:
                        send(self, b"not found", 404, "text/plain")
                    else:
                        route(self, hit)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up, as it should

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def route(self, path: str, handler: Route) -> str:
        self.routes[path] = handler
        return self.url(path)

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- misbehaving routes that need the server's state ---------------------------------------

    def trickle_headers(self) -> Route:
        """A status line, then header bytes one every 0.1 s until the server stops: no read
        timeout ever fires, only a deadline over the whole exchange ends it."""

        def handler(h: BaseHTTPRequestHandler, hit: int) -> None:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.stop_event.wait(0.1):
                h.wfile.write(b"z")
                h.wfile.flush()
            h.close_connection = True

        return handler

    def stall(self, head: bytes, declared: int, seconds: float = 5.0) -> Route:
        """Send headers and ``head``, then go silent (past any sane read timeout)."""

        def handler(h: BaseHTTPRequestHandler, hit: int) -> None:
            _send_head(h, head, declared)
            self.stop_event.wait(seconds)
            h.close_connection = True

        return handler

    def reset_after(self, head: bytes, declared: int) -> Route:
        """Send ``head`` of a ``declared``-byte body, then abort the TCP connection (RST)."""

        def handler(h: BaseHTTPRequestHandler, hit: int) -> None:
            _send_head(h, head, declared)
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True

        return handler

    def endless(self, prefix: bytes, total: int, content_length: bool) -> Route:
        """A ``total``-byte body (``prefix`` then zeros) streamed in 64 KiB chunks, with or
        without Content-Length (then close-delimited). Counts what it managed to send."""
        chunk = b"\0" * 65536

        def handler(h: BaseHTTPRequestHandler, hit: int) -> None:
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            if content_length:
                h.send_header("Content-Length", str(total))
            else:
                h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(prefix)
            sent = len(prefix)
            while sent < total and not self.stop_event.is_set():
                piece = chunk[: total - sent]
                h.wfile.write(piece)
                sent += len(piece)
                with self._lock:
                    self.bytes_sent[h.path] = sent
            h.close_connection = True

        return handler


@pytest.fixture(name="http_server")
def http_server_fixture() -> Iterator[FaultServer]:
    """A started :class:`FaultServer`; import this name into a test module to use it."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


def assert_no_secret_in_files(root: Path, secrets: list[bytes]) -> None:
    """No byte string of ``secrets`` in any file under ``root`` (and there are files)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"{secret!r} in {path}"
