"""Everything `mird demo` needs: the demo flow, its generated sources and server, and the
demo training layout. Kept out of the core packages: nothing in curation/, dynet/ or storage/
imports it."""
