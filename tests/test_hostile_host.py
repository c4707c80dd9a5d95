"""Issue 16's hostile-host check as a test: one build of 36 URL lines against a real server on
127.0.0.1 that misbehaves in every way we know of, plus addresses the SSRF guard must refuse.
Every line gets exactly one outcome, nothing hostile is kept, and no credential reaches any
file of the published version. (How long it took goes to the closing note, not an assert.)"""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from pathlib import Path

from curation.build import run_build
from curation.config import BuildConfig
from flows.demo.source import write_demo_source
from tests import curation_images as images
from tests.http_fixtures import FaultServer, assert_no_secret_in_files, body, redirect, send, status

SECRET = "h0stile-Pa55"


def _png_bomb() -> bytes:
    """A valid PNG header claiming 100,000 x 100,000 pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat_data = zlib.compress(b"\x00" * 1024)
    idat = b"IDAT" + idat_data
    idat_chunk = struct.pack(">I", len(idat_data)) + idat + struct.pack(">I", zlib.crc32(idat))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat_chunk


def test_a_hostile_host_gets_one_outcome_per_url_and_nothing_kept(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    expected = write_demo_source(folder)
    *keepers, protected = sorted(n for n, outcome in expected.items() if outcome == "keep")[:5]
    photo = (folder / keepers[0]).read_bytes()
    token = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    gif = io.BytesIO()
    images.photo_like(320, 240, seed=4).save(gif, "GIF")
    tiny = io.BytesIO()
    images.photo_like(64, 48, seed=5).save(tiny, "JPEG")
    server = FaultServer().start()
    try:
        good = [
            server.route(f"/good/{name}", body((folder / name).read_bytes())) for name in keepers
        ]

        def needs_auth(h, hit: int) -> None:
            if h.headers.get("Authorization") == f"Basic {token}":
                send(h, (folder / protected).read_bytes())
            else:
                status(401)(h, hit)

        auth = server.route("/auth.jpg", needs_auth).replace("://", f"://alice:{SECRET}@")
        server.route("/robots.txt", body(b"User-agent: *\nDisallow: /private/\n", "text/plain"))
        hostile = {
            "/trickle.jpg": server.trickle_headers(),
            "/429.jpg": status(429, **{"Retry-After": "1"}),
            "/503.jpg": status(503),
            "/500.jpg": status(500),
            "/page.html": body(b"<!doctype html><html><body>hi</body></html>", "text/html"),
            "/html-as.jpg": body(b"<!doctype html><html><body>no image</body></html>"),
            "/huge.jpg": server.endless(b"\xff\xd8\xff\xe0", 200 << 20, content_length=True),
            "/huge-nolength.jpg": server.endless(b"\xff\xd8\xff\xe0", 200 << 20, False),
            "/to-private.jpg": redirect("http://10.1.2.3/a.jpg"),
            "/to-metadata.jpg": redirect("http://169.254.169.254/latest/meta-data/"),
            "/loop.jpg": redirect("/loop.jpg"),
            "/noai.jpg": body(photo, **{"X-Robots-Tag": "noai"}),
            "/tdm.jpg": body(photo, **{"tdm-reservation": "1"}),
            "/private/p.jpg": body(photo),
            "/gzip.jpg": body(zlib.compress(photo), **{"Content-Encoding": "gzip"}),
            "/bomb.png": body(_png_bomb(), "image/png"),
            "/truncated.jpg": body(photo[:2048]),
            "/tiny.jpg": body(tiny.getvalue()),
            "/anim.gif": body(gif.getvalue(), "image/gif"),
            "/empty.jpg": body(b""),
            "/reset.jpg": server.reset_after(photo[:4096], len(photo)),
            "/stall.jpg": server.stall(photo[:4096], len(photo), seconds=30.0),
            "/vector.jpg": body(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        }
        lines = [server.route(path, route) for path, route in hostile.items()]
        lines += [
            auth,
            server.url("/gone.jpg").replace("://", f"://bob:{SECRET}@"),  # a 404 with secrets
            "http://10.0.0.1/direct.jpg",  # private addresses, never asked
            "http://169.254.169.254/meta.jpg",
            "http://[::1]:9/v6.jpg",
            "file:///etc/passwd",
            "ftp://127.0.0.1/a.jpg",
            "not a url at all",
            good[0],  # listed twice
        ]
        lines = good + lines
        assert len(lines) == 36
        url_list = tmp_path / "urls.txt"
        url_list.write_text("\n".join(lines) + "\n")
        config = BuildConfig.model_validate(
            {
                "root": str(tmp_path / "out"),
                "name": "ird",
                "curation": {
                    "sources": [{"uri": str(url_list)}],
                    "probe": {"min_side": 256},
                    "partition_size": 12,
                    "fetch": {
                        "allow_hosts": ["127.0.0.1"],
                        "total_timeout_s": 4.0,
                        "read_timeout_s": 1.0,
                        "max_body_bytes": 20 << 20,
                        "max_retry_after_s": 2.0,
                        # every misbehaviour gets its own reason here; the breaker that a
                        # host this bad trips is tested in test_polite_fetch
                        "host_failure_limit": 1000,
                    },
                },
                "quality": {"max_side": 512},
            }
        )
        started = time.monotonic()
        version = run_build(config)
        print(f"hostile-host build of {len(lines)} URL lines: {time.monotonic() - started:.1f} s")
    finally:
        server.stop()

    kept = version.manifest().column("url").to_pylist()
    rejects = version.rejects().to_pylist()
    # One outcome per line: 36 lines, 36 outcomes (kept or rejected), the repeat included.
    assert len(kept) + len(rejects) == 36
    redacted_auth = auth.replace(f"alice:{SECRET}@", "")
    # Nothing hostile is kept: only the good photographs and the credentialed one.
    assert set(kept) <= set(good) | {redacted_auth}
    assert redacted_auth in kept  # the credentials were used, for their own origin
    reasons = {row["url"].rsplit("/", 1)[-1]: row["reason"] for row in rejects}
    # A Retry-After pauses the whole host, so a URL retried meanwhile may end at its deadline.
    busy = {"timeout", "host_rate_limited"}
    expected = {
        "trickle.jpg": {"timeout"},
        "stall.jpg": {"timeout"},
        "429.jpg": {"http_429"} | busy,
        "503.jpg": {"http_503"} | busy,
        "500.jpg": {"http_500"} | busy,
        "reset.jpg": {"connection_error"} | busy,
        "page.html": {"not_an_image"},
        "html-as.jpg": {"not_an_image"},
        "vector.jpg": {"not_an_image"},
        "empty.jpg": {"not_an_image"},
        "huge.jpg": {"too_large_bytes"},
        "huge-nolength.jpg": {"too_large_bytes"},
        "to-private.jpg": {"blocked_address"},
        "to-metadata.jpg": {"blocked_address"},
        "direct.jpg": {"blocked_address"},
        "meta.jpg": {"blocked_address"},
        "v6.jpg": {"blocked_address"},
        "loop.jpg": {"too_many_redirects"},
        "noai.jpg": {"x_robots_tag"},
        "tdm.jpg": {"tdm_reservation"},
        "p.jpg": {"robots_txt"},
        "gzip.jpg": {"unsupported_encoding"},
        "bomb.png": {"decompression_bomb"},
        "truncated.jpg": {"truncated"},
        "tiny.jpg": {"too_small"},
        "anim.gif": {"unsupported_format"},
        "gone.jpg": {"http_404"},
        "passwd": {"bad_scheme"},
        "a.jpg": {"bad_scheme"},
        "not a url at all": {"bad_scheme"},
        good[0].rsplit("/", 1)[-1]: {"duplicate_url"},  # the repeat, in another partition
    }
    assert {name: reasons.get(name) for name in expected} == {
        name: reasons.get(name) if reasons.get(name) in allowed else allowed
        for name, allowed in expected.items()
    }
    assert len(reasons) == len(expected)
    # No credential anywhere in the published version.
    assert_no_secret_in_files(
        tmp_path / "out", [SECRET.encode(), token.encode(), b"alice:", b"bob:"]
    )
