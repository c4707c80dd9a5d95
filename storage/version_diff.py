"""What changed between two published versions of a dataset: samples, rejects, configuration.

A weekly rebuild publishes v7 after v6; :func:`diff_versions` says, without SQL, which samples
were added (per source), which were removed and why (the newer version's reject reason for
that candidate, or ``not a candidate`` when the newer build did not list it at all), how the
reject counts per reason moved, and which configuration fields differ between the two builds
(from each version's ``stats.json``). ``mird diff`` prints it (``flows/cli/diff.py``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from storage.versions import Dataset

NOT_A_CANDIDATE = "not a candidate"


@dataclass
class VersionDiff:
    old: str
    new: str
    old_samples: int
    new_samples: int
    added_by_source: dict[str, int] = field(default_factory=dict)
    removed_by_reason: dict[str, int] = field(default_factory=dict)
    rejects_by_reason: dict[str, tuple[int, int]] = field(default_factory=dict)  # (old, new)
    config_changes: list[tuple[str, Any, Any]] = field(default_factory=list)  # (key, old, new)
    added_examples: list[str] = field(default_factory=list)  # URLs of a few added samples
    removed_examples: list[tuple[str, str]] = field(default_factory=list)  # (URL, why)
    # the same few as (key, shard relative to the dataset), for thumbnails
    added_shards: list[tuple[str, str]] = field(default_factory=list, repr=False)
    removed_shards: list[tuple[str, str]] = field(default_factory=list, repr=False)

    @property
    def added(self) -> int:
        return sum(self.added_by_source.values())

    @property
    def removed(self) -> int:
        return sum(self.removed_by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "samples": {"old": self.old_samples, "new": self.new_samples},
            "added": self.added,
            "removed": self.removed,
            "added_by_source": self.added_by_source,
            "removed_by_reason": self.removed_by_reason,
            "rejects_by_reason": {
                k: {"old": a, "new": b} for k, (a, b) in self.rejects_by_reason.items()
            },
            "config_changes": [{"key": k, "old": a, "new": b} for k, a, b in self.config_changes],
            "added_examples": self.added_examples,
            "removed_examples": [{"url": u, "why": w} for u, w in self.removed_examples],
        }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def diff_versions(dataset: Dataset, old: str, new: str, examples: int = 5) -> VersionDiff:
    """Compare version ``old`` with version ``new`` of ``dataset`` (either order works)."""
    before, after = dataset.version(old), dataset.version(new)
    columns = ["key", "source", "url", "shard"]
    old_rows = {r["key"]: r for r in before.manifest().select(columns).to_pylist()}
    new_rows = {r["key"]: r for r in after.manifest().select(columns).to_pylist()}
    new_rejects = {
        r["candidate_id"]: r["reason"]
        for r in after.rejects().select(["candidate_id", "reason"]).to_pylist()
    }
    added = sorted(k for k in new_rows if k not in old_rows)
    removed = sorted(k for k in old_rows if k not in new_rows)
    why = {k: new_rejects.get(k, NOT_A_CANDIDATE) for k in removed}
    old_reasons = Counter(before.rejects().column("reason").to_pylist())
    new_reasons = Counter(after.rejects().column("reason").to_pylist())
    old_config = _flatten((before.stats() or {}).get("config") or {})
    new_config = _flatten((after.stats() or {}).get("config") or {})
    changes = [
        (key, old_config.get(key), new_config.get(key))
        for key in sorted(set(old_config) | set(new_config))
        if old_config.get(key) != new_config.get(key)
    ]
    return VersionDiff(
        old=before.version,
        new=after.version,
        old_samples=len(old_rows),
        new_samples=len(new_rows),
        added_by_source=dict(sorted(Counter(new_rows[k]["source"] for k in added).items())),
        removed_by_reason=dict(Counter(why.values()).most_common()),
        rejects_by_reason={
            reason: (old_reasons.get(reason, 0), new_reasons.get(reason, 0))
            for reason in sorted(set(old_reasons) | set(new_reasons))
        },
        config_changes=changes,
        added_examples=[new_rows[k]["url"] for k in added[:examples]],
        removed_examples=[(old_rows[k]["url"], why[k]) for k in removed[:examples]],
        added_shards=[(k, new_rows[k]["shard"]) for k in added[:examples]],
        removed_shards=[(k, old_rows[k]["shard"]) for k in removed[:examples]],
    )


def diff_lines(diff: VersionDiff) -> list[str]:
    """The text ``mird diff`` prints."""
    lines = [
        f"{diff.old} -> {diff.new}: {diff.old_samples:,} -> {diff.new_samples:,} samples "
        f"(+{diff.added:,} added, -{diff.removed:,} removed)"
    ]
    if diff.added_by_source:
        lines.append("added, by source:")
        lines += [f"  {source}: +{n:,}" for source, n in diff.added_by_source.items()]
        lines += [f"    e.g. {url}" for url in diff.added_examples]
    if diff.removed_by_reason:
        lines.append(f"removed, by reason (in {diff.new}):")
        lines += [f"  {reason}: -{n:,}" for reason, n in diff.removed_by_reason.items()]
        lines += [f"    e.g. {url} ({why})" for url, why in diff.removed_examples]
    moved = {k: v for k, v in diff.rejects_by_reason.items() if v[0] != v[1]}
    if moved:
        lines.append(f"rejects of each build, by reason ({diff.old} -> {diff.new}):")
        lines += [f"  {reason}: {a:,} -> {b:,}" for reason, (a, b) in moved.items()]
    if diff.config_changes:
        lines.append("configuration changes:")
        lines += [f"  {key}: {a!r} -> {b!r}" for key, a, b in diff.config_changes]
    else:
        lines.append("configuration: unchanged")
    return lines
