"""`mird diff` on two real versions: added by source, removed by reason, config changes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from curation.build import run_build
from curation.config import BuildConfig
from flows.cli.app import app
from flows.dashboard import build_dashboard
from tests.real_images import encoded, real_photo


def _build(root: Path, folder: Path, names: tuple[str, ...], min_side: int, full: bool) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for name in names:
        (folder / f"{name}.jpg").write_bytes(encoded(real_photo(name)))
    config = BuildConfig.model_validate(
        {
            "root": str(root),
            "name": "ird",
            "incremental": not full,
            "curation": {
                "sources": [{"uri": str(folder), "name": "photos"}],
                "probe": {"min_side": min_side},
            },
            "quality": {"max_side": 512},
        }
    )
    return run_build(config).version


def test_diff_of_two_real_versions(tmp_path: Path) -> None:
    root, folder = tmp_path / "out", tmp_path / "photos"
    v1 = _build(root, folder, ("astronaut", "coffee", "chelsea"), 256, full=False)
    # a full rebuild: astronaut no longer listed, chelsea (300 px high) now too small, rocket new
    v2 = _build(root, folder, ("coffee", "chelsea", "rocket"), 400, full=True)
    runner = CliRunner()
    result = runner.invoke(app, ["diff", str(root / "ird"), v1, v2])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{v1} -> {v2}: 3 -> 2 samples (+1 added, -2 removed)"
    assert "  photos: +1" in lines and "    e.g. " + str(folder / "rocket.jpg") in lines
    assert "  too_small: -1" in lines and "  not a candidate: -1" in lines
    assert "  curation.probe.min_side: 256 -> 400" in lines
    assert "  incremental: True -> False" in lines
    as_json = json.loads(runner.invoke(app, ["diff", str(root / "ird"), v1, v2, "--json"]).output)
    assert as_json["added"] == 1 and as_json["removed_by_reason"] == {
        "not a candidate": 1,
        "too_small": 1,
    }
    # the dashboard of v2 says the same, with thumbnails of the added and the removed
    page = Path(build_dashboard(str(root / "ird"))).read_text()
    since = page[page.index('<section id="since">') :].split("</section>", 1)[0]
    assert "curation.probe.min_side: 256 -&gt; 400" in since and "rocket.jpg" in since
    assert since.count('<img src="data:image/jpeg') == 3  # rocket; chelsea and astronaut
    missing = runner.invoke(app, ["diff", str(root / "ird"), v1, "v9"])
    assert missing.exit_code != 0 and "no version v9" in str(missing.exception)
