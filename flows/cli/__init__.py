"""The `mird` command line: one module per command (see :mod:`flows.cli.app`)."""
