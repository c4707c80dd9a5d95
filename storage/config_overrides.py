"""``KEY=VALUE`` overrides: the command line's one way to set any configuration field.

Every ``mird`` command that reads a configuration model (``build``, ``train``, ``patches``,
``explain``, ``calibrate``) takes dotted overrides after its positional arguments, e.g.
``mird build photos/ curation.probe.min_side=512``. The key is the field's dotted name (as in
docs/configuration.md), the value is read as YAML (``3``, ``1e-4``, ``true``, ``[1, 2]``,
``{variant: S}``; anything else stays a string).

Overrides are applied to the configuration *mapping*, before validation: a bad value or a
misspelt key then fails the model's own check and reads as a bad file does, one line per field
naming "command line" as its source (:mod:`storage.config_errors`). Only what cannot reach the
model (no ``=``, a key that is not a dotted name, a key below a field that is not a section) is
refused here, in one line too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from storage.config_errors import ConfigError

#: A dotted field name: ``name`` or ``section.sub.name``.
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
#: The example an error message shows when none is given.
EXAMPLE = "curation.probe.min_side=512"


def parse_value(text: str) -> Any:
    """A value as YAML reads it; text that is not valid YAML stays the text."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def is_override(arg: str) -> bool:
    """Whether ``arg`` reads as ``KEY=VALUE`` (a path such as ``./a=b.txt`` does not)."""
    key, sep, _ = arg.partition("=")
    return bool(sep) and KEY_RE.fullmatch(key.strip()) is not None


def parse_override(item: str, example: str = EXAMPLE) -> tuple[str, Any]:
    """(dotted key, parsed value) of one ``KEY=VALUE``; anything else is a ConfigError."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. {example})")
    if not KEY_RE.fullmatch(key):
        raise ConfigError(f"override {item!r}: {key!r} is not a dotted field name (e.g. {example})")
    return key, parse_value(value)


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str], example: str = EXAMPLE
) -> list[str]:
    """Set each ``a.b.c=value`` in ``data`` (in place, missing sections created); returns the
    dotted keys set, in order (for :func:`override_origin`)."""
    keys = []
    for item in overrides:
        key, value = parse_override(item, example)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[leaf] = value
        keys.append(key)
    return keys


def override_origin(
    keys: Sequence[str], otherwise: str | Callable[[str], str]
) -> Callable[[str], str]:
    """Field path -> where it came from: "command line" for a field an override set (or one
    under a section it set), else ``otherwise`` (a name, or the previous such function)."""

    def origin(field: str) -> str:
        if any(field == key or field.startswith(f"{key}.") for key in keys):
            return "command line"
        return otherwise(field) if callable(otherwise) else otherwise

    return origin


def split_overrides(args: Sequence[str], example: str = EXAMPLE) -> tuple[list[str], list[str]]:
    """(positional arguments, overrides) of a command taking both, overrides last.

    The first ``KEY=VALUE`` ends the positional arguments; every argument after it must be
    an override too (a ConfigError otherwise), so that neither kind is ever guessed."""
    for index, arg in enumerate(args):
        if is_override(arg):
            overrides = list(args[index:])
            for item in overrides:
                parse_override(item, example)  # a stray positional argument: one line
            return list(args[:index]), overrides
    return list(args), []
