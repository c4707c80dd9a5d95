"""`mird server start|stop`: the local Prefect server behind `make serve`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    server_app = typer.Typer(
        help="A local Prefect server with the project's deployments.\n\n"
        "Examples:\n\n    mird server start\n    mird server stop"
    )
    app.add_typer(server_app, name="server")

    @server_app.command("start")
    def start(
        port: int = typer.Option(4200, help="Port on 127.0.0.1."),
        project: Path = typer.Option(Path("."), help="The project checkout."),
    ) -> None:
        """Start server, work pool, deployments and a worker (idempotent).

        The server listens on 127.0.0.1 and keeps its state in .prefect/ of the
        checkout; every deployment of prefect.yaml is created. `make serve` runs this.

        Examples:

            mird server start
            mird server start --port 4300 --project /srv/million-ird
        """
        from flows.server import start as start_server

        start_server(project.resolve(), port, log=typer.echo)

    @server_app.command("stop")
    def stop(project: Path = typer.Option(Path("."), help="The project checkout.")) -> None:
        """Stop the worker, then the server.

        Examples:

            mird server stop
            mird server stop --project /srv/million-ird
        """
        from flows.server import stop as stop_server

        stop_server(project.resolve(), log=typer.echo)
