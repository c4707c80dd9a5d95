"""Configuration errors in one format, for every command and every flow parameter.

A pydantic ``ValidationError`` prints as "1 validation error for BuildConfig" plus indented
detail lines; a user needs, per failing field, where it came from, its dotted path, the reason
and the offending value, one line each::

    build.yaml: curation.sourcez: Extra inputs are not permitted (got [])
    build.yaml: quality.max_side: Input should be greater than or equal to 64 (got 8)

:func:`validate_config` turns a validation failure into a :class:`ConfigError` of such lines;
the ``mird`` CLI prints each line after ``mird: error:`` and exits 2. It lives in ``storage``
because every layer (``curation``, ``dynet``, ``flows``) reads configuration and all of them
already import ``storage``; it imports no Prefect.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

#: The longest rendering of an offending value before it is cut with "...".
VALUE_CHARS = 80


class ConfigError(ValueError):
    """A configuration that cannot be used: one line per problem, each naming its source.

    The message is the lines joined by newlines (so the exception pickles with its text, as
    Prefect may store a failed flow run's exception); :attr:`lines` gives them back.
    """

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(line for line in lines if line) or "invalid configuration")

    @property
    def lines(self) -> list[str]:
        return str(self).splitlines()


def show_value(value: Any, limit: int = VALUE_CHARS) -> str:
    """A value as the user wrote it (JSON/YAML-like: ``[]``, ``"x"``, ``8``), cut at ``limit``."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_lines(exc: ValidationError, source: str | Callable[[str], str]) -> list[str]:
    """One line per failing field: ``SOURCE: dotted.path: reason (got VALUE)``.

    ``source`` names where the values came from, or maps a field's dotted path to it (a file
    with command-line overrides on top: the overridden fields came from the command line).
    """
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        origin = source(where) if callable(source) else source
        line = f"{origin}: {where or '(top level)'}: {error['msg']}"
        # A missing field has no value of its own, and a model-level check's input is the
        # whole mapping: neither says more than the reason.
        if error["type"] != "missing" and where:
            line += f" (got {show_value(error.get('input'))})"
        lines.append(line)
    return lines


def validate_config(model: type[M], data: Any, source: str | Callable[[str], str]) -> M:
    """``model`` from ``data`` (returned as is when it already is one); a failure raises a
    :class:`ConfigError` naming ``source`` (a file, "command line", "flow parameter config",
    or a function of the field's dotted path, as in :func:`validation_lines`)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(*validation_lines(exc, source)) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file holding a mapping; anything else is a one-line ConfigError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data
