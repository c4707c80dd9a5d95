"""The dashboard's "Since the previous version": what ``mird diff`` says about this version
and its parent, with thumbnails of a few added and a few removed samples.

One section of the dashboard package: ``flows.dashboard.collect`` calls :func:`since_previous`
and ``flows.dashboard.render`` :func:`section_since`; it imports nothing of the package:
thumbnails come through the callable collect passes (shard, key) -> (data URI or None, why not).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

from storage.errors import StorageError
from storage.version_diff import VersionDiff, diff_lines, diff_versions
from storage.versions import Dataset

#: Thumbnails shown of the added and of the removed samples.
SHOWN = 6

ThumbFn = Callable[[str, str], tuple[str | None, str]]


@dataclass
class SinceData:
    diff: VersionDiff
    added: list[tuple[str, str | None]] = field(default_factory=list)  # (caption, data URI)
    removed: list[tuple[str, str | None]] = field(default_factory=list)


def since_previous(dataset: Dataset, version: str, thumb: ThumbFn) -> SinceData | None:
    """The diff from the version published before ``version`` (its parent, or the version a
    full rebuild replaces) with thumbnails, or None for a first version."""
    versions = dataset.versions()
    position = versions.index(version) if version in versions else 0
    if position == 0:
        return None
    parent = versions[position - 1]
    try:
        diff = diff_versions(dataset, parent, version, examples=SHOWN)
    except (StorageError, OSError, KeyError, ValueError):  # the parent is gone or damaged
        return None
    data = SinceData(diff)
    for (key, shard), url in zip(diff.added_shards, diff.added_examples, strict=True):
        data.added.append((f"{key} · {url}", thumb(shard, key)[0]))
    for (key, shard), (url, reason) in zip(diff.removed_shards, diff.removed_examples, strict=True):
        data.removed.append((f"{key} · {reason} · {url}", thumb(shard, key)[0]))
    return data


def _figures(items: list[tuple[str, str | None]]) -> str:
    out = []
    for caption, image in items:
        img = (
            f'<img src="{_e(image)}" alt="" width="160" height="120">'
            if image
            else '<div class="noimg">no image</div>'
        )
        out.append(f"<figure>{img}<figcaption><div>{_e(caption)}</div></figcaption></figure>")
    return f'<div class="grid-thumbs">{"".join(out)}</div>'


def section_since(data: SinceData | None) -> str:
    """The section's HTML; empty for a first version."""
    if data is None:
        return ""
    parts = [
        '<section id="since"><h2>Since the previous version</h2>',
        f"<pre>{_e(chr(10).join(diff_lines(data.diff)))}</pre>",
    ]
    if data.added:
        parts.append(f"<h3>Added (first {len(data.added)} by key)</h3>{_figures(data.added)}")
    if data.removed:
        parts.append(f"<h3>Removed (first {len(data.removed)} by key)</h3>{_figures(data.removed)}")
    parts.append("</section>")
    return "".join(parts)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
