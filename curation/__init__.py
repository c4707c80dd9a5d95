"""The Million-IRD build, Prefect-free: sources to a published version (docs/layout.md)."""
