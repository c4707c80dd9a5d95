"""The dataset card: a Hugging Face style README with YAML front matter."""

from __future__ import annotations

from typing import Any


def size_category(n: int) -> str:
    """Hugging Face's ``size_categories`` bucket for ``n`` samples."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ]
    for bound, label in bounds:
        if n < bound:
            return label
    return "n>100M"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_card(
    *,
    name: str,
    version: str,
    samples: int,
    shards: int,
    rejects: int,
    license: str = "other",
    description: str = "",
    extra_counts: dict[str, int] | None = None,
    parent: str | None = None,
    test_sets: dict[str, Any] | None = None,
) -> str:
    counts = {"samples": samples, "shards": shards, "rejects": rejects, **(extra_counts or {})}
    lines = [
        "---",
        f"pretty_name: {_yaml_scalar(f'{name} {version}')}",
        f"license: {_yaml_scalar(license)}",
        "size_categories:",
        f"  - {_yaml_scalar(size_category(samples))}",
        "task_categories:",
        '  - "image-to-image"',
        "tags:",
        '  - "image-restoration"',
        '  - "webdataset"',
        f"version: {_yaml_scalar(version)}",
        f"parent_version: {_yaml_scalar(parent) if parent else 'null'}",
        "counts:",
        *[f"  {key}: {value}" for key, value in counts.items()],
        "---",
        "",
        f"# {name} {version}",
        "",
        description
        or (
            "High-resolution photographs curated for image restoration: original bytes in "
            "WebDataset tar shards (`shards/`), one row per sample in the Parquet manifest "
            "(`manifest/`), every rejected candidate with its reason in `rejects/`."
        ),
        "",
        "| | count |",
        "|---|---:|",
        *[f"| {key} | {value:,} |" for key, value in counts.items()],
        "",
        "Licences of the images are those of their sources; see the `license` and `url` "
        "columns of the manifest.",
        "",
        *_test_set_lines(test_sets),
    ]
    return "\n".join(lines)


def _test_set_lines(test_sets: dict[str, Any] | None) -> list[str]:
    """The card's word on test-set contamination: only what the build checked (nothing for
    a version that no build made, e.g. patches)."""
    if test_sets is None:
        return []
    checked = test_sets.get("checked") or []
    if not checked:
        return [
            "Not checked against any test set (`mird build --exclude DIR`): it may hold "
            "benchmark images or near copies of them.",
            "",
        ]
    distance = test_sets.get("distance")
    lines = [
        f"Checked against {len(checked)} test set(s): every candidate within {distance} bits "
        "(64-bit perceptual hash) of one of their images was rejected as `test_set_overlap`.",
        "",
        *[f"- `{entry['uri']}` ({int(entry['images']):,} images)" for entry in checked],
        "",
    ]
    matching = int(test_sets.get("reused_samples_matching") or 0)
    if matching:
        lines += [
            f"**Not clean**: {matching:,} samples reused from the parent version match a test "
            "image; rebuild with `--full` to remove them.",
            "",
        ]
    else:
        lines += ["The version is clean of these test sets.", ""]
    return lines
