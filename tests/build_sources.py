"""The small demo source served over HTTP, and the build config the flow tests give it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flows.demo.source import write_demo_source
from tests.http_fixtures import FaultServer, body


@contextmanager
def served_demo_source(folder: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """Write the small demo source into ``folder/img``, serve it from a FaultServer and yield
    (the URL list, file name -> expected outcome); the server stops afterwards."""
    expected = write_demo_source(folder / "img")
    server = FaultServer().start()
    try:
        url_list = folder / "urls.txt"
        url_list.write_text(
            "".join(
                server.route(f"/img/{n}", body((folder / "img" / n).read_bytes())) + "\n"
                for n in sorted(expected)
            )
        )
        yield url_list, expected
    finally:
        server.stop()


def small_build_config(root: Path, url_list: Path, partition_size: int = 4) -> dict[str, Any]:
    """Dataset "ird" under ``root``: scikit-image's small photos pass (min side 256)."""
    return {
        "root": str(root),
        "name": "ird",
        "curation": {
            "sources": [{"uri": str(url_list)}],
            "probe": {"min_side": 256},
            "partition_size": partition_size,
            "fetch": {"allow_hosts": ["127.0.0.1"], "retries": 0},
        },
        "quality": {"max_side": 512},
    }
