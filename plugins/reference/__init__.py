"""Reference plugin (placeholder until model lands)."""
