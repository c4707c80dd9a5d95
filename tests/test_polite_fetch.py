"""The crawler as web hosts see it, against real servers on 127.0.0.1: robots.txt (RFC 9309),
Crawl-delay, the per-host rate and Retry-After measured at the server, the opt-out headers,
one deadline per URL, the per-host breaker, and credentials that are used but never kept."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from curation.build import is_transient, run_build
from curation.config import BuildConfig, CurationConfig, FetchConfig, ProbeConfig
from curation.fetch import POLITENESS_REASONS, TDMREP_PATH, Fetcher
from curation.host_policy import HostPolicy
from curation.optout import parse_tdmrep
from curation.partition import run_partition
from curation.records import Candidate, Partition, Rejection
from curation.robots import parse_robots, product_token
from curation.sources import candidate_id
from curation.urls import redact_url, split_credentials
from flows.dashboard import build_dashboard, collect
from flows.demo.source import write_demo_source
from storage.versions import Dataset
from tests import curation_images as images
from tests.http_fixtures import (
    FaultServer,
    Route,
    assert_no_secret_in_files,
    body,
    fail_then,
    http_server_fixture,  # noqa: F401 (registers the http_server fixture)
    status,
)

FETCH = FetchConfig(
    threads=8,
    connect_timeout_s=2.0,
    read_timeout_s=0.4,
    total_timeout_s=5.0,
    retries=2,
    backoff_base_s=0.02,
    max_retry_after_s=5.0,
    allow_hosts=["127.0.0.1"],
)
AGENT = "million-ird/0.1 (dataset builder; contact: <unset>)"


@pytest.fixture(scope="module")
def photo() -> bytes:
    return images.jpeg_bytes(images.photo_like(640, 480, seed=3))


def _fetch_all(fetcher: Fetcher, urls: list[str], threads: int = 8) -> list[str]:
    """'ok' or the reject reason of each URL, fetched by ``threads`` threads at once."""

    def one(url: str) -> str:
        try:
            fetcher.fetch_url(url)
            return "ok"
        except Rejection as rejection:
            return rejection.reason

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, urls))


class _Clock:
    """Request arrival times at the server, per path (monotonic, same process)."""

    def __init__(self) -> None:
        self.times: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def wrap(self, route: Route) -> Route:
        def handler(h, hit: int) -> None:
            with self._lock:
                self.times.append((time.monotonic(), h.path))
            route(h, hit)

        return handler

    def images(self) -> list[float]:
        return sorted(t for t, path in self.times if path != "/robots.txt")


# -- robots.txt ---------------------------------------------------------------------------------


def test_robots_rules_follow_rfc_9309() -> None:
    text = (
        "User-agent: *\nDisallow: /\nAllow: /images/\nAllow: /*.jpg$\n\n"
        "User-agent: otherbot\nAllow: /\n"
    )
    rules = parse_robots(text, AGENT)
    assert rules.allowed("/images/a.png")  # longer Allow beats the shorter Disallow
    assert rules.allowed("/x/photo.jpg") and not rules.allowed("/x/photo.jpg?size=2")
    assert not rules.allowed("/private/a.png")
    assert rules.allowed("/robots.txt")
    ours = parse_robots("User-agent: Million-IRD\nDisallow: /a/\nCrawl-delay: 2\n" + text, AGENT)
    assert not ours.allowed("/a/b.jpg") and ours.allowed("/images/x") and ours.crawl_delay == 2.0
    tie = parse_robots("User-agent: *\nDisallow: /a\nAllow: /a\n", AGENT)
    assert tie.allowed("/a/b")  # same length: Allow wins
    assert parse_robots("User-agent: *\nDisallow:\n", AGENT).allowed("/x")
    assert product_token(AGENT) == "million-ird"


@pytest.mark.parametrize(
    ("robots", "expected"),
    [
        (body(b"User-agent: *\nDisallow: /private/\n", "text/plain"), ["ok", "robots_txt"]),
        (status(404), ["ok", "ok"]),  # 4xx: no rules
        (status(403), ["ok", "ok"]),
        (status(503), ["robots_txt_unavailable"] * 2),  # 5xx: everything disallowed
    ],
    ids=["rules", "404", "403", "503"],
)
def test_robots_txt_allow_deny_4xx_5xx(
    http_server: FaultServer, photo: bytes, robots: Route, expected: list[str]
) -> None:
    http_server.route("/robots.txt", robots)
    urls = [http_server.route(p, body(photo)) for p in ("/public/a.jpg", "/private/b.jpg")]
    with Fetcher(FETCH.model_copy(update={"retries": 0})) as fetcher:
        assert _fetch_all(fetcher, urls + urls) == expected + expected
    assert http_server.hits["/robots.txt"] == 1  # once per host and build, however many ask
    if expected[1] != "ok":
        assert http_server.hits["/private/b.jpg"] == 0


def assert_spaced(times: list[float], interval: float) -> None:
    """The server saw requests ``interval`` apart: on average within 5 %, and never two at
    once (each gap over half the interval). A single gap is the send spacing plus the jitter
    of two arrivals, which a loaded machine stretches by tens of milliseconds either way."""
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert (times[-1] - times[0]) / len(gaps) >= 0.95 * interval, gaps
    assert min(gaps) >= 0.5 * interval, gaps


def test_crawl_delay_spaces_requests_at_the_server(http_server: FaultServer, photo) -> None:
    clock = _Clock()
    rules = b"User-agent: *\nCrawl-delay: 0.4\n"
    http_server.route("/robots.txt", body(rules, "text/plain"))
    urls = [http_server.route(f"/c{i}.jpg", clock.wrap(body(photo))) for i in range(4)]
    with Fetcher(FETCH) as fetcher:  # an allow-listed host: no rate, but Crawl-delay holds
        assert _fetch_all(fetcher, urls) == ["ok"] * 4
    assert_spaced(clock.images(), 0.4)


# -- rate, Retry-After ---------------------------------------------------------------------------


def test_per_host_rate_holds_in_the_servers_log(http_server: FaultServer, photo) -> None:
    clock = _Clock()
    urls = [http_server.route(f"/r{i}.jpg", clock.wrap(body(photo))) for i in range(8)]
    config = FETCH.model_copy(update={"per_host_rate": 5.0, "rate_limit_allow_listed": True})
    with Fetcher(config) as fetcher:
        assert _fetch_all(fetcher, urls) == ["ok"] * 8
    assert_spaced(clock.images(), 0.2)  # 5 requests/s, 8 threads asking at once


def test_allow_listed_hosts_are_not_rate_limited_by_default(http_server, photo) -> None:
    urls = [http_server.route(f"/f{i}.jpg", body(photo)) for i in range(16)]
    started = time.monotonic()
    with Fetcher(FETCH) as fetcher:  # default per_host_rate 2/s would take 7.5 s
        assert _fetch_all(fetcher, urls) == ["ok"] * 16
    assert time.monotonic() - started < 4.0


def test_retry_after_pauses_the_whole_host(http_server: FaultServer, photo: bytes) -> None:
    """One URL gets 429 with Retry-After: 1; the other threads' requests to the same host wait
    too: the server sees nothing from us during that second."""
    clock = _Clock()
    busy = http_server.route(
        "/busy.jpg", clock.wrap(fail_then(status(429, **{"Retry-After": "1"}), body(photo)))
    )
    others = [http_server.route(f"/o{i}.jpg", clock.wrap(body(photo))) for i in range(6)]
    with Fetcher(FETCH) as fetcher, ThreadPoolExecutor(8) as pool:
        first = pool.submit(fetcher.fetch_url, busy)
        time.sleep(0.3)  # the 429 has been answered
        rest = list(pool.map(fetcher.fetch_url, others))
        assert first.result().attempts == 2 and len(rest) == 6
    refused_at = clock.images()[0]
    later = [t - refused_at for t in clock.images()[1:]]
    assert min(later) >= 0.95, later


# -- opt-out headers ----------------------------------------------------------------------------


def test_tdmrep_json_reserves_by_location(http_server: FaultServer, photo) -> None:
    hits: list[int] = []
    document = (
        b'[{"location": "/private/*", "tdm-reservation": 1, "tdm-policy": "https://x.test/p"},'
        b' {"location": "/private/open.jpg", "tdm-reservation": 0},'
        b' {"location": "/", "tdm-reservation": 0}, "junk", {"location": 3}]'
    )
    tdm = body(document, "application/json")
    http_server.route(TDMREP_PATH, lambda h, hit: (hits.append(hit), tdm(h, hit)))
    urls = [
        http_server.route(path, body(photo))
        for path in ("/private/a.jpg", "/private/open.jpg", "/public/b.jpg", "/private/c.jpg")
    ]
    with Fetcher(FETCH) as fetcher:  # the first matching rule applies, in the file's order
        assert _fetch_all(fetcher, urls, threads=4) == [
            "tdm_reservation",
            "tdm_reservation",
            "ok",
            "tdm_reservation",
        ]
        with pytest.raises(Rejection, match=r"reserves TDM rights for /private/\* \(policy"):
            fetcher.fetch_url(urls[0])
    assert hits == [1]  # read once per origin, however many threads asked


@pytest.mark.parametrize(
    "answer",
    [status(500), status(404), body(b"not json", "application/json")],
    ids=["http_500", "http_404", "not_json"],
)
def test_a_missing_or_broken_tdmrep_json_reserves_nothing(http_server, photo, answer) -> None:
    http_server.route(TDMREP_PATH, answer)
    url = http_server.route("/img.jpg", body(photo))
    with Fetcher(FETCH) as fetcher:
        assert _fetch_all(fetcher, [url]) == ["ok"]


def test_tdmrep_rules_parse_strictly() -> None:
    rules = parse_tdmrep(
        '[{"location": "/a/*", "tdm-reservation": true}, {"location": "/b$", "tdm-reservation": 1}]'
    )
    assert rules.rules == [("/b$", True, None)]  # true is not 1: the entry is skipped
    assert rules.reservation("/b") == ("/b$", None) and rules.reservation("/b/c") is None
    assert parse_tdmrep('{"location": "/", "tdm-reservation": 1}').rules == []


def test_tdm_reservation_and_scoped_x_robots_tag(http_server: FaultServer, photo) -> None:
    cases = {
        "/tdm.jpg": ({"tdm-reservation": "1"}, "tdm_reservation"),
        "/tdm-open.jpg": ({"tdm-reservation": "0"}, "ok"),
        "/other-bot.jpg": ({"X-Robots-Tag": "otherbot: noindex"}, "ok"),
        "/our-bot.jpg": ({"X-Robots-Tag": "million-ird: noai"}, "x_robots_tag"),
        "/everyone.jpg": ({"X-Robots-Tag": "noimageai"}, "x_robots_tag"),
    }
    urls = [http_server.route(path, body(photo, **headers)) for path, (headers, _) in cases.items()]
    with Fetcher(FETCH) as fetcher:
        assert _fetch_all(fetcher, urls) == [reason for _, reason in cases.values()]
    # A contact in the User-Agent must not make "otherbot: ..." ours, nor ours someone else's.
    contact = FETCH.model_copy(update={"contact": "otherbot-admin@example.org"})
    with Fetcher(contact) as fetcher:
        assert _fetch_all(fetcher, urls[2:4]) == ["ok", "x_robots_tag"]
        assert fetcher.user_agent.endswith("contact: otherbot-admin@example.org)")


def test_politeness_reasons_are_catalogued() -> None:
    transient = {"robots_txt", "robots_txt_unavailable", "host_rate_limited", "host_unresponsive"}
    assert {r for r in POLITENESS_REASONS if is_transient(r)} == transient
    assert "{contact}" in FetchConfig().user_agent and "github" not in FetchConfig().user_agent


# -- deadline and breaker ------------------------------------------------------------------------


def test_trickled_headers_end_at_the_url_deadline(http_server: FaultServer) -> None:
    url = http_server.route("/trickle.jpg", http_server.trickle_headers())
    config = FETCH.model_copy(update={"total_timeout_s": 1.5})
    started = time.monotonic()
    with Fetcher(config) as fetcher, pytest.raises(Rejection) as info:
        fetcher.fetch_url(url)
    elapsed = time.monotonic() - started
    assert info.value.reason == "timeout" and "deadline" in info.value.detail
    assert 1.4 <= elapsed < 2.5, elapsed
    assert http_server.hits["/trickle.jpg"] == 1  # no attempt after the deadline


def test_unresponsive_host_is_cut_and_its_other_urls_rejected_fast(
    http_server: FaultServer, tmp_path: Path
) -> None:
    slow = [http_server.route(f"/slow-{i}.jpg", http_server.trickle_headers()) for i in range(12)]
    fetch = FETCH.model_copy(
        update={"total_timeout_s": 1.5, "host_failure_limit": 2, "per_host_limit": 2}
    )
    config = CurationConfig(fetch=fetch, probe=ProbeConfig(min_side=256))
    candidates = tuple(Candidate(candidate_id(u), u, "test") for u in slow)
    started = time.monotonic()
    result = run_partition(Partition("slow-000000", "slow", 0, candidates), str(tmp_path), config)
    elapsed = time.monotonic() - started
    reasons = sorted(r.reason for r in result.rejects)
    assert reasons == ["host_unresponsive"] * 10 + ["timeout"] * 2
    assert elapsed < 2.5, elapsed  # one deadline, not one per URL
    # two timed out, at most one more was in flight when the breaker opened; none after
    assert sum(http_server.hits[f"/slow-{i}.jpg"] for i in range(12)) <= 3
    assert all(is_transient(reason) for reason in reasons)


# -- credentials ----------------------------------------------------------------------------------

SECRET = "s3cr3t-Pa55"


def test_credentials_split_off_and_redacted() -> None:
    url, creds = split_credentials(f"http://alice:{SECRET}@example.org:8080/a.jpg?x=1")
    assert url == "http://example.org:8080/a.jpg?x=1" and creds == f"alice:{SECRET}"
    assert split_credentials("http://example.org/a@b.jpg") == ("http://example.org/a@b.jpg", None)
    assert split_credentials("s3://bucket/a.jpg") == ("s3://bucket/a.jpg", None)
    assert redact_url("https://u%40x:p%3Aw@h/p") == "https://h/p"
    assert split_credentials("https://u%40x:p%3Aw@h/p")[1] == "u@x:p:w"


def test_credentials_go_to_their_origin_only(http_server: FaultServer, photo: bytes) -> None:
    seen: list[tuple[str, str | None]] = []

    def record(route: Route) -> Route:
        def handler(h, hit: int) -> None:
            seen.append((h.path, h.headers.get("Authorization")))
            route(h, hit)

        return handler

    http_server.route("/final.jpg", record(body(photo)))
    hop = http_server.url("/final.jpg", host="localhost")  # same server, another host name
    http_server.route("/hop.jpg", record(lambda h, hit: h.send_response(302) or h.send_header(
        "Location", hop.replace("http://", f"http://mallory:{SECRET}@")) or h.send_header(
        "Content-Length", "0") or h.end_headers()))  # fmt: skip
    config = FETCH.model_copy(update={"allow_hosts": ["127.0.0.1", "localhost"]})
    with Fetcher(config) as fetcher:
        url = http_server.url("/hop.jpg").replace("http://", f"http://alice:{SECRET}@")
        fetched = fetcher.fetch_url(url)
    token = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert seen == [("/hop.jpg", f"Basic {token}"), ("/final.jpg", None)]
    assert SECRET not in fetched.final_url and "mallory" not in fetched.final_url


def test_credentials_never_reach_a_published_file(tmp_path: Path) -> None:
    """A build of credentialed URLs: the protected image is fetched (so the credentials were
    used) and no byte of any file of the version or its dashboard holds them."""
    folder = tmp_path / "src"
    expected = write_demo_source(folder)
    token = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    server = FaultServer().start()
    try:
        names = sorted(expected)
        for name in names:
            server.route(f"/{name}", body((folder / name).read_bytes()))
        protected = next(  # a photograph with no copy in the source (a copy may win dedupe)
            n
            for n in names
            if expected[n] == "keep" and sum(m.startswith(n.split(".")[0]) for m in names) == 1
        )
        open_route = server.routes[f"/{protected}"]

        def needs_auth(h, hit: int) -> None:
            if h.headers.get("Authorization") == f"Basic {token}":
                open_route(h, hit)
            else:
                status(401)(h, hit)

        server.routes[f"/{protected}"] = needs_auth
        lines = [server.url(f"/{n}").replace("://", f"://alice:{SECRET}@") for n in names]
        lines.append(server.url("/gone.jpg").replace("://", f"://bob:{SECRET}@"))
        # Refusals for the host's sake, counted per host on the dashboard.
        photo = (folder / protected).read_bytes()
        server.route("/robots.txt", body(b"User-agent: *\nDisallow: /private/\n", "text/plain"))
        lines.append(server.route("/private/p.jpg", body(photo)))
        lines.append(server.route("/tdm.jpg", body(photo, **{"tdm-reservation": "1"})))
        lines.append(server.route("/noai.jpg", body(photo, **{"X-Robots-Tag": "noai"})))
        url_list = tmp_path / "urls.txt"
        url_list.write_text("\n".join(lines) + "\n")
        config = BuildConfig.model_validate(
            {
                "root": str(tmp_path / "out"),
                "name": "ird",
                "curation": {
                    "sources": [{"uri": str(url_list)}],
                    "probe": {"min_side": 256},
                    "partition_size": 8,
                    "fetch": {"allow_hosts": ["127.0.0.1"], "retries": 0},
                },
                "quality": {"max_side": 512},
            }
        )
        version = run_build(config)
    finally:
        server.stop()
    kept = {url.rsplit("/", 1)[-1] for url in version.manifest().column("url").to_pylist()}
    assert protected in kept
    rejects = {r["url"].rsplit("/", 1)[-1]: r["reason"] for r in version.rejects().to_pylist()}
    assert rejects["gone.jpg"] == "http_404"
    page = Path(build_dashboard(version)).read_text()
    (host,) = collect(Dataset(str(tmp_path / "out"), "ird")).politeness
    assert host.host == f"127.0.0.1:{server.port}"
    assert host.counts == {"robots_txt": 1, "tdm_reservation": 1, "x_robots_tag": 1}
    assert "Politeness: refusals per host" in page and f"127.0.0.1:{server.port}" in page
    assert_no_secret_in_files(
        tmp_path / "out", [SECRET.encode(), token.encode(), b"alice:", b"bob:"]
    )


def test_a_url_waits_for_its_host_at_most_max_host_wait() -> None:
    policy = HostPolicy(concurrency=4, rate=1.0, failure_limit=3, max_queue_s=0.3)
    with policy.turn("h", None):
        pass
    started = time.monotonic()
    with pytest.raises(Rejection) as info, policy.turn("h", None):
        pass
    # the next turn is 1 s away, beyond the 0.3 s the URL may wait: refused without waiting
    assert info.value.reason == "host_rate_limited" and time.monotonic() - started < 0.1
    policy.pause("other", 30.0)  # a Retry-After longer than the wait: refused at once
    started = time.monotonic()
    with pytest.raises(Rejection) as info, policy.turn("other", None):
        pass
    assert info.value.reason == "host_rate_limited" and time.monotonic() - started < 0.1
