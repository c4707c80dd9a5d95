"""The `mird` command line.

Each command lives in its own `flows/cmd_*.py` module exposing `register(app)`; this file
only assembles them and turns any error into one line on stderr (set `MIRD_DEBUG=1` for the
traceback). Heavy imports (torch, prefect) stay inside the commands so `mird --help` is fast.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

COMMAND_MODULES: list[str] = [
    "flows.cmd_verify",
    "flows.cmd_demo",
    "flows.cmd_build",
    "flows.cmd_server",
    "flows.cmd_patches",
    "flows.cmd_evaluate",
    "flows.cmd_weights",
    "flows.cmd_restore",
    "flows.cmd_train",
    "flows.cmd_dashboard",
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
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"mird: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
