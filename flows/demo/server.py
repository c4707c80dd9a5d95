"""A small web server on 127.0.0.1 that serves a demo source over real HTTP.

The builder fetches URL lists over HTTP; to show that path end to end without the internet,
``mird demo`` serves its candidates from memory (or a folder) on an ephemeral local port and
hands the builder a URL list. Loopback addresses are refused by the fetcher's SSRF guard unless
allow-listed, so a build of this source sets ``curation.fetch.allow_hosts: ["127.0.0.1"]``.

A name mapped to None, and any path not served, answers 404; ``/robots.txt`` allows everything.
The server speaks HTTP/1.1 with keep-alive (as the fetcher's connection pool expects), and
:meth:`DemoServer.close` closes the connections still open so that no thread outlives it.

Example::

    with DemoServer(files) as server:
        urls = write_url_list(server, folder / "urls.txt")
"""

from __future__ import annotations

import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

from storage.atomic import atomic_write_bytes

CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
    "avif": "image/avif",
    "txt": "text/plain; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
ROBOTS_TXT = b"User-agent: *\nAllow: /\n"


def content_type(name: str) -> str:
    """Content-Type from the file name, as a static web server declares it (from the name,
    not the bytes: a broken file named .jpg is still declared image/jpeg)."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return CONTENT_TYPES.get(extension, "application/octet-stream")


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined in server_close: nothing outlives close()
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: DemoServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        # Registered here, on the serving thread, so that close() (after shutdown() has
        # stopped this loop) knows every connection a handler thread may still be reading.
        self.owner.opened(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        self.owner.closed(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError) or (
            self.owner.closing and isinstance(error, OSError)
        ):
            return  # a client that hung up, or a connection close() cut: nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers and the fetcher's pool use
    # No idle timeout: a kept-alive connection stays open until the client closes it or
    # close() cuts it. (Real servers drop idle ones after 5-75 s; the fetcher's retry of a
    # stale pooled connection can pick another stale one, so a demo server that also drops
    # them made a 300-candidate build report connection_error for 2 good candidates.)
    timeout = None
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base's name)
        pass  # the demo prints its own summary; a line per request would drown it

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        if path == "/robots.txt":
            data: bytes | None = ROBOTS_TXT
            kind = "text/plain; charset=utf-8"
        else:
            data = owner.files.get(path.lstrip("/"))
            kind = content_type(path)
        owner.count(path, 200 if data is not None else 404)
        status = 200
        if data is None:
            status, data, kind = 404, b"404 not found\n", "text/plain; charset=utf-8"
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if send_body:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer


class DemoServer:
    """Serve ``files`` (name -> bytes, or None for a 404) at ``http://127.0.0.1:<port>/<name>``.

    Use as a context manager, or call :meth:`start` and :meth:`close`. ``hits`` counts the
    requests per path and status, e.g. ``hits[("/photo-0001.jpg", 200)]``.
    """

    def __init__(self, files: Mapping[str, bytes | None], host: str = "127.0.0.1") -> None:
        for name in files:
            if not name or name.startswith("/") or name != name.strip():
                raise ValueError(f"demo server: bad file name {name!r}")
        self.files: dict[str, bytes | None] = dict(files)
        self.hits: Counter[tuple[str, int]] = Counter()
        self.closing = False
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = _Server((host, 0), self)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"demo-server-{self.port}", daemon=True
        )

    @classmethod
    def from_folder(cls, folder: Path, host: str = "127.0.0.1") -> DemoServer:
        """Serve every file directly in ``folder`` (names not there answer 404)."""
        if not folder.is_dir():
            raise FileNotFoundError(f"demo server: no such folder {folder}")
        return cls({p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}, host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, name: str) -> str:
        return f"{self.url}/{quote(name)}"

    def start(self) -> DemoServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close open keep-alive connections, join every thread."""
        if self.closing:
            return
        self.closing = True
        if self._thread.is_alive():
            self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # a handler waiting for the next request wakes up
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        self._httpd.server_close()  # joins the handler threads (block_on_close)
        if self._thread.ident is not None:  # started
            self._thread.join()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- called by the handler threads

    def opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def count(self, path: str, status: int) -> None:
        with self._lock:
            self.hits[(path, status)] += 1


def write_url_list(
    server: DemoServer, path: Path, names: Iterable[str] | None = None
) -> dict[str, str]:
    """Write the URLs of ``names`` (default: every file served, 404s included) to ``path``,
    one per line (a ``.txt`` URL list, which ``curation.sources`` reads); returns name -> URL."""
    if path.suffix != ".txt":
        raise ValueError(f"{path}: the URL list is written as text, name it *.txt")
    urls = {name: server.url_for(name) for name in (server.files if names is None else names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(str(path), "".join(f"{url}\n" for url in urls.values()).encode())
    return urls
