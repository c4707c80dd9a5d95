"""The SSRF guard: only http(s), and only to globally routable addresses unless allowed.

The guard resolves each host itself and the connection is then opened to exactly the
addresses it vetted (TLS still verifies the host name), so a DNS answer that changes between
the check and the connect (DNS rebinding) cannot redirect a request to an internal address.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from urllib.parse import urlsplit

from curation.records import Rejection

_DNS_TTL_S = 300.0


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

    def allow_listed(self, host: str) -> bool:
        """True when ``host`` is one of ``allow_hosts``: named there, or every address it
        resolves to in an allowed network (a server the user runs, or vouches for)."""
        name = host.lower().rstrip(".")
        if name in self.allowed_names:
            return True
        if not self.allowed_networks:
            return False
        try:
            addresses = self._resolve(host, 80)
        except Rejection:
            return False
        return all(
            any(ipaddress.ip_address(a.split("%", 1)[0]) in net for net in self.allowed_networks)
            for a in addresses
        )
