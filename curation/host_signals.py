"""What one process of a build learnt about a host, told to the build's other processes.

Within a process the build's partitions share one :class:`curation.host_policy.HostPolicy`.
On a Dask cluster each worker is its own process, with its own policy: without this module a
``Retry-After`` received by one worker would pause the host for that worker only, and a host
whose breaker opened on one worker would keep being asked by the others.

The signals are small JSON files in the build area (``_hosts/``), which every worker of a
build can already reach (it writes its partitions there): one file per host and kind, written
atomically, holding the latest value: ``pause`` (a wall-clock time until which nobody asks the
host) and ``trip`` (why its breaker opened). Each process polls the folder every ``poll_s``
seconds (default 1 s) and applies what changed. Files are few (one per host that answered 429
or 503 with Retry-After, or stopped answering), so a poll is one listing and, now and then, a
read. What this costs in accuracy: a pause reaches the other workers up to ``poll_s`` late,
plus the clock skew between machines (Retry-After's own unit is whole seconds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from storage.atomic import atomic_write_json
from storage.uri import join, open_fs

log = logging.getLogger(__name__)

KINDS = ("pause", "trip")


def _file_name(kind: str, host: str) -> str:
    # a host name is safe in a path almost always; a digest makes it safe always (IDNs, ports)
    digest = hashlib.blake2b(host.encode("utf-8"), digest_size=8).hexdigest()
    return f"{kind}-{digest}.json"


class HostSignals:
    """Publish and follow host pauses and breaker trips under ``uri`` (a folder URI)."""

    def __init__(self, uri: str, poll_s: float = 1.0) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self.uri = uri
        self.poll_s = poll_s
        self._fs, self._path = open_fs(uri)
        self._fs.makedirs(self._path, exist_ok=True)  # a no-op on object stores
        self._seen: dict[str, Any] = {}  # file name -> the version of it already applied

    def publish_pause(self, host: str, seconds: float) -> None:
        """Nobody asks ``host`` for ``seconds`` from now (a Retry-After)."""
        self._publish("pause", host, {"until_epoch": time.time() + seconds})

    def publish_trip(self, host: str, reason: str) -> None:
        """``host``'s breaker opened (``reason``): its URLs are rejected for the build."""
        self._publish("trip", host, {"reason": reason})

    def _publish(self, kind: str, host: str, payload: dict[str, Any]) -> None:
        name = _file_name(kind, host)
        signal = {"kind": kind, "host": host, **payload}
        try:
            atomic_write_json(join(self.uri, name), signal)
        except OSError as exc:  # the others learn it the hard way; this process already knows
            log.warning("could not share a %s of %s with the build's workers: %s", kind, host, exc)
            return
        self._seen[name] = _version(signal)  # our own: not applied again when polled

    def poll(self) -> list[dict[str, Any]]:
        """Signals written (by anyone) since the last poll, oldest file first."""
        try:
            entries = self._fs.ls(self._path, detail=True)
        except FileNotFoundError:
            return []
        fresh: list[dict[str, Any]] = []
        for entry in sorted(entries, key=lambda e: str(e.get("name"))):
            name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") != "file" or not name.endswith(".json"):
                continue
            if not name.startswith(tuple(f"{kind}-" for kind in KINDS)):
                continue
            try:
                with self._fs.open(join(self._path, name), "rb") as handle:
                    signal = json.loads(handle.read())
            except (OSError, ValueError):
                continue  # being replaced right now, or not ours: the next poll reads it
            version = _version(signal)
            if self._seen.get(name) == version:
                continue
            self._seen[name] = version
            if signal.get("kind") in KINDS and isinstance(signal.get("host"), str):
                fresh.append(signal)
        return fresh


def _version(signal: dict[str, Any]) -> Any:
    return (signal.get("until_epoch"), signal.get("reason"))
