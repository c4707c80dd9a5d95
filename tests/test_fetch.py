"""Fetching against a real HTTP server on 127.0.0.1 that serves every fault the issue lists.

Each fault ends as exactly one reject with the right reason, or as an accepted record.
"""

from __future__ import annotations

import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest

from curation.config import CurationConfig, FetchConfig, ProbeConfig
from curation.fetch import AddressGuard, Fetcher, parse_retry_after, x_robots_blocked
from curation.partition import run_partition
from curation.probe import Prober
from curation.records import AcceptedRecord, Candidate, Partition, Rejection
from curation.sources import candidate_id
from tests import curation_images as images
from tests.http_fixtures import (
    FaultServer,
    body,
    fail_then,
    http_server_fixture,  # noqa: F401 (registers the http_server fixture)
    redirect,
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
    max_redirects=3,
    max_body_bytes=2_000_000,
    allow_hosts=["127.0.0.1"],
)
CONFIG = CurationConfig(fetch=FETCH, probe=ProbeConfig(min_side=256))


@pytest.fixture(scope="module")
def photo() -> bytes:
    return images.jpeg_bytes(images.photo_like(640, 480, seed=3))


def _candidate(url: str) -> Candidate:
    return Candidate(id=candidate_id(url), url=url, source="test")


def _faults(server: FaultServer, photo: bytes) -> dict[str, tuple[str, str]]:
    """url -> (expected outcome: 'accepted' or a reject reason, what it exercises)."""
    picture = images.photo_like(640, 480, seed=5)
    r = server.route
    cases = {
        r("/ok.jpg", body(photo)): ("accepted", "plain JPEG"),
        server.url("/missing.jpg"): ("http_404", "404"),
        r("/flaky.jpg", fail_then(status(500), body(photo))): ("accepted", "500 then 200"),
        r("/busy.jpg", fail_then(status(429, **{"Retry-After": "1"}), body(photo))): (
            "accepted",
            "429 with Retry-After: 1, then 200",
        ),
        r("/slow.jpg", server.stall(photo[:1000], len(photo))): ("timeout", "stalled body"),
        r("/reset.jpg", server.reset_after(photo[:5000], len(photo))): (
            "connection_error",
            "connection reset mid-body",
        ),
        r("/loop-a", redirect("/loop-b")): ("too_many_redirects", "redirect loop"),
        r("/big-length.jpg", server.endless(photo[:100], 64_000_000, True)): (
            "too_large_bytes",
            "64 MB with Content-Length",
        ),
        r("/big-stream.jpg", server.endless(photo[:100], 64_000_000, False)): (
            "too_large_bytes",
            "64 MB, no Content-Length",
        ),
        r("/page.jpg", body(b"<!DOCTYPE html><html><body>hi</body></html>" * 5)): (
            "not_an_image",
            "HTML served as image/jpeg",
        ),
        r("/truncated.jpg", body(photo[: len(photo) * 2 // 3])): ("truncated", "cut JPEG"),
        r("/bomb.png", body(images.png_declaring(50_000, 50_000), "image/png")): (
            "decompression_bomb",
            "PNG declaring 50,000 x 50,000",
        ),
        r("/cmyk.jpg", body(images.cmyk_jpeg(picture))): ("accepted", "CMYK JPEG"),
        r("/deep.png", body(images.png16_rgb(images.photo_like_array(640, 480, 6)), "image/png")): (
            "accepted",
            "16-bit RGB PNG",
        ),
        r("/palette.png", body(images.palette_png_with_alpha(picture), "image/png")): (
            "accepted",
            "palette PNG with alpha",
        ),
        r("/rotated.jpg", body(images.exif_rotated_jpeg(images.photo_like(640, 400, 7), 6))): (
            "accepted",
            "EXIF orientation 6",
        ),
        r("/noai.jpg", body(photo, **{"X-Robots-Tag": "noai"})): ("x_robots_tag", "noai"),
        r("/to-private.jpg", redirect("http://192.168.1.7/x.jpg")): (
            "blocked_address",
            "redirect to a private address",
        ),
        "http://10.1.2.3/photo.jpg": ("blocked_address", "private address"),
        "file:///etc/passwd": ("bad_scheme", "file:// URL"),
        r("/tiny.jpg", body(images.jpeg_bytes(images.photo_like(200, 150)))): (
            "too_small",
            "200x150",
        ),
        r("/banner.jpg", body(images.jpeg_bytes(images.photo_like(1200, 300)))): (
            "bad_aspect",
            "4:1",
        ),
    }
    server.route("/loop-b", redirect("/loop-a"))
    return cases


def test_every_fault_ends_as_one_outcome(
    http_server: FaultServer, photo: bytes, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _faults(http_server, photo)
    candidates = tuple(_candidate(url) for url in cases)
    partition = Partition("faults-000000", "faults", 0, candidates)
    started = time.monotonic()
    result = run_partition(partition, str(tmp_path), CONFIG)
    elapsed = time.monotonic() - started

    outcomes: dict[str, list[str]] = {c.url: [] for c in candidates}
    for record in result.accepted:
        outcomes[record.candidate.url].append("accepted")
    for reject in result.rejects:
        outcomes[reject.candidate.url].append(reject.reason)
    lines = [f"{'case':<34} {'expected':<20} got"]
    for url, (expected, what) in cases.items():
        lines.append(f"{what:<34} {expected:<20} {outcomes[url]}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert {url: got for url, got in outcomes.items()} == {
        url: [expected] for url, (expected, _) in cases.items()
    }
    assert result.stats["accepted"] == sum(1 for e, _ in cases.values() if e == "accepted")
    assert elapsed < 30

    by_url = {record.candidate.url: record for record in result.accepted}
    assert by_url[http_server.url("/flaky.jpg")].provenance["attempts"] == 2
    rotated = by_url[http_server.url("/rotated.jpg")]
    assert (rotated.width, rotated.height) == (400, 640)  # stored 640x400, shown upright
    assert rotated.measurements["exif_orientation"] == 6
    assert rotated.image is not None and rotated.image.size == (400, 640)
    for record in result.accepted:
        assert record.image is not None and record.image.mode == "RGB"
        assert record.data[:2] in (b"\xff\xd8", b"\x89P")
    # A stalled body is retried once (timeouts are transient); a reset or a 404 is not.
    assert http_server.hits["/slow.jpg"] == 2
    assert http_server.hits["/reset.jpg"] == 1
    assert http_server.hits["/missing.jpg"] == 1
    # The oversized body with Content-Length was refused before its body was read.
    assert http_server.bytes_sent["/big-length.jpg"] < 16_000_000


def test_retry_after_is_honoured(http_server: FaultServer, photo: bytes) -> None:
    url = http_server.route(
        "/busy.jpg", fail_then(status(503, **{"Retry-After": "1"}), body(photo))
    )
    with Fetcher(FETCH) as fetcher:
        started = time.monotonic()
        fetched = fetcher.fetch_url(url)
        elapsed = time.monotonic() - started
    assert fetched.data == photo and fetched.attempts == 2
    assert elapsed >= 1.0


def test_persistent_5xx_gives_up_after_the_retries(http_server: FaultServer) -> None:
    url = http_server.route("/down.jpg", status(502))
    with Fetcher(FETCH) as fetcher, pytest.raises(Rejection) as info:
        fetcher.fetch_url(url)
    assert info.value.reason == "http_502"
    assert http_server.hits["/down.jpg"] == FETCH.retries + 1


def test_retry_after_over_the_limit_gives_up(http_server: FaultServer) -> None:
    url = http_server.route("/later.jpg", status(429, **{"Retry-After": "3600"}))
    with Fetcher(FETCH) as fetcher, pytest.raises(Rejection) as info:
        fetcher.fetch_url(url)
    assert info.value.reason == "http_429"
    assert http_server.hits["/later.jpg"] == 1


@pytest.mark.parametrize("content_length", [True, False])
def test_oversized_body_is_never_held_in_memory(
    http_server: FaultServer, photo: bytes, content_length: bool
) -> None:
    url = http_server.route(
        "/huge.jpg", http_server.endless(photo[:100], 200_000_000, content_length)
    )
    cap = 1_000_000
    with Fetcher(FETCH.model_copy(update={"max_body_bytes": cap})) as fetcher:
        tracemalloc.start()
        try:
            with pytest.raises(Rejection) as info:
                fetcher.fetch_url(url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.reason == "too_large_bytes"
    assert peak < 3 * cap, f"peak {peak} bytes while fetching a 200 MB body capped at {cap}"


def test_decompression_bomb_is_never_allocated() -> None:
    bomb = images.png_declaring(50_000, 50_000)  # 7.5 GB of pixels if decoded
    prober = Prober(ProbeConfig(min_side=256))
    tracemalloc.start()
    try:
        with pytest.raises(Rejection) as info:
            prober.probe_header(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "decompression_bomb"
    assert peak < 2_000_000


def test_robots_txt_is_fetched_once_and_honoured(http_server: FaultServer, photo: bytes) -> None:
    rules = b"User-agent: *\nDisallow: /private/\n"
    http_server.route("/robots.txt", body(rules, "text/plain"))
    allowed = [http_server.route(f"/public/{i}.jpg", body(photo)) for i in range(6)]
    blocked = http_server.route("/private/a.jpg", body(photo))
    config = FETCH.model_copy(update={"respect_robots_txt": True})
    with Fetcher(config) as fetcher:
        for url in allowed:
            assert fetcher.fetch_url(url).data == photo
        with pytest.raises(Rejection) as info:
            fetcher.fetch_url(blocked)
    assert info.value.reason == "robots_txt"
    assert http_server.hits["/robots.txt"] == 1
    assert http_server.hits["/private/a.jpg"] == 0


def test_robots_txt_5xx_means_disallow(http_server: FaultServer, photo: bytes) -> None:
    http_server.route("/robots.txt", status(503))
    url = http_server.route("/a.jpg", body(photo))
    config = FETCH.model_copy(update={"respect_robots_txt": True, "retries": 0})
    with Fetcher(config) as fetcher, pytest.raises(Rejection) as info:
        fetcher.fetch_url(url)
    assert info.value.reason == "robots_txt_unavailable"


def test_user_agent_is_sent(http_server: FaultServer, photo: bytes) -> None:
    seen: list[str] = []

    def record_agent(handler, hit):
        seen.append(handler.headers.get("User-Agent", ""))
        body(photo)(handler, hit)

    url = http_server.route("/ua.jpg", record_agent)
    with Fetcher(FETCH.model_copy(update={"user_agent": "test-crawler/9"})) as fetcher:
        fetcher.fetch_url(url)
    assert seen == ["test-crawler/9"]


def test_loopback_is_refused_without_the_allow_list(http_server: FaultServer, photo: bytes) -> None:
    url = http_server.route("/ok.jpg", body(photo))
    with Fetcher(FETCH.model_copy(update={"allow_hosts": []})) as fetcher:
        with pytest.raises(Rejection) as info:
            fetcher.fetch_url(url)
    assert info.value.reason == "blocked_address"
    assert http_server.hits["/ok.jpg"] == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.jpg", "bad_scheme"),
        ("file:///etc/passwd", "bad_scheme"),
        ("http://127.0.0.1/a.jpg", "blocked_address"),
        ("http://[::1]/a.jpg", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data", "blocked_address"),
        ("http://172.16.0.5/a.jpg", "blocked_address"),
        ("http://224.0.0.1/a.jpg", "blocked_address"),
        ("http://[::ffff:10.0.0.1]/a.jpg", "blocked_address"),
        ("http:///a.jpg", "invalid_url"),
    ],
)
def test_address_guard_refuses(url: str, reason: str) -> None:
    with pytest.raises(Rejection) as info:
        AddressGuard().check(url)
    assert info.value.reason == reason


def test_address_guard_allows_public_and_allow_listed() -> None:
    AddressGuard().check("https://8.8.8.8/a.jpg")  # literal: no DNS needed
    AddressGuard(allow_hosts=["10.0.0.0/8"]).check("http://10.9.8.7/a.jpg")
    AddressGuard(allow_hosts=["images.internal"]).check("http://images.internal/a.jpg")
    AddressGuard(block_private=False).check("http://192.168.0.1/a.jpg")


def test_x_robots_tag_parsing() -> None:
    blocked = {"noai", "noimageai", "noindex", "noimageindex"}
    agent = "million-ird/0.1"
    assert x_robots_blocked(["noindex, nofollow"], blocked, agent) == "noindex"
    assert x_robots_blocked(["NoImageAI"], blocked, agent) == "noimageai"
    assert x_robots_blocked(["googlebot: noai"], blocked, agent) is None
    assert x_robots_blocked(["million-ird: noai"], blocked, agent) == "noai"
    assert x_robots_blocked(["nofollow", "unavailable_after: 2030-01-01"], blocked, agent) is None
    assert x_robots_blocked(["max-snippet: 20, noai"], blocked, agent) == "noai"


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_folder_files_go_through_the_same_checks(tmp_path, photo: bytes) -> None:
    (tmp_path / "ok.jpg").write_bytes(photo)
    (tmp_path / "fake.jpg").write_bytes(b"<html>not an image</html>")
    (tmp_path / "big.jpg").write_bytes(photo + b"\0" * 3_000_000)
    with Fetcher(FETCH) as fetcher:
        assert fetcher.fetch_file(str(tmp_path / "ok.jpg")).sniffed == "jpeg"
        for name, reason in [
            ("fake.jpg", "not_an_image"),
            ("big.jpg", "too_large_bytes"),
            ("gone.jpg", "not_found"),
        ]:
            with pytest.raises(Rejection) as info:
                fetcher.fetch_file(str(tmp_path / name))
            assert info.value.reason == reason, name


def test_accepted_records_keep_bytes_and_reduced_image(http_server: FaultServer, photo, tmp_path):
    url = http_server.route("/ok.jpg", body(photo))
    partition = Partition("one-000000", "one", 0, (_candidate(url),))
    result = run_partition(partition, str(tmp_path), CONFIG)
    (record,) = result.accepted
    assert isinstance(record, AcceptedRecord)
    assert record.data == photo
    assert record.format == "jpg" and (record.width, record.height) == (640, 480)
    assert record.image is not None and max(record.image.size) <= 1024
    assert record.provenance["http_status"] == 200


class _FixedDNS(AddressGuard):
    """A resolver with a fixed answer: stands in for a DNS server in this test."""

    def __init__(self, answer: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.answer = answer

    def _resolve(self, host: str, port: int) -> list[str]:
        return self.answer


def test_connection_goes_to_the_vetted_address(http_server: FaultServer, photo: bytes) -> None:
    """The socket is opened to the address the guard checked, not to a second lookup of the
    name: 'images.invalid' does not resolve at all, yet the fetch reaches 127.0.0.1."""
    http_server.route("/pinned.jpg", body(photo))
    with Fetcher(FETCH) as fetcher:
        fetcher.guard = _FixedDNS(["127.0.0.1"], allow_hosts=["127.0.0.1"])
        fetched = fetcher.fetch_url(http_server.url("/pinned.jpg", host="images.invalid"))
        assert fetched.data == photo
        fetcher.guard = _FixedDNS(["10.0.0.8"], allow_hosts=["127.0.0.1"])
        with pytest.raises(Rejection) as info:
            fetcher.fetch_url(http_server.url("/pinned.jpg", host="rebind.invalid"))
    assert info.value.reason == "blocked_address"


def test_host_names_resolve_and_connect(http_server: FaultServer, photo: bytes) -> None:
    http_server.route("/named.jpg", body(photo))
    config = FETCH.model_copy(update={"allow_hosts": ["127.0.0.0/8", "::1/128"]})
    with Fetcher(config) as fetcher:
        assert fetcher.fetch_url(http_server.url("/named.jpg", host="localhost")).data == photo


def test_keep_alive_connections_closed_by_the_server_are_replaced(
    http_server: FaultServer, photo: bytes
) -> None:
    """The server closes every connection after answering, without saying so: the pool then
    holds only dead connections, and a fetch must still succeed (on a fresh one)."""

    def answer_then_hang_up(handler, hit: int) -> None:
        body(photo)(handler, hit)
        handler.close_connection = True  # the socket closes; the client was told keep-alive

    urls = [http_server.route(f"/hangup-{i}.jpg", answer_then_hang_up) for i in range(6)]
    with Fetcher(FETCH) as fetcher:
        with ThreadPoolExecutor(4) as pool:  # four connections at once: four in the pool
            assert all(f.data == photo for f in pool.map(fetcher.fetch_url, urls[:4]))
        time.sleep(0.2)  # the server has closed them all by now
        for url in urls[4:]:
            fetched = fetcher.fetch_url(url)
            assert fetched.data == photo and fetched.attempts == 1
