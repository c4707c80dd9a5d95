"""Benchmarks: each module prints one JSON object (``python -m bench.NAME --help``);
``python -m bench`` runs them all (see ``bench/__main__.py`` and ``bench/README.md``)."""
