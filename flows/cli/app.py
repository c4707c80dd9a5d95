"""The `mird` command line.

Each command lives in its own `flows/cli/*.py` module exposing `register(app)`; this file
only assembles them and turns any error into one line on stderr (set `MIRD_DEBUG=1` for the
traceback); a configuration error prints one line per failing field. Heavy imports (torch,
prefect) stay inside the commands so `mird --help` is fast.

Exit status: 0 ok, 1 a problem found (`mird verify` failures, a build that kept nothing, a demo
whose outcomes differ), 2 a usage or input error (bad option, configuration, missing file,
sources without candidates), 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

COMMAND_MODULES: list[str] = [
    "flows.cli.verify",
    "flows.cli.demo",
    "flows.cli.build",
    "flows.cli.server",
    "flows.cli.patches",
    "flows.cli.evaluate",
    "flows.cli.weights",
    "flows.cli.restore",
    "flows.cli.train",
    "flows.cli.dashboard",
    "flows.cli.explain",
    "flows.cli.calibrate",
    "flows.cli.diff",
]

app = typer.Typer(
    name="mird",
    help="Million-IRD: build, verify and publish curated restoration datasets; train DyNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_commands()


def error_lines(exc: BaseException) -> list[str]:
    """What the user reads: every line of a configuration error (one per failing field), the
    first non-blank line of any other error (never a blank line)."""
    from pydantic import ValidationError

    from storage.config_errors import ConfigError, validation_lines

    if isinstance(exc, ConfigError):
        return exc.lines
    if isinstance(exc, ValidationError):  # a model validated outside validate_config
        return validation_lines(exc, exc.title)
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    return [first.strip() or type(exc).__name__]


def main() -> None:
    """Console-script entry point: one clear line per error, exit status 2."""
    try:
        # standalone_mode=False hands back the exit code of typer.Exit instead of exiting.
        status = app(standalone_mode=False)
        sys.exit(status if isinstance(status, int) else 0)
    except typer.Exit as exc:  # raised by commands for a deliberate exit status
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("mird: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is one line, not a traceback
        if os.environ.get("MIRD_DEBUG"):
            raise
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            print("mird: aborted", file=sys.stderr)
            sys.exit(1)
        for line in error_lines(exc):
            print(f"mird: error: {line}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
