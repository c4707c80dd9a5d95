"""dynet package."""
