"""The catalogue of reject reasons (curation.reasons): every code a build writes is in it, with
the stage that wrote it, and the transient set is the catalogue's, not a list of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from curation import reasons
from curation.build import run_build
from curation.config import BuildConfig
from curation.reasons import (
    REASONS,
    TRANSIENT_REASONS,
    UnknownReasonError,
    code,
    describe,
    entries,
    is_transient,
    low_quality,
)
from curation.records import Rejection
from flows.demo.source import write_demo_source
from tests import curation_images as images
from tests.http_fixtures import FaultServer, body, status

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------- catalogue


def test_every_entry_is_complete_and_listed_once():
    assert entries() == REASONS
    codes = [r.code for r in REASONS]
    assert len(codes) == len(set(codes))
    for r in REASONS:
        assert r.stages and set(r.stages) <= set(reasons.STAGES), r
        assert r.meaning and "\n" not in r.meaning and describe(r.code) == r.meaning
        assert isinstance(r.transient, bool)


def test_transient_set_is_derived_from_the_catalogue():
    assert TRANSIENT_REASONS == {r.code for r in REASONS if r.transient and r.pattern is None}
    # the codes builds have always retried
    assert TRANSIENT_REASONS == {
        "timeout",
        "connection_error",
        "dns_error",
        "read_error",
        "tls_error",
        "http_429",
        "robots_txt",
        "robots_txt_unavailable",
        "host_rate_limited",
        "host_unresponsive",
        "internal_error",
    }
    assert all(is_transient(c) for c in TRANSIENT_REASONS)
    assert is_transient("http_503") and is_transient("http_500")
    assert not is_transient("http_404") and not is_transient("http_301")
    for lasting in ("too_small", "blurry", "duplicate_of", "low_quality:niqe", "x_robots_tag"):
        assert not is_transient(lasting)
    assert not is_transient("some_code_of_an_older_build")
    import curation.build

    assert curation.build.is_transient is is_transient


def test_families_and_unknown_codes():
    assert reasons.reason("http_404").code == "http_<status>"
    assert reasons.reason("http_503").code == "http_5xx"
    assert reasons.reason("http_429").code == "http_429"
    assert low_quality("niqe") == "low_quality:niqe"
    assert reasons.reason("low_quality:brisque").stages == ("quality",)
    assert reasons.http_status(410) == "http_410"
    assert "older build" in describe("no_such_reason")
    with pytest.raises(UnknownReasonError, match="'too_smal'"):
        code("too_smal")
    with pytest.raises(UnknownReasonError, match="not produced by stage 'fetch'"):
        code("blurry", "fetch")
    with pytest.raises(UnknownReasonError):
        code("http_4O4")
    with pytest.raises(UnknownReasonError):
        Rejection("fetch", "no_such_reason", "a typo is an error where it is raised")


def test_every_literal_rejection_in_the_code_is_catalogued():
    """``Rejection("stage", "reason", ...)`` with literal arguments, anywhere in curation/."""
    found = 0
    for path in sorted((ROOT / "curation").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Rejection"):
                continue
            stage, reason = node.args[:2]
            if isinstance(stage, ast.Constant) and isinstance(reason, ast.Constant):
                code(reason.value, stage.value)  # raises on a code missing from the catalogue
                found += 1
    assert found >= 30


# ---------------------------------------------------------------------------- a real build


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> list[dict]:
    """The rejects of one build that rejects for many reasons: a folder (demo photographs,
    near and exact copies, dark, flat, grey, drawn and textual images, a file that is no
    image) and a URL list (a 404, a 503, an HTML page, a tiny photo)."""
    base = tmp_path_factory.mktemp("reasons")
    folder = base / "photos"
    write_demo_source(folder)
    drawn = {
        "dark": images.dark,
        "flat": images.flat,
        "grey": images.grayscale_photo,
        "lines": images.line_art,
        "page": images.text_page,
        "product": images.product_on_white,
    }
    for name, make in drawn.items():
        (folder / f"{name}.png").write_bytes(images.png_bytes(make(480, 360)))
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    tiny = images.jpeg_bytes(images.photo_like(64, 48, seed=5))
    server = FaultServer().start()
    try:
        routes = {
            "/gone.jpg": status(404),
            "/busy.jpg": status(503),
            "/page.html": body(b"<!doctype html><html></html>", "text/html"),
            "/tiny.jpg": body(tiny),
        }
        url_list = base / "urls.txt"
        url_list.write_text("".join(server.route(p, r) + "\n" for p, r in routes.items()))
        config = BuildConfig.model_validate(
            {
                "root": str(base / "out"),
                "name": "ird",
                "curation": {
                    "sources": [{"uri": str(folder)}, {"uri": str(url_list)}],
                    "probe": {"min_side": 256},
                    "partition_size": 6,
                    "fetch": {"allow_hosts": ["127.0.0.1"], "retries": 0},
                },
                # NIQE 8: the rocket (9.5 on this proxy) gives a quality reject
                "quality": {"max_side": 512, "thresholds": {"niqe": 8.0, "brisque": 85.0}},
            }
        )
        version = run_build(config)
    finally:
        server.stop()
    return version.rejects().to_pylist()


def test_every_reason_a_build_writes_is_catalogued_with_its_stage(written):
    seen = {(row["stage"], row["reason"]) for row in written}
    for stage, reason in sorted(seen):
        entry = reasons.reason(reason)  # raises on a code missing from the catalogue
        assert stage in entry.stages, (stage, reason)
    codes = {reason for _, reason in seen}
    expected = {"too_small", "blurry", "graphic", "too_dark", "duplicate_of", "http_404"}
    expected |= {"near_duplicate_of", "not_an_image", "http_503", "low_quality:niqe"}
    assert expected <= codes, expected - codes
    assert len(codes) >= 12
