"""Prefect flows and deployments; the CLI, dashboard and demo as subpackages (docs/layout.md)."""
