"""The web-like demo source: deterministic, every kind present, served over real HTTP, and
every candidate gets from the real build (default settings) the outcome it was made for."""

from __future__ import annotations

import http.client
import io
import threading
from collections import Counter

import pytest
from PIL import Image

from curation.build import run_build
from curation.config import BuildConfig, SourceConfig
from curation.sources import iter_candidates
from flows.demo.server import DemoServer, write_url_list
from flows.demo.source import (
    BAD_KIND_SHARES,
    HARD_CASES,
    KEEP,
    REASON_DUPLICATE,
    REASON_NEAR_DUPLICATE,
    kind_counts,
    web_candidates,
    write_demo_source,
)

COUNT = 60
DEDUPED = {KEEP, REASON_DUPLICATE, REASON_NEAR_DUPLICATE}  # which copy is kept: policy's call


@pytest.fixture(scope="module")
def web() -> dict[str, tuple[bytes | None, str]]:
    return web_candidates(COUNT, seed=0)


def test_same_seed_same_bytes_other_seed_other_bytes(web):
    again = web_candidates(COUNT, seed=0)
    assert list(again) == list(web)  # same names, same order
    assert again == web
    other = web_candidates(COUNT, seed=1)
    assert [name for name in other if other[name][0] != web.get(name, (None,))[0]]


def test_mix_has_every_kind_in_planned_shares(web):
    counts = kind_counts(300)
    assert sum(counts.values()) == 300
    assert 0.55 <= counts["photo"] / 300 <= 0.6
    assert set(counts) == {"photo", *BAD_KIND_SHARES}
    assert len(web) == COUNT
    outcomes = Counter(outcome for _, outcome in web.values())
    assert outcomes[KEEP] == kind_counts(COUNT)["photo"]
    assert set(outcomes) >= {
        "graphic", "document", "white_background", "blurry", "too_dark", "grayscale", "noisy",
        "low_quality:niqe", "bad_aspect", "too_small", "duplicate_of", "near_duplicate_of",
        "truncated", "not_an_image", "http_404",
    }  # fmt: skip


def test_hard_kinds_of_photograph_are_in_and_planned_kept(web):
    """Shallow depth of field, mist, night, sky and water, made from real photographs: kept,
    so the build below (and the demo's outcome check) fail when the gate throws them away."""
    hard = {f"photo-{name}.jpg" for name, *_ in HARD_CASES}
    assert kind_counts(300)["photo"] // 4 >= len(HARD_CASES)  # the full demo has them all
    present = {name: outcome for name, (_, outcome) in web.items() if name in hard}
    assert {name.split("-")[1] for name in present} == {"dof", "mist", "night", "sky", "water"}
    assert set(present.values()) == {KEEP}


def test_photos_are_high_resolution_and_copies_copy_them(web):
    kept = {name: data for name, (data, outcome) in web.items() if outcome == KEEP}
    assert any(name.startswith("photo-astronaut") for name in kept)  # real ones are in
    for name, data in kept.items():
        with Image.open(io.BytesIO(data)) as image:
            assert min(image.size) >= 1024, name
            assert max(image.size) <= 2 * min(image.size), name
    kept_bytes = set(kept.values())
    for name, (data, outcome) in web.items():
        if outcome == REASON_DUPLICATE:
            assert data in kept_bytes, name
        elif outcome == REASON_NEAR_DUPLICATE:
            assert data not in kept_bytes, name
        elif outcome == "http_404":
            assert data is None


def _get(server: DemoServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def test_server_answers_200_and_404_as_planned_and_stops_cleanly(web, tmp_path):
    before = set(threading.enumerate())
    with DemoServer({name: data for name, (data, _) in web.items()}) as server:
        for name, (data, _) in web.items():
            status, kind, body = _get(server, f"/{name}")
            if data is None:
                assert status == 404, name
            else:
                assert (status, body) == (200, data), name
                assert kind == ("image/png" if name.endswith(".png") else "image/jpeg"), name
        assert _get(server, "/no-such-image.jpg")[0] == 404
        status, _, robots = _get(server, "/robots.txt")
        assert status == 200 and b"Allow: /" in robots
        name = next(n for n, (data, _) in web.items() if data and n.endswith(".jpg"))
        assert _get(server, f"/{name}", "HEAD") == (200, "image/jpeg", b"")
        # A client that keeps its connection open must not keep the server alive.
        idle = http.client.HTTPConnection(server.host, server.port, timeout=10)
        idle.request("GET", "/robots.txt")
        idle.getresponse().read()
        urls = write_url_list(server, tmp_path / "urls.txt")
        listed = [c.url for c in iter_candidates(SourceConfig(uri=str(tmp_path / "urls.txt")))]
        assert listed == [urls[name] for name in web] == [server.url_for(n) for n in web]
        assert server.hits[(f"/{name}", 200)] >= 1
    assert set(threading.enumerate()) - before == set()
    idle.close()
    with pytest.raises(ValueError, match="urls.csv"):
        write_url_list(server, tmp_path / "urls.csv")


def test_server_from_folder_serves_the_small_demo_source(tmp_path):
    expected = write_demo_source(tmp_path / "source")
    with DemoServer.from_folder(tmp_path / "source") as server:
        for name in expected:
            assert _get(server, f"/{name}")[2] == (tmp_path / "source" / name).read_bytes()
    with pytest.raises(FileNotFoundError, match="missing"):
        DemoServer.from_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="/page.png"):
        DemoServer({"/page.png": b""})
    DemoServer({"page.png": b""}).close()  # never started: closes without waiting


@pytest.mark.slow  # ~25-30 s on the 2-core box: IQA on ~40 photographs
def test_default_build_gives_every_candidate_its_planned_outcome(web, tmp_path):
    with DemoServer({name: data for name, (data, _) in web.items()}) as server:
        urls = write_url_list(server, tmp_path / "urls.txt")
        config = BuildConfig.model_validate(
            {
                "root": str(tmp_path / "datasets"),
                "name": "demo",
                "curation": {
                    "sources": [{"uri": str(tmp_path / "urls.txt")}],
                    # The one non-default: the SSRF guard refuses loopback unless allowed.
                    "fetch": {"allow_hosts": ["127.0.0.1"]},
                },
            }
        )
        version = run_build(config)
    name_of = {url: name for name, url in urls.items()}
    found: dict[str, str] = {}
    rejects = version.rejects().to_pylist()
    for row in rejects:
        found[name_of[row["url"]]] = row["reason"]
    kept = version.manifest().select(["key", "url"]).to_pylist()
    for row in kept:
        found[name_of[row["url"]]] = KEEP
    planned = {name: outcome for name, (_, outcome) in web.items()}
    assert set(found) == set(planned)
    # Outside the duplicates, each candidate's own outcome; among photographs and their
    # copies, the same number kept and dropped (which copy survives is the keeper's call).
    assert {n: r for n, r in found.items() if planned[n] not in DEDUPED} == {
        n: r for n, r in planned.items() if r not in DEDUPED
    }
    assert Counter(found.values()) == Counter(planned.values())
    kept_keys = {row["key"] for row in kept}
    for row in rejects:
        if row["reason"] in (REASON_DUPLICATE, REASON_NEAR_DUPLICATE):
            assert row["detail"] in kept_keys
