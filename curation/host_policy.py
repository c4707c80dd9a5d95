"""Per-host politeness and health: request rate, concurrency, Retry-After, a circuit breaker.

One :class:`HostPolicy` is shared by every thread of a fetcher and, during a build, by every
partition of that build running in the process (:func:`shared_policy`), so that a limit or a
pause learnt from one request applies to the whole host:

- **turns**: a request to a host waits for its turn: at most ``concurrency`` requests at once,
  and one request every ``interval`` seconds (``1 / per_host_rate``, or robots.txt's
  ``Crawl-delay`` when longer). A ``Retry-After`` on a 429 or 503 pauses the whole host.
  A URL that waits longer than ``max_queue_s`` for its first turn is rejected as
  ``host_rate_limited`` (transient: the next build tries again), so a host with a long
  Crawl-delay cannot hold a partition for hours;
- **breaker**: after ``failure_limit`` consecutive failed exchanges with a host (timeouts,
  connection failures, 5xx, 429), the host is taken as unresponsive for the rest of the build:
  its requests in flight are cut, and every URL of it still queued or to come is rejected at
  once as ``host_unresponsive`` (transient). Any answer that is not a failure resets the
  count.

Waits are on a condition variable, so a tripped breaker wakes every waiting thread at once.

With :meth:`HostPolicy.share` (a build does it), pauses and trips also go to the build's other
processes, e.g. Dask workers, and theirs come here (:mod:`curation.host_signals`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from curation.host_signals import HostSignals
from curation.records import Rejection
from curation.robots import RobotsRules

log = logging.getLogger(__name__)

_SHARED_BUILDS = 4  # policies of this many builds kept per process


@dataclass
class _Host:
    cond: threading.Condition = field(default_factory=threading.Condition)
    active: int = 0
    next_at: float = 0.0  # monotonic time of the next allowed request
    paused_until: float = 0.0  # Retry-After
    crawl_delay: float = 0.0
    failures: int = 0  # consecutive
    tripped: str | None = None  # why the breaker opened
    in_flight: dict[int, Callable[[], None]] = field(default_factory=dict)  # id -> abort


class HostPolicy:
    """Turns, pauses and the breaker of every host one fetcher (or one build) talks to."""

    def __init__(
        self,
        *,
        concurrency: int,
        rate: float | None,
        failure_limit: int,
        max_queue_s: float,
        exempt: Callable[[str], bool] = lambda host: False,
    ) -> None:
        self.concurrency = concurrency
        self.interval = 1.0 / rate if rate else 0.0
        self.failure_limit = failure_limit
        self.max_queue_s = max_queue_s
        self.exempt = exempt  # hosts without a rate limit (Crawl-delay and pauses still apply)
        self.robots = RobotsCache()
        self.tdmrep = RobotsCache()  # /.well-known/tdmrep.json per origin, cached alike
        self._hosts: dict[str, _Host] = {}
        self._exempt_cache: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._signals: HostSignals | None = None
        self._closed = threading.Event()

    # -- sharing with the build's other processes ---------------------------------------------

    def share(self, signals: HostSignals) -> None:
        """Publish this policy's pauses and trips through ``signals`` and apply the others'
        (a daemon thread polls every ``signals.poll_s`` seconds until :meth:`close`)."""
        if self._signals is not None:
            return
        self._signals = signals
        thread = threading.Thread(
            target=_follow, args=(weakref.ref(self), signals, self._closed), daemon=True
        )
        thread.name = "mird-host-signals"
        thread.start()

    def close(self) -> None:
        """Stop following the other processes' signals."""
        self._closed.set()

    def apply(self, signal: dict) -> None:
        """Apply a signal from another process (see :mod:`curation.host_signals`)."""
        host = signal["host"]
        if signal["kind"] == "pause":
            seconds = float(signal["until_epoch"]) - time.time()
            if seconds > 0:
                self.pause(host, seconds, publish=False)
        elif signal["kind"] == "trip":
            self._trip(host, f"{signal.get('reason', 'unresponsive')} (seen by another worker)")

    def _host(self, host: str) -> _Host:
        with self._lock:
            state = self._hosts.get(host)
            if state is None:
                state = self._hosts[host] = _Host()
            return state

    def _interval(self, host: str, state: _Host) -> float:
        exempt = self._exempt_cache.get(host)
        if exempt is None:
            exempt = self._exempt_cache[host] = bool(self.exempt(host))
        return max(0.0 if exempt else self.interval, state.crawl_delay)

    def check(self, host: str) -> None:
        """Raise ``host_unresponsive`` if the breaker of ``host`` is open."""
        reason = self._host(host).tripped
        if reason is not None:
            raise Rejection("fetch", "host_unresponsive", f"{host}: {reason}")

    @contextmanager
    def turn(self, host: str, deadline: float | None) -> Iterator[None]:
        """Hold one of the host's request slots, at its rate. ``deadline`` (monotonic): the
        URL's own deadline once its first request has started, else None (the first wait is
        bounded by ``max_queue_s`` instead)."""
        state = self._host(host)
        queued_until = time.monotonic() + self.max_queue_s
        with state.cond:
            while True:
                if state.tripped is not None:
                    raise Rejection("fetch", "host_unresponsive", f"{host}: {state.tripped}")
                now = time.monotonic()
                start = max(state.next_at, state.paused_until)
                if state.active < self.concurrency and now >= start:
                    state.active += 1
                    state.next_at = now + self._interval(host, state)
                    break
                limit = deadline if deadline is not None else queued_until
                if max(start, now) >= limit:
                    if deadline is not None:
                        raise Rejection(
                            "fetch", "timeout", "URL deadline reached waiting for the host"
                        )
                    raise Rejection(
                        "fetch",
                        "host_rate_limited",
                        f"{host}: no turn within {self.max_queue_s:.0f} s (rate, Crawl-delay, "
                        "Retry-After)",
                    )
                state.cond.wait(min(start, limit) - now if now < start else limit - now)
        try:
            yield
        finally:
            with state.cond:
                state.active -= 1
                state.cond.notify()

    @contextmanager
    def watch(self, host: str, abort: Callable[[], None]) -> Iterator[None]:
        """Run a request that ``abort`` cuts if the host's breaker opens meanwhile (so the
        requests in flight end with it, not at their own deadlines)."""
        state = self._host(host)
        key = id(abort)
        with state.cond:
            state.in_flight[key] = abort
        try:
            yield
        finally:
            with state.cond:
                state.in_flight.pop(key, None)

    def pause(self, host: str, seconds: float, publish: bool = True) -> None:
        """A Retry-After: no request to ``host`` from anyone for ``seconds``."""
        state = self._host(host)
        with state.cond:
            state.paused_until = max(state.paused_until, time.monotonic() + seconds)
        if publish and self._signals is not None:
            self._signals.publish_pause(host, seconds)

    def set_crawl_delay(self, host: str, seconds: float | None) -> None:
        if seconds:
            state = self._host(host)
            with state.cond:
                state.crawl_delay = max(state.crawl_delay, seconds)

    def record(self, host: str, failure: str | None) -> None:
        """One exchange's outcome: ``failure`` (what failed) or None (the host answered)."""
        state = self._host(host)
        with state.cond:
            if failure is None:
                state.failures = 0
                return
            state.failures += 1
            if state.tripped is not None or state.failures < self.failure_limit:
                return
            reason = f"{state.failures} consecutive failures, the last: {failure}"
        if self._trip(host, reason) and self._signals is not None:
            self._signals.publish_trip(host, reason)

    def _trip(self, host: str, reason: str) -> bool:
        """Open ``host``'s breaker: wake its waiters, cut its requests in flight. False if it
        was open already."""
        state = self._host(host)
        with state.cond:
            if state.tripped is not None:
                return False
            state.tripped = reason
            state.cond.notify_all()
            aborts = list(state.in_flight.values())
        for abort in aborts:
            abort()
        return True


