"""A build configuration file merged with the command line's options, before validation.

``mird build``, ``mird explain`` and ``mird calibrate`` read configuration the same way: the
file (YAML or JSON) first, then the options on top (sources, ``--allow-host``, single fields).
Validation happens once on the merged mapping, and each error names where its field came from:
the file, or "command line" for a field an option set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from storage.config_errors import read_config_file


def _section(parent: dict, key: str) -> dict:
    if not isinstance(parent.get(key), dict):  # absent (or wrong: an option replaces it)
        parent[key] = {}
    return parent[key]


def merge_options(
    config_file: str | Path | None,
    *,
    sources: Sequence[str] = (),
    allow_hosts: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    allow_empty: bool = False,
    exclude: Sequence[str] = (),
) -> tuple[dict[str, Any], Callable[[str], str]]:
    """(the merged mapping, field path -> where it came from)."""
    data: dict[str, Any] = read_config_file(config_file) if config_file is not None else {}
    from_options: list[str] = []
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
            from_options.append(key)
    if allow_empty:
        _section(data, "publish")["allow_empty"] = True
        from_options.append("publish.allow_empty")
    if sources:
        _section(data, "curation")["sources"] = [{"uri": s} for s in sources]
        from_options.append("curation.sources")
    if allow_hosts:
        fetch = _section(_section(data, "curation"), "fetch")
        listed = fetch.get("allow_hosts")
        fetch["allow_hosts"] = [*(listed if isinstance(listed, list) else []), *allow_hosts]
        from_options.append("curation.fetch.allow_hosts")
    if exclude:  # test sets kept out of the dataset, added to the file's
        dedupe = _section(data, "dedupe")
        listed = dedupe.get("test_sets")
        dedupe["test_sets"] = [*(listed if isinstance(listed, list) else []), *exclude]
        from_options.append("dedupe.test_sets")

    def origin(field: str) -> str:
        if config_file is None or any(
            field == key or field.startswith(f"{key}.") for key in from_options
        ):
            return "command line"
        return str(config_file)

    return data, origin
