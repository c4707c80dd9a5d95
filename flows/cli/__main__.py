"""`python -m flows.cli ...` runs `mird ...`."""

from flows.cli.app import main

main()