class RobotsCache:
    """robots.txt rules per origin (None: unavailable, everything disallowed), LRU-bounded;
    one fetch per origin however many threads ask at once."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._rules: OrderedDict[str, RobotsRules | None] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, origin: str, load: Callable[[], RobotsRules | None]) -> RobotsRules | None:
        with self._lock:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            with self._lock:
                if origin in self._rules:
                    self._rules.move_to_end(origin)
                    return self._rules[origin]
            rules = load()
            with self._lock:
                self._rules[origin] = rules
                while len(self._rules) > self.size:
                    evicted, _ = self._rules.popitem(last=False)
                    self._locks.pop(evicted, None)
            return rules


def _follow(policy_ref: weakref.ref, signals: HostSignals, closed: threading.Event) -> None:
    """Apply the other processes' signals to the policy until it is closed or collected."""
    while not closed.wait(signals.poll_s):
        policy = policy_ref()
        if policy is None:
            return
        try:
            for signal in signals.poll():
                policy.apply(signal)
        except Exception:  # a flaky listing must not end the following; the next poll retries
            log.debug("reading host signals under %s failed", signals.uri, exc_info=True)
        del policy


_shared: OrderedDict[str, HostPolicy] = OrderedDict()
_shared_lock = threading.Lock()


def shared_policy(key: str, make: Callable[[], HostPolicy]) -> HostPolicy:
    """The policy for ``key`` (a build id) in this process, made on first use: the partitions
    of one build share their hosts' turns, pauses, breakers and robots.txt."""
    with _shared_lock:
        policy = _shared.get(key)
        if policy is None:
            policy = _shared[key] = make()
            while len(_shared) > _SHARED_BUILDS:
                _shared.popitem(last=False)[1].close()
        _shared.move_to_end(key)
        return policy
