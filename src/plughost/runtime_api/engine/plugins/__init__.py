"""``engine.plugins``."""
