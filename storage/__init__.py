"""Where bytes live: URIs, atomic writes, dataset versions, schemas, shards (docs/layout.md)."""
