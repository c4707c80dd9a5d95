"""Progress bars of the `mird` commands: on a terminal only, never a stray line in a log.

A rich ``Progress`` writes its last frame when it stops; on a console that is not a terminal
(a pipe, a log file, a test's captured output) that frame is printed as text, and a bar with
no task yet prints an empty line, e.g. just before a one-line error. The bars here are
disabled unless their console is a terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn


def progress_bars(
    *columns: str | ProgressColumn,
    stderr: bool = True,
    transient: bool = False,
    enabled: bool = True,
    **kwargs: Any,
) -> Progress:
    """A rich Progress on stderr (stdout is for results), shown only on a terminal."""
    console = kwargs.pop("console", None) or Console(stderr=stderr)
    return Progress(
        *columns,
        console=console,
        transient=transient,
        disable=not (enabled and console.is_terminal),
        **kwargs,
    )
