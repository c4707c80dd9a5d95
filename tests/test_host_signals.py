"""Retry-After pauses and open breakers reach the build's other processes (issue 16: "applied
to the whole host across threads and Dask workers"): through curation.host_signals, between
two policies, and between two real processes fetching from one real server."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from curation.config import FetchConfig
from curation.fetch import Fetcher, host_policy_for
from curation.host_policy import HostPolicy
from curation.host_signals import HostSignals
from curation.records import Rejection
from tests import curation_images as images
from tests.http_fixtures import (
    FaultServer,
    body,
    fail_then,
    http_server_fixture,  # noqa: F401 (registers the http_server fixture)
    status,
)

FETCH = FetchConfig(
    threads=4,
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
    total_timeout_s=20.0,
    retries=2,
    backoff_base_s=0.02,
    max_retry_after_s=10.0,
    allow_hosts=["127.0.0.1"],
    respect_robots_txt=False,
)


def _policy(folder: Path, poll_s: float = 0.05) -> HostPolicy:
    policy = HostPolicy(concurrency=4, rate=None, failure_limit=2, max_queue_s=30.0)
    policy.share(HostSignals(str(folder), poll_s=poll_s))
    return policy


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_pause_in_one_policy_holds_the_others_turns(tmp_path):
    here, there = _policy(tmp_path), _policy(tmp_path)
    try:
        here.pause("busy.example", 1.0)
        time.sleep(0.3)  # several polls
        started = time.monotonic()
        with there.turn("busy.example", None):
            waited = time.monotonic() - started
        assert 0.5 <= waited <= 1.0, waited
        with there.turn("calm.example", None):  # other hosts are not held
            pass
        assert time.monotonic() - started - waited < 0.2
    finally:
        here.close()
        there.close()


def test_an_open_breaker_is_seen_by_the_other_policies(tmp_path):
    here, there = _policy(tmp_path), _policy(tmp_path)
    try:
        here.record("down.example", "timeout")
        here.record("down.example", "timeout")  # failure_limit 2: the breaker opens
        with pytest.raises(Rejection, match="2 consecutive failures") as raised:
            here.check("down.example")
        assert raised.value.reason == "host_unresponsive"

        def open_there() -> bool:
            try:
                there.check("down.example")
            except Rejection as rejection:
                assert rejection.reason == "host_unresponsive"
                assert "seen by another worker" in rejection.detail
                return True
            return False

        _wait_until(open_there)
        there.check("up.example")  # only that host
    finally:
        here.close()
        there.close()


def test_signals_are_applied_once_and_junk_is_ignored(tmp_path):
    signals = HostSignals(str(tmp_path), poll_s=1.0)
    (tmp_path / "pause-notjson.json").write_text("{ half a file")
    (tmp_path / "unrelated.txt").write_text("hello")
    other = HostSignals(str(tmp_path), poll_s=1.0)
    other.publish_pause("a.example", 5.0)
    other.publish_trip("b.example", "3 consecutive failures, the last: HTTP 503")
    first = signals.poll()
    assert sorted((s["kind"], s["host"]) for s in first) == [
        ("pause", "a.example"),
        ("trip", "b.example"),
    ]
    assert signals.poll() == []  # nothing new
    assert other.poll() == []  # its own signals are not news to the writer
    other.publish_pause("a.example", 9.0)  # a later Retry-After replaces the earlier one
    [again] = signals.poll()
    assert again["host"] == "a.example" and again["until_epoch"] > first[0]["until_epoch"]
    with pytest.raises(ValueError, match="poll_s"):
        HostSignals(str(tmp_path), poll_s=0)


# -- two real processes, one real server ---------------------------------------------------------


def _worker(folder: str, urls: list[str], ready, go, results) -> None:
    """A build worker of its own: a Fetcher whose policy shares signals through ``folder``."""
    policy = host_policy_for(FETCH)
    policy.share(HostSignals(folder, poll_s=0.1))
    with Fetcher(FETCH, hosts=policy) as fetcher:
        ready.set()
        go.wait(60)
        outcomes = []
        for url in urls:
            try:
                outcomes.append(fetcher.fetch_url(url).attempts)
            except Rejection as rejection:
                outcomes.append(rejection.reason)
        results.put(outcomes)
    policy.close()


def test_retry_after_holds_the_host_for_another_process(http_server: FaultServer, tmp_path):
    photo = images.jpeg_bytes(images.photo_like(320, 240, seed=5))
    arrivals: list[tuple[float, str]] = []

    def log(route):
        def handler(h, hit: int) -> None:
            arrivals.append((time.monotonic(), h.path))
            route(h, hit)

        return handler

    busy = http_server.route(
        "/busy.jpg", log(fail_then(status(429, **{"Retry-After": "2"}), body(photo)))
    )
    others = [http_server.route(f"/o{i}.jpg", log(body(photo))) for i in range(4)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = [context.Event(), context.Event()]
    go = [context.Event(), context.Event()]
    workers = [
        context.Process(target=_worker, args=(str(tmp_path), u, r, g, results))
        for u, r, g in zip([[busy], others], ready, go, strict=True)
    ]
    for worker in workers:
        worker.start()
    try:
        for event in ready:
            assert event.wait(120), "a worker did not start"
        go[0].set()  # the first worker gets the 429
        _wait_until(lambda: any(path == "/busy.jpg" for _, path in arrivals), timeout=30)
        refused_at = arrivals[0][0]
        time.sleep(0.5)  # a few of the second worker's polls
        go[1].set()  # its URLs go to the same host during the pause
        outcomes = sorted([results.get(timeout=60), results.get(timeout=60)], key=len)
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
    assert outcomes == [[2], [1, 1, 1, 1]]  # the 429'd URL retried once, the others served
    later = [at - refused_at for at, path in arrivals if path != "/busy.jpg"]
    # without the shared pause they would arrive about 0.5 s after the refusal
    assert len(later) == 4 and min(later) >= 1.8, later
